//! Figures and tables made from training runs, drawn without system fonts (the text comes from
//! the DejaVu Sans bytes of the `dejavu` crate through plotters' `ab_glyph` backend):
//!
//! - [`fig2`]: the paper's Fig. 2, 2-D test features per margin with each class's weight
//!   direction, and the angle statistics of [`angles`];
//! - [`curves`]: test accuracy and loss per epoch from JSON-lines logs ([`logs`]);
//! - [`report`]: a markdown table of final accuracies beside the seed's and the paper's.
//!
//! [`style`] holds the font and colours, [`raster`] the RGB buffer and its PNG encoding.

pub mod angles;
pub mod curves;
pub mod features;
pub mod fig2;
pub mod logs;
pub mod raster;
pub mod report;
pub mod style;

/// Turns a plotters drawing error (which borrows the backend's error type) into an
/// [`anyhow::Error`].
pub(crate) fn draw_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the figure: {e}")
}
