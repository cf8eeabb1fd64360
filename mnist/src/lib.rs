//! MNIST data set: fetching, verification, caching and IDX parsing.
//!
//! * [`idx`] parses and validates the IDX files ([`parse_images`], [`parse_labels`],
//!   [`parse_split`], [`load_dir`]).
//! * [`fetch`](mod@fetch) downloads the four files into a cache folder and verifies their
//!   SHA-256 ([`fetch()`], [`load_or_fetch`], [`default_data_dir`]).
//! * [`preprocess`] turns a user's picture of a digit into a 28x28 MNIST-style image.
//!
//! Pixel values are `u8` in `0..=255`, white digit on black background. To feed a network,
//! scale to `0..=1` and normalise with [`MEAN`] and [`STD`]: `(p / 255 - MEAN) / STD`.

pub mod fetch;
pub mod idx;
pub mod preprocess;
mod tmp;

pub use fetch::{default_data_dir, fetch, fetch_with, load_or_fetch, FetchError, FetchOptions};
pub use idx::{
    load_dir, parse_images, parse_labels, parse_mnist_split, parse_split, IdxError, Mnist, Split,
};

/// Mean of the MNIST training pixels after scaling to `0..=1` (the usual normalisation constant).
pub const MEAN: f32 = 0.1307;
/// Standard deviation of the MNIST training pixels after scaling to `0..=1`.
pub const STD: f32 = 0.3081;

/// Side length of an MNIST image in pixels.
pub const SIDE: usize = 28;
/// Number of pixels in an MNIST image (28 * 28).
pub const PIXELS: usize = SIDE * SIDE;
/// Number of classes (digits 0 to 9).
pub const CLASSES: usize = 10;

/// Any error of this crate's loading functions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or is not a valid IDX file.
    #[error(transparent)]
    Idx(#[from] IdxError),
    /// The files could not be fetched or verified.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// Normalises one pixel value the way the trainer does: `(p / 255 - MEAN) / STD`.
pub fn normalize(p: u8) -> f32 {
    (f32::from(p) / 255.0 - MEAN) / STD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_endpoints() {
        assert!((normalize(0) + MEAN / STD).abs() < 1e-6);
        assert!((normalize(255) - (1.0 - MEAN) / STD).abs() < 1e-6);
    }
}
