//! One function per layer operation, each a short sequence of kernel launches on raw device
//! pointers. [`GpuNetwork`](super::net::GpuNetwork) composes them; the GPU check runs them one
//! by one against the CPU layers.
//!
//! Shapes follow the CPU trainer: activations are channel-major `[C, N, H, W]`, features
//! `[F, N]`, logits `[N][classes]`, weights in PyTorch layout.

use anyhow::Result;
use kernels::{
    CHAN_PART, GEMM_TF32_TILE_K, GEMM_TF32_TILE_M, GEMM_TF32_TILE_N, GEMM_THREADS, GEMM_TILE_K,
    GEMM_TILE_M, GEMM_TILE_N, GEMM_WIDE_TILE_K, GEMM_WIDE_TILE_M, GEMM_WIDE_TILE_N, RED_THREADS,
};

use super::device::{ensure, Arg, DevBuf, Gpu, Grid};
use crate::layers::batchnorm::{EPS, MOMENTUM};

/// Threads per block of the element-wise kernels.
const THREADS: u32 = 256;

/// Reusable scratch memory of the layer operations (grown on demand).
#[derive(Default)]
pub struct Scratch {
    /// Split-K partial products.
    pub partials: Option<DevBuf<f32>>,
    /// Partial sums of the per-channel reductions (bias, PReLU slope and BatchNorm sums).
    pub partials64: Option<DevBuf<f64>>,
    /// BatchNorm's batch means in f64, between its two statistics passes.
    pub mean64: Option<DevBuf<f64>>,
}

/// Parts of a per-channel sum over rows of `row` values (`CHAN_PART` each).
fn parts_of(row: usize) -> usize {
    row.div_ceil(CHAN_PART as usize).max(1)
}

/// Grid of a per-channel reduction: `(parts, c)`.
fn parts_grid(c: usize, row: usize) -> Grid {
    (parts_of(row) as u32, c as u32, 1)
}

/// Grid of a per-channel element-wise kernel (`ROW_LOOP`): `(x, c)`.
fn row_grid(c: usize, row: usize) -> Grid {
    (
        row.div_ceil(THREADS as usize).clamp(1, 4096) as u32,
        c as u32,
        1,
    )
}

/// The partial-sum scratch, grown to `n` values.
fn partials64(s: &mut Scratch, n: usize) -> Result<u64> {
    ensure(&mut s.partials64, n)?;
    Ok(s.partials64.as_ref().expect("ensured").ptr())
}

fn p(v: u64) -> Arg {
    Arg::Ptr(v)
}

fn i32_(v: usize) -> Arg {
    Arg::I32(i32::try_from(v).expect("dimension fits in i32"))
}

fn i64_(v: usize) -> Arg {
    Arg::I64(v as i64)
}

/// Operand layout of [`gemm`]: `N` as stored, `T` transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `A` is `M x K` (`B` is `K x N`).
    N,
    /// `A` is stored `K x M` (`B` is stored `N x K`).
    T,
}

/// The `sgemm` kernel family that computes a product. The fp32 ones give the same sums up to
/// rounding (each in its own fixed order, so each is deterministic); the TF32 one rounds the
/// operands to a 10-bit mantissa first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmTile {
    /// `sgemm_{nn,nt,tn}`: 64 x 64 tiles, 4 x 4 outputs per thread.
    Square,
    /// `sgemm_wide_{nn,nt,tn}`: 64 x 256 tiles, 8 x 8 outputs per thread, double-buffered.
    Wide,
    /// `sgemm_tf32_{nn,nt,tn}`: 64 x 128 tiles on the tensor cores (WMMA 16x16x8, TF32
    /// operands, fp32 sums), double-buffered.
    Tf32,
}

impl GemmTile {
    /// `(rows, columns, depth)` of one block's tile and shared-memory stage.
    pub fn dims(self) -> (usize, usize, usize) {
        let (m, n, k) = match self {
            Self::Square => (GEMM_TILE_M, GEMM_TILE_N, GEMM_TILE_K),
            Self::Wide => (GEMM_WIDE_TILE_M, GEMM_WIDE_TILE_N, GEMM_WIDE_TILE_K),
            Self::Tf32 => (GEMM_TF32_TILE_M, GEMM_TF32_TILE_N, GEMM_TF32_TILE_K),
        };
        (m as usize, n as usize, k as usize)
    }

    /// The kernels of this family: `nn`, `nt` and `tn`.
    pub(super) fn kernels(self) -> [&'static str; 3] {
        [(Op::N, Op::N), (Op::N, Op::T), (Op::T, Op::N)].map(|(ta, tb)| {
            self.kernel(ta, tb)
                .expect("nn, nt and tn exist in every family")
        })
    }

    fn kernel(self, ta: Op, tb: Op) -> Result<&'static str> {
        Ok(match (self, ta, tb) {
            (_, Op::T, Op::T) => anyhow::bail!("sgemm_tt is not implemented"),
            (Self::Square, Op::N, Op::N) => "sgemm_nn",
            (Self::Square, Op::N, Op::T) => "sgemm_nt",
            (Self::Square, Op::T, Op::N) => "sgemm_tn",
            (Self::Wide, Op::N, Op::N) => "sgemm_wide_nn",
            (Self::Wide, Op::N, Op::T) => "sgemm_wide_nt",
            (Self::Wide, Op::T, Op::N) => "sgemm_wide_tn",
            (Self::Tf32, Op::N, Op::N) => "sgemm_tf32_nn",
            (Self::Tf32, Op::N, Op::T) => "sgemm_tf32_nt",
            (Self::Tf32, Op::T, Op::N) => "sgemm_tf32_tn",
        })
    }
}

/// Which tiles [`gemm`] may use: read once from `LSOFTMAX_GPU_GEMM` when the GPU is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPolicy {
    /// The wide tiles for products with at least 512 columns and 48 rows (the convolutions'
    /// three products), the square ones otherwise (the linear layers, narrow convolutions). The
    /// default.
    Auto,
    /// Only the square tiles (`LSOFTMAX_GPU_GEMM=square`): the kernels before the wide ones
    /// existed, kept as a fall-back.
    Square,
    /// TF32 tensor cores for the convolutions' products where [`Auto`](Self::Auto) uses the
    /// wide tiles (`LSOFTMAX_GPU_GEMM=tf32`, opt-in), with operands rounded to a 10-bit
    /// mantissa, as PyTorch's default for convolutions on Ampere and later; otherwise as
    /// [`Auto`](Self::Auto).
    Tf32,
}

impl GemmPolicy {
    /// The policy `LSOFTMAX_GPU_GEMM` names (`auto`, the default, `square` or `tf32`).
    pub fn from_env() -> Result<Self> {
        match std::env::var("LSOFTMAX_GPU_GEMM").as_deref() {
            Err(_) | Ok("") | Ok("auto") => Ok(Self::Auto),
            Ok("square") => Ok(Self::Square),
            Ok("tf32") => Ok(Self::Tf32),
            Ok(other) => {
                anyhow::bail!("LSOFTMAX_GPU_GEMM must be 'auto', 'square' or 'tf32', not '{other}'")
            }
        }
    }

    /// The precision of the products, as logs and reports name it: `fp32`, `fp32 (square
    /// tiles)` or `TF32 convolutions`.
    pub fn precision(self) -> &'static str {
        match self {
            Self::Auto => "fp32",
            Self::Square => "fp32 (square tiles)",
            Self::Tf32 => "TF32 convolutions",
        }
    }

    /// The tile for an `m x n` product of `kind`: TF32 (under [`Tf32`](Self::Tf32)) only for
    /// convolutions, as PyTorch's defaults (TF32 for cuDNN convolutions, fp32 for matmuls).
    pub fn tile(self, kind: Product, m: usize, n: usize) -> GemmTile {
        let large = n >= 512 && m >= 48;
        match (self, kind) {
            (Self::Tf32, Product::Conv) if large => GemmTile::Tf32,
            (Self::Auto | Self::Tf32, _) if large => GemmTile::Wide,
            _ => GemmTile::Square,
        }
    }
}

/// What a product belongs to (the TF32 policy applies to convolutions only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    /// One of a convolution's three products.
    Conv,
    /// One of a linear layer's three products.
    Linear,
}

/// Number of K splits for an `m x n` product of depth `k` with `tile`: enough blocks to fill
/// the GPU twice when the output alone has too few tiles, each split at least 512 deep.
pub fn splits_for(sms: u32, tile: GemmTile, m: usize, n: usize, k: usize) -> usize {
    let (tm, tn, _) = tile.dims();
    let tiles = m.div_ceil(tm) * n.div_ceil(tn);
    let target = 2 * sms as usize;
    if tiles >= target || k < 1024 {
        return 1;
    }
    target.div_ceil(tiles).min(k / 512).max(1)
}

/// `C = alpha op(A) op(B) + beta C + bias[row]` (fp32), `op(A)` `m x k`, `op(B)` `k x n`,
/// row-major with leading dimensions. Only `(N, N)`, `(N, T)` and `(T, N)` exist. Splits K
/// (deterministically, by shape) when the output has too few tiles to fill the GPU. The tile
/// family follows the GPU's [`GemmPolicy`] for a product of `kind`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    gpu: &Gpu,
    s: &mut Scratch,
    kind: Product,
    ops: (Op, Op),
    shape: (usize, usize, usize),
    alpha: f32,
    a: (u64, usize),
    b: (u64, usize),
    beta: f32,
    c: (u64, usize),
    bias: Option<u64>,
) -> Result<()> {
    let tile = gpu.gemm_policy.tile(kind, shape.0, shape.1);
    gemm_with(gpu, s, tile, ops, shape, alpha, a, b, beta, c, bias)
}

/// [`gemm`] with a given tile family.
#[allow(clippy::too_many_arguments)]
pub fn gemm_with(
    gpu: &Gpu,
    s: &mut Scratch,
    tile: GemmTile,
    (ta, tb): (Op, Op),
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    (a, lda): (u64, usize),
    (b, ldb): (u64, usize),
    beta: f32,
    (c, ldc): (u64, usize),
    bias: Option<u64>,
) -> Result<()> {
    let kernel = tile.kernel(ta, tb)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let splits = splits_for(gpu.info.sms, tile, m, n, k);
    let (tm, tn, tk) = tile.dims();
    let tiles = (n.div_ceil(tn) as u32, m.div_ceil(tm) as u32);
    if splits == 1 {
        let args = [
            i32_(m),
            i32_(n),
            i32_(k),
            Arg::F32(alpha),
            p(a),
            i32_(lda),
            p(b),
            i32_(ldb),
            Arg::F32(beta),
            p(c),
            i32_(ldc),
            p(bias.unwrap_or(0)),
            i32_(k.max(1)),
            Arg::I64(0),
        ];
        return gpu.launch(kernel, (tiles.0, tiles.1, 1), GEMM_THREADS, &args);
    }
    let kchunk = k.div_ceil(splits).div_ceil(tk) * tk;
    let splits = k.div_ceil(kchunk);
    ensure(&mut s.partials, splits * m * n)?;
    let part = s.partials.as_ref().expect("ensured").ptr();
    let args = [
        i32_(m),
        i32_(n),
        i32_(k),
        Arg::F32(1.0),
        p(a),
        i32_(lda),
        p(b),
        i32_(ldb),
        Arg::F32(0.0),
        p(part),
        i32_(n),
        p(0),
        i32_(kchunk),
        i64_(m * n),
    ];
    gpu.launch(
        kernel,
        (tiles.0, tiles.1, splits as u32),
        GEMM_THREADS,
        &args,
    )?;
    gpu.launch(
        "gemm_splitk_reduce",
        gpu.grid_for(m * n, THREADS),
        THREADS,
        &[
            i32_(m),
            i32_(n),
            i32_(splits),
            p(part),
            Arg::F32(alpha),
            Arg::F32(beta),
            p(c),
            i32_(ldc),
            p(bias.unwrap_or(0)),
        ],
    )
}

/// Shape of a convolution: input `[cin, n, h, w]`, `cout` outputs, kernel `k`, padding `pad`.
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    /// Input channels.
    pub cin: usize,
    /// Batch.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel size.
    pub k: usize,
    /// Padding.
    pub pad: usize,
}

impl ConvShape {
    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            self.h + 2 * self.pad + 1 - self.k,
            self.w + 2 * self.pad + 1 - self.k,
        )
    }
    fn rows(&self) -> usize {
        self.cin * self.k * self.k
    }
    fn ncols(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.n * ho * wo
    }
}

/// The im2col, col2im and max-pool kernels index a channel's (or the whole) map in 32 bits.
fn check_index_range(what: &str, values: usize) -> Result<()> {
    if values >= 1 << 31 {
        anyhow::bail!(
            "{what}: {values} values is more than the GPU kernels index (2^31); use a smaller batch"
        );
    }
    Ok(())
}

/// A convolution's unfolded input (im2col), as its last forward pass left it: the backward
/// pass's weight gradient reads it instead of unfolding the input again, then the input
/// gradient's columns overwrite it. One per convolution layer (`rows x N*Ho*Wo` floats).
#[derive(Default)]
pub struct Columns {
    buf: Option<DevBuf<f32>>,
    /// The input (device pointer) and batch the columns hold, while they are valid.
    holds: Option<(u64, usize)>,
}

/// Unfolds `x` into `cols` (unless they already hold it) and returns their device pointer.
fn im2col(gpu: &Gpu, cols: &mut Columns, sh: &ConvShape, x: u64) -> Result<u64> {
    let (ho, wo) = sh.out_hw();
    check_index_range("convolution columns", sh.ncols())?;
    check_index_range("convolution input", sh.cin * sh.n * sh.h * sh.w)?;
    let total = sh.rows() * sh.ncols();
    ensure(&mut cols.buf, total)?;
    let ptr = cols.buf.as_ref().expect("ensured").ptr();
    if cols.holds == Some((x, sh.n)) {
        return Ok(ptr);
    }
    cols.holds = Some((x, sh.n));
    let cols = ptr;
    gpu.launch(
        "im2col",
        row_grid(sh.rows(), sh.ncols()),
        THREADS,
        &[
            p(x),
            i32_(sh.cin),
            i32_(sh.n),
            i32_(sh.h),
            i32_(sh.w),
            i32_(sh.k),
            i32_(sh.pad),
            i32_(ho),
            i32_(wo),
            p(cols),
        ],
    )?;
    Ok(cols)
}

/// `out = conv(x) + bias`; `cols` keeps the unfolded input for [`conv_backward`].
#[allow(clippy::too_many_arguments)]
pub fn conv_forward(
    gpu: &Gpu,
    s: &mut Scratch,
    cols: &mut Columns,
    sh: &ConvShape,
    x: u64,
    weight: u64,
    bias: u64,
    out: u64,
) -> Result<()> {
    // Always unfold: the same buffer may hold an earlier batch at the same address.
    cols.holds = None;
    let cols = im2col(gpu, cols, sh, x)?;
    let (rows, ncols) = (sh.rows(), sh.ncols());
    gemm(
        gpu,
        s,
        Product::Conv,
        (Op::N, Op::N),
        (sh.cout, ncols, rows),
        1.0,
        (weight, rows),
        (cols, ncols),
        0.0,
        (out, ncols),
        Some(bias),
    )
}

/// Sets `dweight`, `dbias` and (when given) `dx` from the forward input `x` and `dy`. The
/// columns `cols` kept by [`conv_forward`] of `x` are used as they are (else `x` is unfolded
/// again); with `dx` they are then overwritten.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward(
    gpu: &Gpu,
    s: &mut Scratch,
    cols_of: &mut Columns,
    sh: &ConvShape,
    x: u64,
    weight: u64,
    dy: u64,
    dweight: u64,
    dbias: u64,
    dx: Option<u64>,
) -> Result<()> {
    let cols = im2col(gpu, cols_of, sh, x)?;
    let (rows, ncols) = (sh.rows(), sh.ncols());
    gemm(
        gpu,
        s,
        Product::Conv,
        (Op::N, Op::T),
        (sh.cout, rows, ncols),
        1.0,
        (dy, ncols),
        (cols, ncols),
        0.0,
        (dweight, rows),
        None,
    )?;
    row_sum(gpu, s, dy, sh.cout, ncols, dbias)?;
    if let Some(dx) = dx {
        // dcols = W^T dy, into the same column buffer (the stream orders it after dW).
        cols_of.holds = None;
        gemm(
            gpu,
            s,
            Product::Conv,
            (Op::T, Op::N),
            (rows, ncols, sh.cout),
            1.0,
            (weight, rows),
            (dy, ncols),
            0.0,
            (cols, ncols),
            None,
        )?;
        let (ho, wo) = sh.out_hw();
        gpu.launch(
            "col2im",
            row_grid(sh.cin, sh.n * sh.h * sh.w),
            THREADS,
            &[
                p(cols),
                i32_(sh.cin),
                i32_(sh.n),
                i32_(sh.h),
                i32_(sh.w),
                i32_(sh.k),
                i32_(sh.pad),
                i32_(ho),
                i32_(wo),
                p(dx),
            ],
        )?;
    }
    Ok(())
}

/// `out[r] = sum of x[r, 0..len)` (f64 inside) for `rows` rows.
pub fn row_sum(
    gpu: &Gpu,
    s: &mut Scratch,
    x: u64,
    rows: usize,
    len: usize,
    out: u64,
) -> Result<()> {
    let parts = parts_of(len);
    let part = partials64(s, rows * parts)?;
    gpu.launch(
        "row_sum_partial",
        parts_grid(rows, len),
        RED_THREADS,
        &[p(x), i64_(len), p(part)],
    )?;
    gpu.launch(
        "row_sum_finish",
        gpu.grid_for(rows, THREADS),
        THREADS,
        &[p(part), i32_(rows), i32_(parts), p(out)],
    )
}

/// PReLU forward on `c` channel rows of `row` values with `count` slopes (1 or `c`).
pub fn prelu_forward(
    gpu: &Gpu,
    x: u64,
    c: usize,
    row: usize,
    slopes: u64,
    count: usize,
    y: u64,
) -> Result<()> {
    gpu.launch(
        "prelu_forward",
        row_grid(c, row),
        THREADS,
        &[p(x), i64_(row), p(slopes), i32_(count), p(y)],
    )
}

/// PReLU backward: `dslopes` and (when given) `dx`, in one pass over `x` and `dy`.
#[allow(clippy::too_many_arguments)]
pub fn prelu_backward(
    gpu: &Gpu,
    s: &mut Scratch,
    x: u64,
    dy: u64,
    c: usize,
    row: usize,
    slopes: u64,
    count: usize,
    dslopes: u64,
    dx: Option<u64>,
) -> Result<()> {
    let parts = parts_of(row);
    let part = partials64(s, c * parts)?;
    gpu.launch(
        "prelu_backward_partial",
        parts_grid(c, row),
        RED_THREADS,
        &[
            p(x),
            p(dy),
            i64_(row),
            p(slopes),
            i32_(count),
            p(part),
            p(dx.unwrap_or(0)),
        ],
    )?;
    gpu.launch(
        "prelu_backward_finish",
        (1, 1, 1),
        1,
        &[p(part), i32_(c), i32_(parts), i32_(count), p(dslopes)],
    )
}

/// Device pointers of one BatchNorm layer's tensors (`c` values each).
#[derive(Clone, Copy, Debug)]
pub struct BnTensors {
    /// Scale.
    pub gamma: u64,
    /// Shift.
    pub beta: u64,
    /// Running mean (updated in training).
    pub running_mean: u64,
    /// Running variance (updated in training).
    pub running_var: u64,
    /// The mean used by the last forward pass.
    pub mean: u64,
    /// The 1/sqrt(var + eps) used by the last forward pass.
    pub inv_std: u64,
}

/// BatchNorm forward on `c` channel rows of `row` values: batch statistics (and running
/// updates) in training, running statistics otherwise.
#[allow(clippy::too_many_arguments)]
pub fn bn_forward(
    gpu: &Gpu,
    s: &mut Scratch,
    x: u64,
    c: usize,
    row: usize,
    t: &BnTensors,
    train: bool,
    y: u64,
) -> Result<()> {
    if train {
        // Two passes in parts: the mean, then the squared deviations from it.
        let parts = parts_of(row);
        let part = partials64(s, c * parts)?;
        ensure(&mut s.mean64, c)?;
        let mean64 = s.mean64.as_ref().expect("ensured").ptr();
        let grid = parts_grid(c, row);
        gpu.launch(
            "bn_sum_partial",
            grid,
            RED_THREADS,
            &[p(x), i64_(row), p(0), p(part)],
        )?;
        gpu.launch(
            "bn_mean_finish",
            gpu.grid_for(c, THREADS),
            THREADS,
            &[p(part), i32_(c), i32_(parts), i64_(row), p(mean64)],
        )?;
        gpu.launch(
            "bn_sum_partial",
            grid,
            RED_THREADS,
            &[p(x), i64_(row), p(mean64), p(part)],
        )?;
        gpu.launch(
            "bn_stats_finish",
            gpu.grid_for(c, THREADS),
            THREADS,
            &[
                p(part),
                i32_(c),
                i32_(parts),
                i64_(row),
                p(mean64),
                Arg::F32(MOMENTUM),
                Arg::F32(EPS),
                p(t.mean),
                p(t.inv_std),
                p(t.running_mean),
                p(t.running_var),
            ],
        )?;
    } else {
        gpu.launch(
            "bn_stats_eval",
            gpu.grid_for(c, THREADS),
            THREADS,
            &[
                p(t.running_mean),
                p(t.running_var),
                i32_(c),
                Arg::F32(EPS),
                p(t.mean),
                p(t.inv_std),
            ],
        )?;
    }
    gpu.launch(
        "bn_apply",
        row_grid(c, row),
        THREADS,
        &[
            p(x),
            i64_(row),
            p(t.mean),
            p(t.inv_std),
            p(t.gamma),
            p(t.beta),
            p(y),
        ],
    )
}

/// BatchNorm backward (training mode): `dgamma`, `dbeta` and (when given) `dx`.
#[allow(clippy::too_many_arguments)]
pub fn bn_backward(
    gpu: &Gpu,
    s: &mut Scratch,
    x: u64,
    dy: u64,
    c: usize,
    row: usize,
    t: &BnTensors,
    dgamma: u64,
    dbeta: u64,
    dx: Option<u64>,
) -> Result<()> {
    let parts = parts_of(row);
    let part = partials64(s, 2 * c * parts)?;
    gpu.launch(
        "bn_backward_partial",
        parts_grid(c, row),
        RED_THREADS,
        &[p(x), p(dy), i64_(row), p(t.mean), p(t.inv_std), p(part)],
    )?;
    gpu.launch(
        "bn_backward_finish",
        gpu.grid_for(c, THREADS),
        THREADS,
        &[p(part), i32_(c), i32_(parts), p(dgamma), p(dbeta)],
    )?;
    if let Some(dx) = dx {
        gpu.launch(
            "bn_backward_dx",
            row_grid(c, row),
            THREADS,
            &[
                p(x),
                p(dy),
                i64_(row),
                p(t.mean),
                p(t.inv_std),
                p(t.gamma),
                p(dgamma),
                p(dbeta),
                p(dx),
            ],
        )?;
    }
    Ok(())
}

/// 2x2 max pooling of `planes` planes of `h x w`; `arg` records the winners.
pub fn maxpool_forward(
    gpu: &Gpu,
    x: u64,
    planes: usize,
    h: usize,
    w: usize,
    y: u64,
    arg: u64,
) -> Result<()> {
    check_index_range("max-pool input", planes * h * w)?;
    gpu.launch(
        "maxpool_forward",
        gpu.grid_for(planes * (h / 2) * (w / 2), THREADS),
        THREADS,
        &[p(x), i64_(planes), i32_(h), i32_(w), p(y), p(arg)],
    )
}

/// Routes `dy` to the winners recorded by [`maxpool_forward`].
pub fn maxpool_backward(
    gpu: &Gpu,
    dy: u64,
    arg: u64,
    planes: usize,
    h: usize,
    w: usize,
    dx: u64,
) -> Result<()> {
    check_index_range("max-pool input", planes * h * w)?;
    gpu.launch(
        "maxpool_backward",
        gpu.grid_for(planes * h * w, THREADS),
        THREADS,
        &[p(dy), p(arg), i64_(planes), i32_(h), i32_(w), p(dx)],
    )
}

/// `[c, n, plane]` to `[c * plane, n]` (`forward`) or back.
pub fn flatten(
    gpu: &Gpu,
    forward: bool,
    src: u64,
    c: usize,
    n: usize,
    plane: usize,
    dst: u64,
) -> Result<()> {
    let kernel = if forward {
        "flatten_forward"
    } else {
        "flatten_backward"
    };
    gpu.launch(
        kernel,
        gpu.grid_for(c * n * plane, THREADS),
        THREADS,
        &[p(src), i32_(c), i32_(n), i32_(plane), p(dst)],
    )
}

/// `out[outp, n] = W x + b` for `x` `[inp, n]`.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward(
    gpu: &Gpu,
    s: &mut Scratch,
    x: u64,
    inp: usize,
    outp: usize,
    n: usize,
    weight: u64,
    bias: u64,
    out: u64,
) -> Result<()> {
    gemm(
        gpu,
        s,
        Product::Linear,
        (Op::N, Op::N),
        (outp, n, inp),
        1.0,
        (weight, inp),
        (x, n),
        0.0,
        (out, n),
        Some(bias),
    )
}

/// Linear backward: `dweight`, `dbias` and (when given) `dx`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    gpu: &Gpu,
    s: &mut Scratch,
    x: u64,
    inp: usize,
    outp: usize,
    n: usize,
    weight: u64,
    dy: u64,
    dweight: u64,
    dbias: u64,
    dx: Option<u64>,
) -> Result<()> {
    gemm(
        gpu,
        s,
        Product::Linear,
        (Op::N, Op::T),
        (outp, inp, n),
        1.0,
        (dy, n),
        (x, n),
        0.0,
        (dweight, inp),
        None,
    )?;
    row_sum(gpu, s, dy, outp, n, dbias)?;
    if let Some(dx) = dx {
        gemm(
            gpu,
            s,
            Product::Linear,
            (Op::T, Op::N),
            (inp, n, outp),
            1.0,
            (weight, inp),
            (dy, n),
            0.0,
            (dx, n),
            None,
        )?;
    }
    Ok(())
}

/// Device buffers of the L-Softmax head and the loss for a batch of up to `cap` samples.
pub struct HeadBuffers {
    /// Logits `[N][classes]`.
    pub logits: DevBuf<f32>,
    /// Loss gradient with respect to the logits.
    pub dlogits: DevBuf<f32>,
    /// Backward coefficients `[N][4]`.
    pub cache: DevBuf<f64>,
    /// Coefficients of x per class `[N][classes]`.
    pub gx: DevBuf<f64>,
    /// Coefficients of W_j per class `[N][classes]`.
    pub gw: DevBuf<f64>,
    /// Coefficient of x_i in dx_i.
    pub self_x: DevBuf<f64>,
    /// Coefficient of W_y in dW_y per sample.
    pub self_w: DevBuf<f64>,
    /// Per-sample loss.
    pub sample_loss: DevBuf<f64>,
    /// Per-sample correctness (0/1).
    pub sample_correct: DevBuf<i32>,
}

impl HeadBuffers {
    /// Buffers for `cap` samples and `classes` classes.
    pub fn new(cap: usize, classes: usize) -> Result<Self> {
        Ok(Self {
            logits: DevBuf::zeros(cap * classes)?,
            dlogits: DevBuf::zeros(cap * classes)?,
            cache: DevBuf::zeros(cap * 4)?,
            gx: DevBuf::zeros(cap * classes)?,
            gw: DevBuf::zeros(cap * classes)?,
            self_x: DevBuf::zeros(cap)?,
            self_w: DevBuf::zeros(cap)?,
            sample_loss: DevBuf::zeros(cap)?,
            sample_correct: DevBuf::zeros(cap)?,
        })
    }
}

/// Shape and margin of the head.
#[derive(Clone, Copy, Debug)]
pub struct HeadShape {
    /// Input features.
    pub features: usize,
    /// Classes.
    pub classes: usize,
    /// Margin m.
    pub margin: u32,
}

/// Head forward on features `x` `[F, n]`: plain logits, or (`train`) with the margin and
/// `lambda`, caching what the backward pass needs.
#[allow(clippy::too_many_arguments)]
pub fn head_forward(
    gpu: &Gpu,
    hb: &HeadBuffers,
    hs: &HeadShape,
    x: u64,
    weight: u64,
    targets: u64,
    n: usize,
    lambda: f64,
    train: bool,
) -> Result<()> {
    gpu.launch(
        "lsoftmax_forward",
        (n as u32, 1, 1),
        RED_THREADS,
        &[
            p(x),
            p(weight),
            p(targets),
            i32_(n),
            i32_(hs.features),
            i32_(hs.classes),
            Arg::I32(hs.margin as i32),
            Arg::F64(lambda),
            Arg::I32(train as i32),
            hb.logits.arg(),
            hb.cache.arg(),
        ],
    )
}

/// Softmax cross-entropy of the logits in `hb`: `dlogits`, and the batch's mean loss and
/// correct count written to the device addresses `loss_at` (f64) and `correct_at` (i32).
pub fn cross_entropy(
    gpu: &Gpu,
    hb: &HeadBuffers,
    classes: usize,
    targets: u64,
    n: usize,
    loss_at: Arg,
    correct_at: Arg,
) -> Result<()> {
    gpu.launch(
        "softmax_ce",
        gpu.grid_for(n, THREADS),
        THREADS,
        &[
            hb.logits.arg(),
            p(targets),
            i32_(n),
            i32_(classes),
            hb.dlogits.arg(),
            hb.sample_loss.arg(),
            hb.sample_correct.arg(),
        ],
    )?;
    gpu.launch(
        "ce_reduce",
        (1, 1, 1),
        RED_THREADS,
        &[
            hb.sample_loss.arg(),
            hb.sample_correct.arg(),
            i32_(n),
            loss_at,
            correct_at,
        ],
    )
}

/// Head backward from `hb.dlogits`: `dweight` `[F][classes]` and `dx` `[F, n]`.
#[allow(clippy::too_many_arguments)]
pub fn head_backward(
    gpu: &Gpu,
    hb: &HeadBuffers,
    hs: &HeadShape,
    x: u64,
    weight: u64,
    targets: u64,
    n: usize,
    lambda: f64,
    dweight: u64,
    dx: u64,
) -> Result<()> {
    let (f, c) = (hs.features, hs.classes);
    gpu.launch(
        "lsoftmax_backward_coef",
        gpu.grid_for(n, THREADS),
        THREADS,
        &[
            hb.dlogits.arg(),
            p(targets),
            hb.cache.arg(),
            i32_(n),
            i32_(c),
            Arg::F64(lambda),
            hb.gx.arg(),
            hb.gw.arg(),
            hb.self_x.arg(),
            hb.self_w.arg(),
        ],
    )?;
    gpu.launch(
        "lsoftmax_backward_dw",
        gpu.grid_for(f * c, THREADS),
        THREADS,
        &[
            p(x),
            p(weight),
            p(targets),
            hb.gx.arg(),
            hb.self_w.arg(),
            i32_(n),
            i32_(f),
            i32_(c),
            p(dweight),
        ],
    )?;
    gpu.launch(
        "lsoftmax_backward_dx",
        gpu.grid_for(f * n, THREADS),
        THREADS,
        &[
            p(x),
            p(weight),
            hb.gw.arg(),
            hb.self_x.arg(),
            i32_(n),
            i32_(f),
            i32_(c),
            p(dx),
        ],
    )
}

/// One SGD step over `len` values (torch semantics; `first` starts the momentum buffer).
#[allow(clippy::too_many_arguments)]
pub fn sgd_step(
    gpu: &Gpu,
    params: u64,
    grads: u64,
    momentum_buf: u64,
    len: usize,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    first: bool,
) -> Result<()> {
    gpu.launch(
        "sgd_step",
        gpu.grid_for(len, THREADS),
        THREADS,
        &[
            p(params),
            p(grads),
            p(momentum_buf),
            i64_(len),
            Arg::F32(lr),
            Arg::F32(momentum),
            Arg::F32(weight_decay),
            Arg::I32(first as i32),
        ],
    )
}

/// Gathers images `order[start..start + nb]` of a device data set (`pixels` bytes each) into
/// normalised `[1, nb, h, w]` input and their labels.
#[allow(clippy::too_many_arguments)]
pub fn gather_batch(
    gpu: &Gpu,
    images: u64,
    labels: u64,
    order: u64,
    start: usize,
    nb: usize,
    pixels: usize,
    out: u64,
    out_labels: u64,
) -> Result<()> {
    gpu.launch(
        "gather_batch",
        gpu.grid_for(nb * pixels, THREADS),
        THREADS,
        &[
            p(images),
            p(labels),
            p(order),
            i64_(start),
            i32_(nb),
            i32_(pixels),
            Arg::F32(mnist::MEAN),
            Arg::F32(mnist::STD),
            p(out),
            p(out_labels),
        ],
    )
}
