//! Turning a user's picture of a handwritten digit into a 28x28 MNIST-style image.
//!
//! The steps follow what the MNIST authors did to their scans:
//!
//! 1. **Grey.** PNGs of any colour type and bit depth are expanded to 8 bits; colour becomes
//!    luminance (`0.299 R + 0.587 G + 0.114 B`). A translucent image is laid over a background
//!    that contrasts with its (alpha-weighted) mean colour: dark strokes on a transparent canvas
//!    over white, light strokes over black.
//! 2. **Polarity.** MNIST is a white digit on black. If the image's border (its outermost
//!    pixels) is bright on average (mean above 127.5), the image is inverted.
//! 3. **Levels.** The median of the border is taken as the background level and the brightest
//!    pixel as full ink; values are stretched so that these become 0 and 255, and a soft noise
//!    floor of 10 % is subtracted (`v <- max(0, v - 0.1) / 0.9` on the `0..=1` scale), so paper
//!    texture and JPEG-like noise do not count as ink. An image whose contrast is below 24 grey
//!    levels is [`PreprocessError::Blank`].
//! 4. **Crop** to the bounding box of the remaining ink.
//! 5. **Scale** so that the longer side is 20 px, keeping the aspect ratio (each side at least
//!    1 px). Resampling is by **area averaging** (a box filter: each output pixel is the mean of
//!    the source area it covers, with fractional coverage at its edges), which anti-aliases when
//!    shrinking, as MNIST's normalisation did, and reduces to nearest-neighbour with blended
//!    edges when enlarging. The result is then stretched again so its brightest pixel is 255,
//!    so thin strokes shrunk from a large picture do not come out faint.
//! 6. **Centre.** The centre of mass of the 20x20-bounded image is computed (with pixel `x`
//!    covering `[x, x + 1)`) and the image is placed into the 28x28 field shifted by a whole
//!    number of pixels so that it lands within half a pixel of the field's centre (14, 14).
//!    Ink that the shift would push outside the field is dropped.
//! 7. **Clamp** to `0..=255` and round.

use crate::{PIXELS, SIDE};

/// Why a picture could not be turned into a digit.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The bytes do not start with the PNG signature.
    #[error("not a PNG file (the PNG signature is missing)")]
    NotPng,
    /// The PNG is damaged.
    #[error("cannot decode the PNG: {0}")]
    Decode(String),
    /// The PNG is valid but cannot be used (too large, animated, odd layout, ...).
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// The grey buffer does not hold `width * height` bytes, or a side is zero.
    #[error("grey image of {width}x{height} needs {} bytes, got {len}", width * height)]
    BadSize {
        /// Width given.
        width: usize,
        /// Height given.
        height: usize,
        /// Bytes given.
        len: usize,
    },
    /// No ink: the image is (nearly) uniform.
    #[error("the image is blank: no ink found")]
    Blank,
}

/// Side of the box the digit is scaled into.
pub const BOX: usize = 20;
/// Minimum contrast (grey levels between background and brightest ink) not to be blank.
pub const MIN_CONTRAST: f32 = 24.0;
/// Noise floor subtracted after stretching, as a fraction of full ink.
pub const NOISE_FLOOR: f32 = 0.1;

const PNG_SIGNATURE: [u8; 8] = [137, 80, 78, 71, 13, 10, 26, 10];

/// Decodes a PNG (grey, grey+alpha, RGB, RGBA or palette; any size and bit depth) and
/// preprocesses it with [`digit_from_grey`].
pub fn digit_from_png(bytes: &[u8]) -> Result<[u8; PIXELS], PreprocessError> {
    let (width, height, grey) = png_to_grey(bytes)?;
    digit_from_grey(width, height, &grey)
}

/// Decodes a PNG into an 8-bit grey buffer `(width, height, pixels)`, compositing any
/// transparency as described in the [module documentation](self).
pub fn png_to_grey(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), PreprocessError> {
    if !bytes.starts_with(&PNG_SIGNATURE) {
        return Err(PreprocessError::NotPng);
    }
    let map = |e: png::DecodingError| match e {
        png::DecodingError::LimitsExceeded => {
            PreprocessError::Unsupported("the image is too large".into())
        }
        png::DecodingError::Parameter(p) => PreprocessError::Unsupported(p.to_string()),
        other => PreprocessError::Decode(other.to_string()),
    };
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(map)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| PreprocessError::Unsupported("the image is too large".into()))?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(map)?;
    if info.bit_depth != png::BitDepth::Eight {
        return Err(PreprocessError::Unsupported(format!(
            "bit depth {:?} after expansion",
            info.bit_depth
        )));
    }
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(PreprocessError::Unsupported(
                "palette image was not expanded".into(),
            ))
        }
    };
    let (w, h) = (info.width as usize, info.height as usize);
    // Luminance and alpha of every pixel.
    let mut lum = Vec::with_capacity(w * h);
    let mut alpha = Vec::with_capacity(w * h);
    for row in buf.chunks(info.line_size).take(h) {
        for px in row[..w * channels].chunks_exact(channels) {
            let (l, a) = match channels {
                1 => (f32::from(px[0]), 255),
                2 => (f32::from(px[0]), px[1]),
                3 => (luma(px), 255),
                _ => (luma(px), px[3]),
            };
            lum.push(l);
            alpha.push(a);
        }
    }
    let grey = if alpha.iter().all(|&a| a == 255) {
        lum.iter()
            .map(|&l| l.round().clamp(0.0, 255.0) as u8)
            .collect()
    } else {
        // Background that contrasts with the alpha-weighted mean colour of the drawing.
        let (sum, wsum) = lum
            .iter()
            .zip(&alpha)
            .fold((0.0f64, 0.0f64), |(s, ws), (&l, &a)| {
                (s + f64::from(l) * f64::from(a), ws + f64::from(a))
            });
        let mean = if wsum > 0.0 { sum / wsum } else { 0.0 };
        let bg = if mean < 127.5 { 255.0 } else { 0.0 };
        lum.iter()
            .zip(&alpha)
            .map(|(&l, &a)| {
                let a = f32::from(a) / 255.0;
                (l * a + bg * (1.0 - a)).round().clamp(0.0, 255.0) as u8
            })
            .collect()
    };
    Ok((w, h, grey))
}

fn luma(px: &[u8]) -> f32 {
    0.299 * f32::from(px[0]) + 0.587 * f32::from(px[1]) + 0.114 * f32::from(px[2])
}

/// Preprocesses an 8-bit grey image (`width * height` bytes, row-major, either polarity) into
/// a 28x28 MNIST-style digit: white on black, fitted into 20x20, centre of mass at the centre.
/// See the [module documentation](self) for the exact steps.
pub fn digit_from_grey(
    width: usize,
    height: usize,
    pixels: &[u8],
) -> Result<[u8; PIXELS], PreprocessError> {
    if width == 0 || height == 0 || width.checked_mul(height) != Some(pixels.len()) {
        return Err(PreprocessError::BadSize {
            width,
            height,
            len: pixels.len(),
        });
    }
    // 1. Border statistics decide polarity and the background level.
    let mut border: Vec<u8> = Vec::with_capacity(2 * (width + height));
    for y in 0..height {
        for x in 0..width {
            if y == 0 || x == 0 || y == height - 1 || x == width - 1 {
                border.push(pixels[y * width + x]);
            }
        }
    }
    let border_mean = border.iter().map(|&b| f64::from(b)).sum::<f64>() / border.len() as f64;
    let invert = border_mean > 127.5;
    let ink = |p: u8| if invert { 255 - p } else { p };
    let mut border_ink: Vec<u8> = border.iter().map(|&b| ink(b)).collect();
    border_ink.sort_unstable();
    let bg = f32::from(border_ink[border_ink.len() / 2]);
    let max = f32::from(pixels.iter().map(|&p| ink(p)).max().unwrap_or(0));
    if max - bg < MIN_CONTRAST {
        return Err(PreprocessError::Blank);
    }

    // 2. Stretch levels and subtract the noise floor: values in 0..=1.
    let img: Vec<f32> = pixels
        .iter()
        .map(|&p| {
            let v = ((f32::from(ink(p)) - bg) / (max - bg)).clamp(0.0, 1.0);
            ((v - NOISE_FLOOR) / (1.0 - NOISE_FLOOR)).max(0.0)
        })
        .collect();

    // 3. Bounding box of the ink.
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..height {
        for x in 0..width {
            if img[y * width + x] > 0.0 {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x + 1);
                y1 = y1.max(y + 1);
            }
        }
    }
    if x0 == usize::MAX {
        return Err(PreprocessError::Blank);
    }
    let (bw, bh) = (x1 - x0, y1 - y0);

    // 4. Fit the longer side to BOX pixels, keeping the aspect ratio.
    let long = bw.max(bh) as f64;
    let fit = |s: usize| (((s as f64) * BOX as f64 / long).round() as usize).clamp(1, BOX);
    let (nw, nh) = (fit(bw), fit(bh));

    // 5. Area-averaging resample, separable: horizontal then vertical.
    let wx = area_weights(bw, nw);
    let wy = area_weights(bh, nh);
    let mut rows = vec![0f32; nw * bh];
    for y in 0..bh {
        let src = &img[(y0 + y) * width + x0..(y0 + y) * width + x1];
        for (dx, ws) in wx.iter().enumerate() {
            rows[y * nw + dx] = ws.iter().map(|&(s, w)| src[s] * w).sum();
        }
    }
    let mut small = vec![0f32; nw * nh];
    for (dy, ws) in wy.iter().enumerate() {
        for x in 0..nw {
            small[dy * nw + x] = ws.iter().map(|&(s, w)| rows[s * nw + x] * w).sum();
        }
    }
    let peak = small.iter().copied().fold(0.0f32, f32::max);
    if peak <= 0.0 {
        return Err(PreprocessError::Blank);
    }
    for v in &mut small {
        *v /= peak;
    }

    // 6. Centre of mass, then a whole-pixel shift that brings it to the field's centre.
    let (mut mass, mut mx, mut my) = (0f64, 0f64, 0f64);
    for y in 0..nh {
        for x in 0..nw {
            let v = f64::from(small[y * nw + x]);
            mass += v;
            mx += v * (x as f64 + 0.5);
            my += v * (y as f64 + 0.5);
        }
    }
    let centre = SIDE as f64 / 2.0;
    let ox = (centre - mx / mass).round() as isize;
    let oy = (centre - my / mass).round() as isize;

    // 7. Place, clamp and round.
    let mut out = [0u8; PIXELS];
    for y in 0..nh {
        for x in 0..nw {
            let (tx, ty) = (x as isize + ox, y as isize + oy);
            if (0..SIDE as isize).contains(&tx) && (0..SIDE as isize).contains(&ty) {
                let v = (small[y * nw + x] * 255.0).round().clamp(0.0, 255.0);
                out[ty as usize * SIDE + tx as usize] = v as u8;
            }
        }
    }
    Ok(out)
}

/// For each of `dst` output cells spread over `src` input cells, the input cells it covers
/// and their weights (the covered fraction of the output cell; the weights sum to 1).
fn area_weights(src: usize, dst: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let (a, b) = (d as f64 * scale, (d + 1) as f64 * scale);
            let first = a.floor() as usize;
            let last = (b.ceil() as usize).min(src);
            (first..last)
                .filter_map(|s| {
                    let overlap = b.min(s as f64 + 1.0) - a.max(s as f64);
                    (overlap > 1e-9).then(|| (s, (overlap / scale) as f32))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Centre of mass (pixel `x` covering `[x, x + 1)`) and ink bounding box of a 28x28 digit.
    fn stats(d: &[u8; PIXELS]) -> ((f64, f64), (usize, usize, usize, usize)) {
        let (mut m, mut mx, mut my) = (0.0, 0.0, 0.0);
        let (mut x0, mut y0, mut x1, mut y1) = (SIDE, SIDE, 0, 0);
        for y in 0..SIDE {
            for x in 0..SIDE {
                let v = f64::from(d[y * SIDE + x]);
                if v > 0.0 {
                    m += v;
                    mx += v * (x as f64 + 0.5);
                    my += v * (y as f64 + 0.5);
                    x0 = x0.min(x);
                    y0 = y0.min(y);
                    x1 = x1.max(x + 1);
                    y1 = y1.max(y + 1);
                }
            }
        }
        ((mx / m, my / m), (x0, y0, x1, y1))
    }

    fn assert_mnist_like(d: &[u8; PIXELS]) -> (usize, usize) {
        let ((cx, cy), (x0, y0, x1, y1)) = stats(d);
        assert!((cx - 14.0).abs() <= 1.0, "centre of mass x {cx}");
        assert!((cy - 14.0).abs() <= 1.0, "centre of mass y {cy}");
        let (w, h) = (x1 - x0, y1 - y0);
        assert!(w <= BOX && h <= BOX, "extent {w}x{h}");
        assert_eq!(w.max(h), BOX, "longer side should fill the box: {w}x{h}");
        assert_eq!(*d.iter().max().unwrap(), 255);
        (w, h)
    }

    /// A white-on-black canvas with a filled rectangle.
    fn rect_image(w: usize, h: usize, rx: (usize, usize), ry: (usize, usize)) -> Vec<u8> {
        let mut img = vec![0u8; w * h];
        for y in ry.0..ry.1 {
            for x in rx.0..rx.1 {
                img[y * w + x] = 255;
            }
        }
        img
    }

    /// A thick "7"-like stroke: a horizontal bar and a diagonal, on a large canvas.
    fn stroke_image(w: usize, h: usize) -> Vec<u8> {
        let mut img = vec![0u8; w * h];
        let mut dot = |cx: f64, cy: f64, r: f64| {
            for y in 0..h {
                for x in 0..w {
                    let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                    if dx * dx + dy * dy <= r * r {
                        img[y * w + x] = 230;
                    }
                }
            }
        };
        for i in 0..=60 {
            let t = i as f64 / 60.0;
            dot(90.0 + 120.0 * t, 40.0, 6.0);
            dot(210.0 - 90.0 * t, 40.0 + 150.0 * t, 6.0);
        }
        img
    }

    #[test]
    fn wide_rectangle_fits_box_and_is_centred() {
        let img = rect_image(100, 60, (10, 70), (35, 55));
        let d = digit_from_grey(100, 60, &img).unwrap();
        let (w, h) = assert_mnist_like(&d);
        assert_eq!((w, h), (20, 7));
    }

    #[test]
    fn tall_rectangle_in_tiny_image_is_enlarged() {
        let img = rect_image(9, 13, (3, 5), (1, 11));
        let d = digit_from_grey(9, 13, &img).unwrap();
        let (w, h) = assert_mnist_like(&d);
        assert_eq!((w, h), (4, 20));
    }

    #[test]
    fn stroke_on_large_canvas() {
        let (w, h) = (317, 241);
        let d = digit_from_grey(w, h, &stroke_image(w, h)).unwrap();
        assert_mnist_like(&d);
    }

    #[test]
    fn one_pixel_line() {
        let img = rect_image(50, 50, (25, 26), (5, 45));
        let d = digit_from_grey(50, 50, &img).unwrap();
        assert_eq!(assert_mnist_like(&d), (1, 20));
    }

    #[test]
    fn dark_ink_on_white_paper_is_inverted() {
        let (w, h) = (317, 241);
        let white_on_black = stroke_image(w, h);
        let black_on_white: Vec<u8> = white_on_black.iter().map(|&p| 255 - p).collect();
        let a = digit_from_grey(w, h, &white_on_black).unwrap();
        let b = digit_from_grey(w, h, &black_on_white).unwrap();
        assert_eq!(a, b);
        // The corners are background, hence black after inversion.
        assert_eq!(b[0], 0);
        assert_eq!(b[PIXELS - 1], 0);
    }

    #[test]
    fn grey_paper_and_noise_are_ignored() {
        let (w, h) = (120, 90);
        let clean = rect_image(w, h, (40, 60), (20, 70));
        // Grey paper (200) with +-8 noise and dark ink (40).
        let noisy: Vec<u8> = clean
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                if p > 0 {
                    40
                } else {
                    200 + (i * 7 % 17) as u8 - 8
                }
            })
            .collect();
        let a = digit_from_grey(w, h, &clean).unwrap();
        let b = digit_from_grey(w, h, &noisy).unwrap();
        assert_eq!(stats(&a).1, stats(&b).1);
        assert_mnist_like(&b);
    }

    #[test]
    fn blank_and_bad_sizes_are_errors() {
        assert!(matches!(
            digit_from_grey(10, 10, &[255; 100]),
            Err(PreprocessError::Blank)
        ));
        let faint: Vec<u8> = (0..100).map(|i| if i == 55 { 20 } else { 0 }).collect();
        assert!(matches!(
            digit_from_grey(10, 10, &faint),
            Err(PreprocessError::Blank)
        ));
        assert!(matches!(
            digit_from_grey(10, 10, &[0; 99]),
            Err(PreprocessError::BadSize { len: 99, .. })
        ));
        assert!(matches!(
            digit_from_grey(0, 0, &[]),
            Err(PreprocessError::BadSize { .. })
        ));
    }

    #[test]
    fn area_weights_sum_to_one() {
        for (s, d) in [(60, 20), (7, 20), (1, 1), (317, 20), (3, 2)] {
            for ws in area_weights(s, d) {
                let sum: f32 = ws.iter().map(|w| w.1).sum();
                assert!((sum - 1.0).abs() < 1e-5, "{s}->{d}: {sum}");
            }
        }
    }

    fn encode(w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(data).unwrap();
        writer.finish().unwrap();
        out
    }

    #[test]
    fn png_round_trip_grey_rgb_16bit_and_alpha() {
        let (w, h) = (64usize, 48usize);
        // Black ink on white paper, as a user would draw it.
        let grey: Vec<u8> = rect_image(w, h, (20, 30), (8, 40))
            .iter()
            .map(|&p| 255 - p)
            .collect();
        let expected = digit_from_grey(w, h, &grey).unwrap();
        assert_mnist_like(&expected);
        let (wu, hu) = (w as u32, h as u32);

        let g8 = encode(
            wu,
            hu,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            &grey,
        );
        assert_eq!(digit_from_png(&g8).unwrap(), expected);

        let g16: Vec<u8> = grey.iter().flat_map(|&p| [p, p]).collect();
        let g16 = encode(
            wu,
            hu,
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
            &g16,
        );
        assert_eq!(digit_from_png(&g16).unwrap(), expected);

        let rgb: Vec<u8> = grey.iter().flat_map(|&p| [p, p, p]).collect();
        let rgb = encode(wu, hu, png::ColorType::Rgb, png::BitDepth::Eight, &rgb);
        assert_eq!(digit_from_png(&rgb).unwrap(), expected);

        // 1-bit grey: ink 0, paper 1.
        let mut bits = Vec::new();
        for row in grey.chunks(w) {
            for byte in row.chunks(8) {
                let mut b = 0u8;
                for (i, &p) in byte.iter().enumerate() {
                    b |= u8::from(p > 127) << (7 - i);
                }
                bits.push(b);
            }
        }
        let g1 = encode(wu, hu, png::ColorType::Grayscale, png::BitDepth::One, &bits);
        assert_eq!(digit_from_png(&g1).unwrap(), expected);

        // Black strokes on a transparent canvas.
        let rgba: Vec<u8> = grey
            .iter()
            .flat_map(|&p| {
                if p < 128 {
                    [0, 0, 0, 255]
                } else {
                    [0, 0, 0, 0]
                }
            })
            .collect();
        let rgba = encode(wu, hu, png::ColorType::Rgba, png::BitDepth::Eight, &rgba);
        assert_eq!(digit_from_png(&rgba).unwrap(), expected);

        // White strokes on a transparent canvas.
        let ga: Vec<u8> = grey
            .iter()
            .flat_map(|&p| if p < 128 { [255, 255] } else { [0, 0] })
            .collect();
        let ga = encode(
            wu,
            hu,
            png::ColorType::GrayscaleAlpha,
            png::BitDepth::Eight,
            &ga,
        );
        assert_eq!(digit_from_png(&ga).unwrap(), expected);
    }

    #[test]
    fn png_errors() {
        assert!(matches!(
            digit_from_png(b"GIF89a..."),
            Err(PreprocessError::NotPng)
        ));
        let blank = encode(
            8,
            8,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            &[9; 64],
        );
        assert!(matches!(
            digit_from_png(&blank),
            Err(PreprocessError::Blank)
        ));
        let mut cut = encode(8, 8, png::ColorType::Rgb, png::BitDepth::Eight, &[7; 192]);
        cut.truncate(cut.len() - 20);
        assert!(matches!(
            digit_from_png(&cut),
            Err(PreprocessError::Decode(_) | PreprocessError::Unsupported(_))
        ));
    }
}
