//! CPU trainer for L-Softmax (Large-Margin Softmax, Liu et al., ICML 2016) MNIST networks.
//!
//! Layout of the crate: [`tensor`] (channel-major activations), [`layers`] (each layer's
//! forward, backward and gradient test), [`lsoftmax`] (the margin head and cross-entropy),
//! [`lambda`] (the lambda schedules), [`arch`] and [`network`] (networks as data), [`optim`]
//! (SGD and the step schedule), [`train`] (the loop), [`checkpoint`] (atomic, resumable state).

// Link OpenBLAS (through blas-src) for ndarray's and our own SGEMM calls.
extern crate blas_src;

pub mod arch;
pub mod checkpoint;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod deploy;
pub mod firmware_data;
pub mod gemm;
pub mod gemm512;
#[cfg(test)]
pub(crate) mod gradcheck;
pub mod lambda;
pub mod layers;
pub mod lsoftmax;
pub mod network;
pub mod optim;
pub mod par;
pub mod reduce;
pub mod rng;
pub mod tensor;
pub mod torch_io;
pub mod train;
pub mod viz;
