//! Export of trained L-Softmax networks: folding, calibration, int8 quantization, and the
//! integer simulation that `infer-core` must match bit for bit.

pub mod float_model;
