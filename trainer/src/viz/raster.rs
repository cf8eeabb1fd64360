//! An RGB pixel buffer that plotters draws into, and its PNG encoding.

use std::path::Path;

use anyhow::{Context, Result};

use crate::checkpoint::write_atomic;

/// An 8-bit RGB image, rows top to bottom (the layout of plotters' `BitMapBackend`).
pub struct Raster {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

impl Raster {
    /// A white image.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            rgb: vec![255; width as usize * height as usize * 3],
        }
    }

    /// Encodes as PNG (8-bit RGB, strong compression: figures are mostly flat colour).
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width, self.height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::High);
            let mut w = enc.write_header().context("encoding PNG")?;
            w.write_image_data(&self.rgb).context("encoding PNG")?;
            w.finish().context("encoding PNG")?;
        }
        Ok(out)
    }

    /// Writes the PNG to `path` atomically (creating its directory); returns the file size.
    pub fn save(&self, path: &Path) -> Result<usize> {
        let bytes = self.to_png()?;
        write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips() {
        let mut r = Raster::new(3, 2);
        r.rgb[0] = 7;
        r.rgb[17] = 200;
        let bytes = r.to_png().unwrap();
        let mut dec = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; dec.output_buffer_size().unwrap()];
        let info = dec.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(&buf[..info.buffer_size()], &r.rgb[..]);
    }
}
