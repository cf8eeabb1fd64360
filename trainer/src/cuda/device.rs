//! The CUDA device through cust: context, stream, the trainer's PTX modules, typed device
//! buffers, and kernel launches by name.
//!
//! Launches go through the driver API (`cuLaunchKernel`) with arguments packed into 8-byte
//! slots, so a launch is data (a name, a grid and a list of [`Arg`]s) rather than a macro call.
//! Everything runs on one stream, in order; host copies synchronise that stream.

use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::marker::PhantomData;

use anyhow::{anyhow, bail, Context as _, Result};
use cust::context::Context;
use cust::device::{Device, DeviceAttribute};
use cust::memory::{DeviceBuffer, DeviceCopy};
use cust::module::Module;
use cust::stream::{Stream, StreamFlags};
use cust::sys as cu;
use cust::CudaFlags;

/// What the probe found: the device in words.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Device name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Total device memory in bytes.
    pub memory: usize,
    /// Compute capability (major, minor).
    pub capability: (i32, i32),
    /// Streaming multiprocessors.
    pub sms: u32,
    /// CUDA version the driver supports, e.g. (13, 0).
    pub driver: (i32, i32),
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (sm_{}{}, {} SMs, {:.0} GiB, driver CUDA {}.{})",
            self.name,
            self.capability.0,
            self.capability.1,
            self.sms,
            self.memory as f64 / (1u64 << 30) as f64,
            self.driver.0,
            self.driver.1
        )
    }
}

/// Turns a driver status into a `Result`, naming the failed operation.
pub(crate) fn check(status: cu::CUresult, what: &str) -> Result<()> {
    if status == cu::CUresult::CUDA_SUCCESS {
        return Ok(());
    }
    let mut text: *const std::os::raw::c_char = std::ptr::null();
    // SAFETY: cuGetErrorString writes a pointer to a static string (or leaves it null).
    let described = unsafe { cu::cuGetErrorString(status, &mut text) };
    let msg = if described == cu::CUresult::CUDA_SUCCESS && !text.is_null() {
        // SAFETY: non-null pointers from cuGetErrorString are NUL-terminated static strings.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    } else {
        format!("{status:?}")
    };
    Err(anyhow!("CUDA error in {what}: {msg}"))
}

/// A kernel argument (defined with the kernels' parameter types, which it is checked against).
pub use kernels::Arg;

/// A launch grid: `(x, y, z)` blocks.
pub type Grid = (u32, u32, u32);

/// The device context with the trainer's kernels loaded.
pub struct Gpu {
    /// Each loaded kernel with its parameters, read from its PTX: every launch is checked
    /// against them.
    functions: HashMap<&'static str, (cu::CUfunction, Vec<kernels::ParamType>)>,
    /// Kernels of optional modules the driver refused, with the reason.
    unavailable: HashMap<&'static str, String>,
    stream: Stream,
    _modules: Vec<Module>,
    _context: Context,
    /// The device.
    pub info: DeviceInfo,
    /// Which `sgemm` tiles products use (`LSOFTMAX_GPU_GEMM`).
    pub gemm_policy: super::ops::GemmPolicy,
}

impl Gpu {
    /// Initialises the driver on device 0, loads (JIT-compiles) every PTX module of the
    /// `kernels` crate and looks up every kernel. Errors say what is missing: no driver, no
    /// device, a driver too old for PTX ISA 9.0, ...
    pub fn new() -> Result<Self> {
        let gemm_policy = super::ops::GemmPolicy::from_env()?;
        cust::init(CudaFlags::empty()).map_err(|e| {
            anyhow!("CUDA driver initialisation failed ({e}): no usable NVIDIA GPU or driver")
        })?;
        let count = Device::num_devices().context("counting CUDA devices")?;
        if count == 0 {
            bail!("the CUDA driver reports no GPU");
        }
        let device = Device::get_device(0).context("opening CUDA device 0")?;
        let context = Context::new(device).context("creating a CUDA context")?;
        let attr = |a| device.get_attribute(a);
        let version = cust::CudaApiVersion::get().context("querying the driver version")?;
        let info = DeviceInfo {
            name: device.name().unwrap_or_else(|_| "unknown GPU".into()),
            memory: device.total_memory().unwrap_or(0),
            capability: (
                attr(DeviceAttribute::ComputeCapabilityMajor)?,
                attr(DeviceAttribute::ComputeCapabilityMinor)?,
            ),
            sms: attr(DeviceAttribute::MultiprocessorCount)?.max(1) as u32,
            driver: (version.major(), version.minor()),
        };
        if info.capability.0 < 8 {
            bail!(
                "{} has compute capability {}.{}; the kernels need 8.0 or later (A100, H100, ...)",
                info.name,
                info.capability.0,
                info.capability.1
            );
        }
        // A blocking stream: it orders itself after work on the legacy default stream, such as
        // the memset of a freshly zeroed DeviceBuffer.
        let stream = Stream::new(StreamFlags::DEFAULT, None).context("creating a stream")?;
        let mut modules = Vec::new();
        let mut functions = HashMap::new();
        let mut unavailable = HashMap::new();
        for m in kernels::MODULES {
            let module = match Module::from_ptx(m.ptx, &[]) {
                Ok(module) => module,
                Err(e) if m.optional => {
                    let why = format!("loading the PTX of {}.cu failed ({e})", m.name);
                    eprintln!("warning: {why}; its kernels are unavailable");
                    for &k in m.kernels {
                        unavailable.insert(k, why.clone());
                    }
                    continue;
                }
                Err(e) => bail!(
                    "loading the PTX of {}.cu failed ({e}); the kernels are PTX ISA 9.0, which \
                     needs a driver for CUDA 13.0 or later (this one supports {}.{})",
                    m.name,
                    info.driver.0,
                    info.driver.1
                ),
            };
            for &k in m.kernels {
                let f = module
                    .get_function(k)
                    .with_context(|| format!("kernel {k} in {}.ptx", m.name))?;
                let params = kernels::param_types(m.ptx, k)
                    .and_then(|ps| ps.collect::<Option<Vec<_>>>())
                    .ok_or_else(|| {
                        anyhow!(
                            "kernel {k}: {}.ptx declares no parameter list of known types",
                            m.name
                        )
                    })?;
                functions.insert(k, (f.to_raw(), params));
            }
            modules.push(module);
        }
        if gemm_policy == super::ops::GemmPolicy::Tf32 {
            let tf32 = super::ops::GemmTile::Tf32.kernels();
            if let Some(why) = tf32.iter().find_map(|k| unavailable.get(k)) {
                bail!("LSOFTMAX_GPU_GEMM=tf32, but the TF32 kernels are unavailable: {why}");
            }
        }
        Ok(Self {
            functions,
            unavailable,
            stream,
            _modules: modules,
            _context: context,
            info,
            gemm_policy,
        })
    }

    /// Launches `kernel` on the stream (asynchronously).
    pub fn launch(&self, kernel: &str, grid: Grid, block: u32, args: &[Arg]) -> Result<()> {
        let (f, params) =
            self.functions
                .get(kernel)
                .ok_or_else(|| match self.unavailable.get(kernel) {
                    Some(why) => anyhow!("kernel {kernel} is unavailable: {why}"),
                    None => anyhow!("unknown kernel {kernel}"),
                })?;
        let f = *f;
        kernels::check_args(params, args).map_err(|e| anyhow!("kernel {kernel}: {e}"))?;
        // Each argument in its own 8-byte slot; the driver reads as many bytes as the kernel's
        // parameter has, from the slot's start (little-endian).
        let mut slots: Vec<u64> = args
            .iter()
            .map(|a| match *a {
                Arg::Ptr(p) => p,
                Arg::I32(v) => v as u32 as u64,
                Arg::I64(v) => v as u64,
                Arg::F32(v) => v.to_bits() as u64,
                Arg::F64(v) => v.to_bits(),
            })
            .collect();
        let mut ptrs: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut c_void)
            .collect();
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        // SAFETY: `f` is a kernel of a loaded module; `ptrs` holds one pointer per parameter,
        // each to a slot of at least the parameter's size (`check_args` compared them with the
        // kernel's PTX), and the slots outlive the call, which copies the values.
        let status = unsafe {
            cu::cuLaunchKernel(
                f,
                grid.0,
                grid.1,
                grid.2,
                block,
                1,
                1,
                0,
                self.stream.as_inner(),
                ptrs.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        check(status, kernel)
    }

    /// A 1-d grid of `block`-thread blocks covering `n` elements of a grid-stride kernel
    /// (capped; the kernels loop over the rest).
    pub fn grid_for(&self, n: usize, block: u32) -> Grid {
        let blocks = n.div_ceil(block as usize).clamp(1, 32 * 1024);
        (blocks as u32, 1, 1)
    }

    /// Waits for all queued work; a kernel fault surfaces here.
    pub fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| anyhow!("CUDA error while running kernels: {e}"))
    }

    pub(crate) fn raw_stream(&self) -> cu::CUstream {
        self.stream.as_inner()
    }
}

/// A device array of `len` values of `T`.
pub struct DevBuf<T> {
    buf: DeviceBuffer<u8>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Copy + DeviceCopy> DevBuf<T> {
    /// `len` zeroed values.
    pub fn zeros(len: usize) -> Result<Self> {
        let bytes = (len * std::mem::size_of::<T>()).max(1);
        let buf = DeviceBuffer::<u8>::zeroed(bytes).with_context(|| {
            format!("allocating {bytes} bytes on the GPU (out of device memory?)")
        })?;
        Ok(Self {
            buf,
            len,
            _t: PhantomData,
        })
    }

    /// A buffer holding a copy of `data`.
    pub fn from_slice(gpu: &Gpu, data: &[T]) -> Result<Self> {
        let mut b = Self::zeros(data.len())?;
        b.upload(gpu, 0, data)?;
        Ok(b)
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Device address of the first value.
    pub fn ptr(&self) -> u64 {
        self.buf.as_device_ptr().as_raw()
    }

    /// Device address of value `i` (as a kernel argument).
    pub fn at(&self, i: usize) -> Arg {
        assert!(i <= self.len, "device offset {i} beyond {}", self.len);
        Arg::Ptr(self.ptr() + (i * std::mem::size_of::<T>()) as u64)
    }

    /// The whole buffer as a kernel argument.
    pub fn arg(&self) -> Arg {
        Arg::Ptr(self.ptr())
    }

    /// Copies `data` to values `offset..offset + data.len()` and waits for the copy.
    pub fn upload(&mut self, gpu: &Gpu, offset: usize, data: &[T]) -> Result<()> {
        assert!(offset + data.len() <= self.len, "upload out of range");
        if data.is_empty() {
            return Ok(());
        }
        let size = std::mem::size_of::<T>();
        // SAFETY: the range is inside the allocation; `data` stays alive until the stream is
        // synchronised below.
        let status = unsafe {
            cu::cuMemcpyHtoDAsync_v2(
                self.ptr() + (offset * size) as u64,
                data.as_ptr() as *const c_void,
                std::mem::size_of_val(data),
                gpu.raw_stream(),
            )
        };
        check(status, "host-to-device copy")?;
        gpu.sync()
    }

    /// Copies values `offset..offset + out.len()` into `out` (after all queued work).
    pub fn download_into(&self, gpu: &Gpu, offset: usize, out: &mut [T]) -> Result<()> {
        assert!(offset + out.len() <= self.len, "download out of range");
        if out.is_empty() {
            return Ok(());
        }
        let size = std::mem::size_of::<T>();
        // SAFETY: the range is inside the allocation; `out` is written before the stream is
        // synchronised below and not touched meanwhile.
        let status = unsafe {
            cu::cuMemcpyDtoHAsync_v2(
                out.as_mut_ptr() as *mut c_void,
                self.ptr() + (offset * size) as u64,
                std::mem::size_of_val(out),
                gpu.raw_stream(),
            )
        };
        check(status, "device-to-host copy")?;
        gpu.sync()
    }

    /// All values, copied to the host.
    pub fn to_vec(&self, gpu: &Gpu) -> Result<Vec<T>>
    where
        T: Default,
    {
        let mut v = vec![T::default(); self.len];
        self.download_into(gpu, 0, &mut v)?;
        Ok(v)
    }
}

/// Makes sure `buf` holds at least `len` values (reallocating, contents lost, when it is
/// shorter).
pub fn ensure<T: Copy + DeviceCopy>(buf: &mut Option<DevBuf<T>>, len: usize) -> Result<()> {
    if buf.as_ref().is_none_or(|b| b.len() < len) {
        *buf = Some(DevBuf::zeros(len)?);
    }
    Ok(())
}
