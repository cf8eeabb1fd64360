//! CUDA kernels for the trainer's GPU backend.
//!
//! The GPU backend is not implemented yet (see the CUDA issue); this crate currently
//! exposes no kernels.
