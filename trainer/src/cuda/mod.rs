//! The CUDA backend (cargo feature `cuda`): the whole training step on the GPU through cust.
//!
//! One model definition, two sets of kernels: the GPU network is built from the same
//! [`ArchSpec`](crate::arch::ArchSpec) as the CPU [`Network`](crate::network::Network), follows
//! the same lambda schedules and SGD semantics, and converts to and from the CPU network after
//! every epoch, so checkpoints, logs, resume and export are the same from either device.
//!
//! - [`device`]: the context, the PTX modules of the `kernels` crate, buffers, launches;
//! - [`ops`]: one function per layer operation (a few kernel launches each);
//! - [`net`]: [`GpuNetwork`](net::GpuNetwork), the network's state and buffers on the device;
//! - [`train`]: the data set on the device and the epoch loop, plugged into
//!   [`Trainer`](crate::train::Trainer);
//! - [`check`]: kernel-by-kernel and step-by-step comparisons against the CPU trainer
//!   (`lsoftmax gpu-check`).
//!
//! A binary built with this feature links `libcuda.so.1` (the NVIDIA driver); see
//! `scripts/cuda_stub.sh` for building it on a machine without one.

pub mod check;
pub mod device;
pub mod net;
pub mod ops;
pub mod train;

pub use device::{DeviceInfo, Gpu};
pub use train::GpuState;
