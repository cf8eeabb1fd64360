//! CUDA kernels of the L-Softmax trainer's GPU backend, as PTX text.
//!
//! The CUDA C sources live in `kernels/cuda/` (one file per concept: `gemm.cu`, `conv.cu`,
//! `batchnorm.cu`, ...). `scripts/build_ptx.sh` compiles each with the pinned nvcc 13.0.88
//! (`-ptx -arch=compute_80`, PTX ISA 9.0, which a CUDA 13.0 driver JIT-compiles for A100, H100
//! and H200) into `kernels/ptx/`, which is committed: building the trainer never needs nvcc.
//! `kernels/ptx/SOURCES.sha256` records the sources each PTX was built from; this crate's tests
//! fail when the PTX is stale, and `scripts/check_ptx.sh` also runs ptxas (sm_80, sm_90) and
//! rebuilds the PTX to compare.
//!
//! Every kernel is `extern "C"` and deterministic (reductions run in f64 in a fixed order,
//! without atomics), and fp32 except the opt-in `sgemm_tf32_*`, which multiply on the tensor
//! cores in TF32.
#![no_std]

/// Threads per block that every reduction kernel (`row_sum_partial`, `bn_sum_partial`,
/// `bn_backward_partial`, `prelu_backward_partial`, `lsoftmax_forward`, `ce_reduce`) must be
/// launched with.
pub const RED_THREADS: u32 = 256;

/// Values per part of the per-channel sums (`row_sum_partial`, `bn_sum_partial`,
/// `bn_backward_partial`, `prelu_backward_partial`): they run with grid `(parts, C)`,
/// `parts = ceil(row / CHAN_PART)`, and their `*_finish` kernels add the parts in order.
pub const CHAN_PART: u32 = 16384;

/// Threads per block of the `sgemm_*` kernels.
pub const GEMM_THREADS: u32 = 256;
/// Rows of C per `sgemm_*` block (grid y = ceil(M / GEMM_TILE)).
pub const GEMM_TILE_M: u32 = 64;
/// Columns of C per `sgemm_*` block (grid x = ceil(N / GEMM_TILE)).
pub const GEMM_TILE_N: u32 = 64;
/// Depth of one shared-memory stage of the `sgemm_*` kernels; split-K chunks are multiples of
/// it.
pub const GEMM_TILE_K: u32 = 16;

/// Rows of C per `sgemm_wide_*` block (grid y = ceil(M / 64)).
pub const GEMM_WIDE_TILE_M: u32 = 64;
/// Columns of C per `sgemm_wide_*` block (grid x = ceil(N / 256)).
pub const GEMM_WIDE_TILE_N: u32 = 256;
/// Depth of one shared-memory stage of the `sgemm_wide_*` kernels; split-K chunks are
/// multiples of it.
pub const GEMM_WIDE_TILE_K: u32 = 8;

/// Rows of C per `sgemm_tf32_*` block (grid y = ceil(M / 64)).
pub const GEMM_TF32_TILE_M: u32 = 64;
/// Columns of C per `sgemm_tf32_*` block (grid x = ceil(N / 128)).
pub const GEMM_TF32_TILE_N: u32 = 128;
/// Depth of one shared-memory stage of the `sgemm_tf32_*` kernels; split-K chunks are
/// multiples of it.
pub const GEMM_TF32_TILE_K: u32 = 16;

/// One PTX module: the PTX built from `kernels/cuda/{name}.cu` and the kernels it defines.
#[derive(Clone, Copy, Debug)]
pub struct PtxModule {
    /// Source name without `.cu`.
    pub name: &'static str,
    /// The PTX text (NUL-free; append a NUL where an API wants a C string).
    pub ptx: &'static str,
    /// Names of the `extern "C" __global__` kernels it defines.
    pub kernels: &'static [&'static str],
    /// Whether training can go on without it (the opt-in TF32 products): a driver that
    /// refuses it leaves its kernels unavailable instead of failing the GPU's start.
    pub optional: bool,
}

macro_rules! module {
    ($name:literal, [$($k:literal),* $(,)?]) => {
        module!($name, [$($k),*], false)
    };
    ($name:literal, [$($k:literal),* $(,)?], $optional:literal) => {
        PtxModule {
            name: $name,
            ptx: include_str!(concat!("../ptx/", $name, ".ptx")),
            kernels: &[$($k),*],
            optional: $optional,
        }
    };
}

/// Every PTX module of the trainer, in a fixed order.
pub const MODULES: &[PtxModule] = &[
    module!(
        "gemm",
        [
            "sgemm_nn",
            "sgemm_nt",
            "sgemm_tn",
            "sgemm_wide_nn",
            "sgemm_wide_nt",
            "sgemm_wide_tn",
            "gemm_splitk_reduce",
        ]
    ),
    module!(
        "gemm_tf32",
        ["sgemm_tf32_nn", "sgemm_tf32_nt", "sgemm_tf32_tn"],
        true
    ),
    module!("conv", ["im2col", "col2im"]),
    module!(
        "layout",
        [
            "flatten_forward",
            "flatten_backward",
            "row_sum_partial",
            "row_sum_finish",
        ]
    ),
    module!(
        "batchnorm",
        [
            "bn_sum_partial",
            "bn_mean_finish",
            "bn_stats_finish",
            "bn_stats_eval",
            "bn_apply",
            "bn_backward_partial",
            "bn_backward_finish",
            "bn_backward_dx",
        ]
    ),
    module!(
        "prelu",
        [
            "prelu_forward",
            "prelu_backward_partial",
            "prelu_backward_finish",
        ]
    ),
    module!("maxpool", ["maxpool_forward", "maxpool_backward"]),
    module!(
        "lsoftmax",
        [
            "lsoftmax_forward",
            "lsoftmax_backward_coef",
            "lsoftmax_backward_dw",
            "lsoftmax_backward_dx",
        ]
    ),
    module!("loss", ["softmax_ce", "ce_reduce"]),
    module!("sgd", ["sgd_step"]),
    module!("gather", ["gather_batch"]),
];

/// The module that defines `kernel`, if any.
pub fn module_of(kernel: &str) -> Option<&'static PtxModule> {
    MODULES.iter().find(|m| m.kernels.contains(&kernel))
}

/// A kernel parameter's type as PTX declares it: what a launch must pass in its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    /// `.u32` / `.s32` / `.b32`: `int`, `unsigned`.
    U32,
    /// `.u64` / `.s64` / `.b64`: pointers, `long long`.
    U64,
    /// `.f32`: `float`.
    F32,
    /// `.f64`: `double`.
    F64,
}

impl ParamType {
    /// The type of a PTX type suffix such as `.u64`; None for any other (8- and 16-bit
    /// scalars, `.align N .b8` structs: no kernel here takes one).
    pub fn from_ptx(t: &str) -> Option<Self> {
        match t {
            ".u32" | ".s32" | ".b32" => Some(Self::U32),
            ".u64" | ".s64" | ".b64" => Some(Self::U64),
            ".f32" => Some(Self::F32),
            ".f64" => Some(Self::F64),
            _ => None,
        }
    }
}

/// The parameters of kernel `name` in `ptx` (`.entry name(.param .u64 ..., ...)`), in order,
/// each None where its type is not a [`ParamType`]; None when `ptx` does not define `name`.
pub fn param_types<'a>(
    ptx: &'a str,
    name: &str,
) -> Option<impl Iterator<Item = Option<ParamType>> + 'a> {
    let mut rest = ptx;
    let list = loop {
        let at = rest.find(".entry ")? + ".entry ".len();
        rest = &rest[at..];
        if let Some(args) = rest
            .strip_prefix(name)
            .and_then(|after| after.trim_start().strip_prefix('('))
        {
            break &args[..args.find(')')?];
        }
    };
    Some(list.split(',').filter(|p| !p.trim().is_empty()).map(|p| {
        let mut words = p.split_whitespace();
        match (words.next(), words.next()) {
            (Some(".param"), Some(t)) => ParamType::from_ptx(t),
            _ => None,
        }
    }))
}

/// A kernel launch argument, for one parameter. Pointers are raw device addresses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    /// A device pointer (0 for null).
    Ptr(u64),
    /// `int`.
    I32(i32),
    /// `long long`.
    I64(i64),
    /// `float`.
    F32(f32),
    /// `double`.
    F64(f64),
}

impl ParamType {
    /// Whether `arg` may be passed for a parameter of this type: a pointer or `I64` for
    /// `.u64`, `I32` for `.u32`, `F32` for `.f32`, `F64` for `.f64`.
    pub fn accepts(self, arg: Arg) -> bool {
        matches!(
            (self, arg),
            (Self::U64, Arg::Ptr(_) | Arg::I64(_))
                | (Self::U32, Arg::I32(_))
                | (Self::F32, Arg::F32(_))
                | (Self::F64, Arg::F64(_))
        )
    }
}

/// Why a launch's arguments do not fit a kernel's parameters ([`check_args`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArgMismatch {
    /// The launch passes a different number of arguments than the kernel has parameters.
    Count {
        /// Parameters in the kernel's PTX.
        params: usize,
        /// Arguments of the launch.
        args: usize,
    },
    /// Argument `index` does not fit its parameter.
    Type {
        /// Position in the argument list, from 0.
        index: usize,
        /// The argument passed.
        arg: Arg,
        /// The parameter's type in the PTX.
        param: ParamType,
    },
}

impl core::fmt::Display for ArgMismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Count { params, args } => write!(
                f,
                "its PTX declares {params} parameters, the launch passed {args} arguments"
            ),
            Self::Type { index, arg, param } => write!(
                f,
                "argument {index} is {arg:?}, its PTX parameter is {param:?}"
            ),
        }
    }
}

/// Checks a launch's `args` against a kernel's `params` (from [`param_types`]): as many, each
/// one [`ParamType::accepts`]. A launch that passes this check gives the driver a value of the
/// right size for every parameter; one that fails it would have the driver read past the
/// argument list or misread a value.
pub fn check_args(params: &[ParamType], args: &[Arg]) -> Result<(), ArgMismatch> {
    if params.len() != args.len() {
        return Err(ArgMismatch::Count {
            params: params.len(),
            args: args.len(),
        });
    }
    match params.iter().zip(args).position(|(p, a)| !p.accepts(*a)) {
        Some(index) => Err(ArgMismatch::Type {
            index,
            arg: args[index],
            param: params[index],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::collections::BTreeSet;
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    use sha2::{Digest, Sha256};

    use super::*;

    const DIR: &str = env!("CARGO_MANIFEST_DIR");

    /// Names of the `.entry` points in a PTX text.
    fn entries(ptx: &str) -> BTreeSet<String> {
        ptx.lines()
            .filter_map(|l| l.trim().strip_prefix(".visible .entry "))
            .map(|rest| rest.split('(').next().unwrap_or("").trim().into())
            .collect()
    }

    #[test]
    fn every_listed_kernel_is_an_entry_of_its_ptx_and_nothing_else_is() {
        let mut all = BTreeSet::new();
        for m in MODULES {
            let want: BTreeSet<String> = m.kernels.iter().map(|&k| k.into()).collect();
            assert_eq!(entries(m.ptx), want, "kernels of {}.ptx", m.name);
            for k in m.kernels {
                assert!(all.insert(*k), "kernel {k} defined twice");
                assert!(m.ptx.contains(&format!(".entry {k}(")));
                assert_eq!(module_of(k).map(|m| m.name), Some(m.name));
            }
        }
        assert!(module_of("no_such_kernel").is_none());
    }

    #[test]
    fn every_kernel_has_a_signature_of_known_types() {
        for m in MODULES {
            for k in m.kernels {
                let params: Vec<_> = param_types(m.ptx, k)
                    .unwrap_or_else(|| panic!("{k}: no .entry in {}.ptx", m.name))
                    .collect();
                assert!(!params.is_empty(), "{k}: no parameters");
                assert!(params.iter().all(Option::is_some), "{k}: {params:?}");
            }
        }
        // sgd_step(float* w, const float* g, float* buf, long long n, float lr,
        //          float momentum, float wd, int first)
        let sgd: Vec<_> = param_types(module_of("sgd_step").unwrap().ptx, "sgd_step")
            .unwrap()
            .collect();
        use ParamType::*;
        assert_eq!(
            sgd,
            [U64, U64, U64, U64, F32, F32, F32, U32].map(Some).to_vec()
        );
        // A name that only prefixes an entry, or none at all.
        assert!(param_types(module_of("sgemm_nn").unwrap().ptx, "sgemm").is_none());
        assert!(param_types("", "sgd_step").is_none());
        let odd = ".entry k(\n\t.param .u8 k_param_0,\n\t.param .f64 k_param_1\n)\n{\n}";
        assert_eq!(
            param_types(odd, "k").unwrap().collect::<Vec<_>>(),
            [None, Some(F64)]
        );
        assert_eq!(param_types(".entry e()\n{\n}", "e").unwrap().count(), 0);
    }

    #[test]
    fn launch_arguments_are_checked_against_the_ptx() {
        use ParamType::*;
        let sgd: Vec<ParamType> = param_types(module_of("sgd_step").unwrap().ptx, "sgd_step")
            .unwrap()
            .map(Option::unwrap)
            .collect();
        // What the trainer's ops::sgd_step passes.
        let mut args = [
            Arg::Ptr(0x1000),
            Arg::Ptr(0x2000),
            Arg::Ptr(0x3000),
            Arg::I64(1000),
            Arg::F32(0.1),
            Arg::F32(0.9),
            Arg::F32(5e-4),
            Arg::I32(1),
        ];
        assert_eq!(check_args(&sgd, &args), Ok(()));
        // A `long long` where the kernel takes an `int`, and the other way round.
        args[7] = Arg::I64(1);
        let wrong = check_args(&sgd, &args);
        assert_eq!(
            wrong,
            Err(ArgMismatch::Type {
                index: 7,
                arg: Arg::I64(1),
                param: U32
            })
        );
        assert_eq!(
            format!("{}", wrong.unwrap_err()),
            "argument 7 is I64(1), its PTX parameter is U32"
        );
        args[7] = Arg::I32(1);
        args[3] = Arg::I32(1000);
        assert!(matches!(
            check_args(&sgd, &args),
            Err(ArgMismatch::Type { index: 3, .. })
        ));
        args[3] = Arg::I64(1000);
        // A `double` where the kernel takes a `float`, and a missing or extra argument.
        args[4] = Arg::F64(0.1);
        assert!(check_args(&sgd, &args).is_err());
        args[4] = Arg::F32(0.1);
        assert_eq!(
            check_args(&sgd, &args[..7]),
            Err(ArgMismatch::Count { params: 8, args: 7 })
        );
        let mut more = args.to_vec();
        more.push(Arg::I32(0));
        assert!(check_args(&sgd, &more).is_err());
        // Every type accepts exactly its own kinds of argument.
        let kinds = [
            Arg::Ptr(0),
            Arg::I32(0),
            Arg::I64(0),
            Arg::F32(0.0),
            Arg::F64(0.0),
        ];
        let accepted = |p: ParamType| kinds.iter().map(|a| p.accepts(*a)).collect::<Vec<_>>();
        assert_eq!(accepted(U64), [true, false, true, false, false]);
        assert_eq!(accepted(U32), [false, true, false, false, false]);
        assert_eq!(accepted(F32), [false, false, false, true, false]);
        assert_eq!(accepted(F64), [false, false, false, false, true]);
    }

    #[test]
    fn ptx_is_isa_9_0_for_compute_80() {
        for m in MODULES {
            assert!(
                m.ptx.contains("\n.version 9.0\n"),
                "{}.ptx: PTX ISA",
                m.name
            );
            assert!(
                m.ptx.contains("\n.target sm_80\n"),
                "{}.ptx: target",
                m.name
            );
            assert!(m.ptx.contains("\n.address_size 64\n"), "{}.ptx", m.name);
            assert!(!m.ptx.contains('\0'));
        }
    }

    #[test]
    fn every_source_has_a_module_and_every_module_a_source() {
        let mut sources: Vec<String> = std::fs::read_dir(format!("{DIR}/cuda"))
            .expect("kernels/cuda")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8")
            })
            .filter_map(|n| n.strip_suffix(".cu").map(String::from))
            .collect();
        sources.sort();
        let mut names: Vec<String> = MODULES.iter().map(|m| m.name.into()).collect();
        names.sort();
        assert_eq!(sources, names);
        // And every extern "C" kernel of a source is listed.
        for m in MODULES {
            let src = std::fs::read_to_string(format!("{DIR}/cuda/{}.cu", m.name)).expect("source");
            let declared = src.matches("extern \"C\" __global__").count();
            assert_eq!(
                declared,
                m.kernels.len(),
                "kernels declared in {}.cu",
                m.name
            );
        }
    }

    /// The launch constants above are the values the CUDA sources were written for.
    #[test]
    fn launch_constants_match_the_sources() {
        let read = |name: &str| {
            std::fs::read_to_string(format!("{DIR}/cuda/{name}")).expect("kernel source")
        };
        let (common, gemm, tf32) = (read("common.cuh"), read("gemm.cu"), read("gemm_tf32.cu"));
        for (src, define, value) in [
            (&common, "RED_THREADS", RED_THREADS),
            (&common, "CHAN_PART", CHAN_PART),
            (&gemm, "BM", GEMM_TILE_M),
            (&gemm, "BN", GEMM_TILE_N),
            (&gemm, "BK", GEMM_TILE_K),
            (&gemm, "WM", GEMM_WIDE_TILE_M),
            (&gemm, "WN", GEMM_WIDE_TILE_N),
            (&gemm, "WK", GEMM_WIDE_TILE_K),
            (&tf32, "TM", GEMM_TF32_TILE_M),
            (&tf32, "TN", GEMM_TF32_TILE_N),
            (&tf32, "TK", GEMM_TF32_TILE_K),
        ] {
            let line = format!("#define {define} {value}\n");
            assert!(src.contains(&line), "the sources lack `{}`", line.trim());
        }
    }

    /// The PTX is stale when a source changed after scripts/build_ptx.sh recorded its hash.
    #[test]
    fn ptx_is_built_from_the_current_sources() {
        let recorded = std::fs::read_to_string(format!("{DIR}/ptx/SOURCES.sha256"))
            .expect("kernels/ptx/SOURCES.sha256");
        let mut listed = BTreeSet::new();
        for line in recorded.lines() {
            let (hash, path) = line.split_once("  ").expect("sha256sum format");
            let data = std::fs::read(format!("{DIR}/{path}")).expect("recorded source exists");
            let got: String = Sha256::digest(&data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                got, hash,
                "{path} changed since the PTX was built: run scripts/build_ptx.sh and commit kernels/ptx"
            );
            listed.insert(String::from(path));
        }
        for entry in std::fs::read_dir(format!("{DIR}/cuda")).expect("kernels/cuda") {
            let name = entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8");
            assert!(
                listed.contains(&format!("cuda/{name}")),
                "cuda/{name} is not recorded in ptx/SOURCES.sha256: run scripts/build_ptx.sh"
            );
        }
    }
}
