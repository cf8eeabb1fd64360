//! no_std inference for exported L-Softmax models.
#![no_std]
#![forbid(unsafe_code)]
