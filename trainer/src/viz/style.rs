//! Fonts and colours shared by every figure.
//!
//! Text is rendered by plotters' `ab_glyph` backend from DejaVu Sans, whose bytes the `dejavu`
//! crate embeds: no system font, fontconfig or freetype is looked up, so figures render the same
//! on any machine.

use std::sync::Once;

use plotters::style::{register_font, FontStyle, RGBColor};

/// The font family name every figure asks plotters for (plotters' default family, so axis
/// labels use it too).
pub const FONT: &str = "sans-serif";

/// Registers DejaVu Sans (regular and bold) as [`FONT`]; call before drawing any text. Cheap
/// after the first call.
pub fn ensure_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped by the dependency; failure would be a
        // packaging bug, not an input error.
        register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("DejaVu Sans from the dejavu crate does not parse"));
        register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
            .unwrap_or_else(|_| panic!("DejaVu Sans Bold from the dejavu crate does not parse"));
    });
}

/// Ten well-separated colours (matplotlib's `tab10`), one per digit class or per run.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The colour of class or series `i` (the palette repeats after ten).
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_colours_are_distinct() {
        for (i, a) in PALETTE.iter().enumerate() {
            assert!(PALETTE[..i].iter().all(|b| b != a), "colour {i} repeats");
        }
    }
}
