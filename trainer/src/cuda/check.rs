//! `lsoftmax gpu-check`: every GPU layer operation against the CPU layers on random inputs,
//! a few training steps from identical weights on both devices, and the GPU training speed.
//! Prints a PASS/FAIL table; the command fails when any row fails.
//!
//! Errors are normalised: `max |gpu - cpu| / max |cpu|` over a tensor (so values near zero,
//! where f32 sums in a different order legitimately differ, do not dominate).

use std::time::Instant;

use anyhow::{bail, Result};

use super::device::{DevBuf, Gpu};
use super::ops::{
    self, BnTensors, ConvShape, GemmPolicy, GemmTile, HeadBuffers, HeadShape, Op, Scratch,
};
use crate::arch::ArchSpec;
use crate::layers::{BatchNorm, Conv2d, Flatten, Linear, MaxPool2, PRelu, Param};
use crate::lsoftmax::{softmax_cross_entropy, LSoftmax};
use crate::network::images_to_tensor;
use crate::optim::Sgd;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::train::{TrainConfig, Trainer};

/// Tolerance of the kernel comparisons (fp32).
pub const KERNEL_TOL: f64 = 1e-4;
/// Normalised error allowed for products with TF32 operands (`LSOFTMAX_GPU_GEMM=tf32`).
pub const TF32_TOL: f64 = 5e-3;
/// Tolerance of the multi-step training comparison (differences grow through the steps).
pub const STEP_TOL: f64 = 1e-3;

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was compared.
    pub name: String,
    /// Normalised error.
    pub err: f64,
    /// Tolerance.
    pub tol: f64,
}

impl Row {
    /// Whether the error is within tolerance (NaN fails).
    pub fn ok(&self) -> bool {
        self.err <= self.tol
    }
}

/// `max |a - b| / max |b|` (0 for equal tensors; infinite on a length mismatch).
pub fn norm_err(got: &[f32], want: &[f32]) -> f64 {
    norm_err_floor(got, want, 0.0)
}

/// Largest magnitude in `v`.
fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()))
}

/// `max |a - b| / max(max |b|, floor)`: with a floor taken from the whole network, tensors
/// whose exact value is zero (the bias gradient of a layer followed by BatchNorm sums to zero,
/// leaving only rounding noise) are judged against the network's scale, not their own noise.
pub fn norm_err_floor(got: &[f32], want: &[f32], floor: f64) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let diff = got.iter().zip(want).fold(0f64, |m, (&a, &b)| {
        let d = (a as f64 - b as f64).abs();
        if d.is_nan() {
            f64::INFINITY
        } else {
            m.max(d)
        }
    });
    if diff == 0.0 {
        0.0
    } else {
        diff / max_abs(want).max(floor).max(f64::MIN_POSITIVE)
    }
}

/// Worst [`norm_err_floor`] over pairs of tensors (CPU first), with the floor `1e-3` times the
/// largest CPU magnitude of them all; returns the worst tensor's name and error.
fn worst_of(pairs: &[(String, &[f32], &[f32])]) -> (String, f64) {
    let floor = 1e-3 * pairs.iter().fold(0f64, |m, p| m.max(max_abs(p.1)));
    let mut worst = (String::from("-"), 0f64);
    for (name, cpu, gpu) in pairs {
        let e = norm_err_floor(gpu, cpu, floor);
        if e > worst.1 || e.is_nan() {
            worst = (name.clone(), e);
        }
        if std::env::var_os("LSOFTMAX_CHECK_VERBOSE").is_some() {
            println!("    {name}: {} values, error {e:.3e}", cpu.len());
        }
    }
    worst
}

struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn add(&mut self, name: impl Into<String>, got: &[f32], want: &[f32], tol: f64) {
        let row = Row {
            name: name.into(),
            err: norm_err(got, want),
            tol,
        };
        println!(
            "{:<58} {:>10.3e} {:>8.0e}  {}",
            row.name,
            row.err,
            row.tol,
            if row.ok() { "PASS" } else { "FAIL" }
        );
        self.rows.push(row);
    }
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.uniform(-1.0, 1.0)).collect()
}

fn up(gpu: &Gpu, v: &[f32]) -> Result<DevBuf<f32>> {
    DevBuf::from_slice(gpu, v)
}

fn zeros(n: usize) -> Result<DevBuf<f32>> {
    DevBuf::zeros(n)
}

fn down(gpu: &Gpu, b: &DevBuf<f32>) -> Result<Vec<f32>> {
    b.to_vec(gpu)
}

/// The tile families `policy` may use (each is checked and timed).
fn tiles_of(policy: GemmPolicy) -> &'static [GemmTile] {
    match policy {
        GemmPolicy::Auto => &[GemmTile::Square, GemmTile::Wide],
        GemmPolicy::Square => &[GemmTile::Square],
        GemmPolicy::Tf32 => &[GemmTile::Square, GemmTile::Tf32],
    }
}

/// Tolerance of a product computed with `tile` against the f64 reference: TF32 operands carry
/// a relative error of up to 2^-11 each.
fn gemm_tol(tile: GemmTile) -> f64 {
    match tile {
        GemmTile::Tf32 => TF32_TOL,
        GemmTile::Square | GemmTile::Wide => KERNEL_TOL,
    }
}

/// Tolerance of the training-step comparisons under `policy`: TF32 products carry their
/// operands' rounding into the gradients.
fn step_tol(policy: GemmPolicy) -> f64 {
    match policy {
        GemmPolicy::Tf32 => TF32_TOL,
        GemmPolicy::Auto | GemmPolicy::Square => STEP_TOL,
    }
}

/// Tolerance of the convolutions' outputs under `policy` (TF32 products under
/// [`GemmPolicy::Tf32`]).
fn conv_tol(policy: GemmPolicy) -> f64 {
    match policy {
        GemmPolicy::Tf32 => TF32_TOL,
        GemmPolicy::Auto | GemmPolicy::Square => KERNEL_TOL,
    }
}

fn check_gemm(gpu: &Gpu, rep: &mut Report) -> Result<()> {
    let mut s = Scratch::default();
    for &(ta, tb, m, n, k, alpha, beta, bias) in &[
        (Op::N, Op::N, 70, 130, 37, 1.0f32, 0.0f32, true),
        (Op::N, Op::T, 33, 65, 129, 0.5, 1.0, false),
        (Op::T, Op::N, 64, 64, 16, 1.0, 0.0, true),
        (Op::N, Op::T, 64, 576, 20_000, 1.0, 0.0, false), // split-K
        (Op::T, Op::N, 9, 3000, 64, 1.0, 0.0, false),
        (Op::N, Op::N, 10, 12, 5000, 2.0, 0.5, true), // split-K with beta and bias
        // Ragged edges of the wide tile in every direction (rows, columns, depth).
        (Op::N, Op::N, 70, 1300, 37, 1.0, 0.0, true),
        (Op::T, Op::N, 131, 1031, 13, 0.5, 1.0, true),
        (Op::N, Op::T, 64, 1100, 3001, 1.0, 0.0, false), // split-K
    ] {
        let a = random(m * k, 1);
        let b = random(k * n, 2);
        let c0 = random(m * n, 3);
        let bv = random(m, 4);
        // Leading dimensions as stored.
        let lda = if ta == Op::N { k } else { m };
        let ldb = if tb == Op::N { n } else { k };
        let mut want = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f64;
                for kk in 0..k {
                    let av = if ta == Op::N {
                        a[i * lda + kk]
                    } else {
                        a[kk * lda + i]
                    };
                    let bw = if tb == Op::N {
                        b[kk * ldb + j]
                    } else {
                        b[j * ldb + kk]
                    };
                    acc += av as f64 * bw as f64;
                }
                let mut v = alpha as f64 * acc + beta as f64 * c0[i * n + j] as f64;
                if bias {
                    v += bv[i] as f64;
                }
                want[i * n + j] = v as f32;
            }
        }
        let (da, db, dbias) = (up(gpu, &a)?, up(gpu, &b)?, up(gpu, &bv)?);
        for &tile in tiles_of(gpu.gemm_policy) {
            let dc = up(gpu, &c0)?;
            ops::gemm_with(
                gpu,
                &mut s,
                tile,
                (ta, tb),
                (m, n, k),
                alpha,
                (da.ptr(), lda),
                (db.ptr(), ldb),
                beta,
                (dc.ptr(), n),
                bias.then(|| dbias.ptr()),
            )?;
            let splits = ops::splits_for(gpu.info.sms, tile, m, n, k);
            rep.add(
                format!("gemm {tile:?} {ta:?}{tb:?} {m}x{n}x{k} (splits {splits})"),
                &down(gpu, &dc)?,
                &want,
                gemm_tol(tile),
            );
        }
    }
    Ok(())
}

/// Times the tile families the GPU's policy allows (square and wide under
/// [`GemmPolicy::Auto`], square and TF32 under [`GemmPolicy::Tf32`]) on the three products of
/// each of `paper`'s 64 -> 64 convolution sizes at `batch` (forward `W x cols`, input gradient
/// `W^T x dy`, weight gradient `dy x cols^T`) and prints milliseconds and TFLOP/s per family,
/// and the square/other time ratio. The operands are zeros: the time of the arithmetic does
/// not depend on the values.
pub fn bench_gemm(gpu: &Gpu, batch: usize) -> Result<()> {
    let mut s = Scratch::default();
    let tiles = tiles_of(gpu.gemm_policy);
    let mut header = format!("{:<34}", format!("sgemm (paper, batch {batch})"));
    for t in tiles {
        header += &format!(" {:>10} {:>7}", format!("{t:?} ms"), "TF/s");
    }
    println!("{header} {:>7}", "ratio");
    for side in [26usize, 13, 6] {
        let (c, kk, n) = (64usize, 64 * 9, batch * side * side);
        for (name, ops_, (m, nn, k)) in [
            ("forward W x cols", (Op::N, Op::N), (c, n, kk)),
            ("input grad W^T x dy", (Op::T, Op::N), (kk, n, c)),
            ("weight grad dy x cols^T", (Op::N, Op::T), (c, kk, n)),
        ] {
            let lda = if ops_.0 == Op::N { k } else { m };
            let ldb = if ops_.1 == Op::N { nn } else { k };
            let (a, b, out) = (zeros(m * k)?, zeros(k * nn)?, zeros(m * nn)?);
            let mut line = format!("{:<34}", format!("{side}x{side} {name}"));
            let mut ms = Vec::new();
            for &tile in tiles {
                let launch = |s: &mut Scratch| {
                    ops::gemm_with(
                        gpu,
                        s,
                        tile,
                        ops_,
                        (m, nn, k),
                        1.0,
                        (a.ptr(), lda),
                        (b.ptr(), ldb),
                        0.0,
                        (out.ptr(), nn),
                        None,
                    )
                };
                launch(&mut s)?;
                gpu.sync()?;
                let reps = 5;
                let start = Instant::now();
                for _ in 0..reps {
                    launch(&mut s)?;
                }
                gpu.sync()?;
                let t = 1e3 * start.elapsed().as_secs_f64() / reps as f64;
                let tflops = 2.0 * (m * nn * k) as f64 / (t * 1e-3) / 1e12;
                line += &format!(" {t:>10.3} {tflops:>7.2}");
                ms.push(t);
            }
            let ratio = ms[0] / ms[ms.len() - 1];
            println!("{line} {ratio:>7.2}");
        }
    }
    Ok(())
}

fn tensor(c: usize, n: usize, h: usize, w: usize, seed: u64) -> Tensor {
    Tensor {
        c,
        n,
        h,
        w,
        data: random(c * n * h * w, seed),
    }
}

fn check_conv(gpu: &Gpu, rep: &mut Report) -> Result<()> {
    let mut s = Scratch::default();
    for &(cin, cout, k, pad, n, h) in &[
        (3, 5, 3, 1, 4, 9),
        (1, 8, 5, 2, 3, 12),
        (2, 4, 3, 0, 5, 7),
        (64, 64, 3, 1, 32, 13),
        (1, 64, 3, 0, 16, 28),
        (2, 3, 3, 1, 40, 28), // bias gradient rows of 2 parts (CHAN_PART)
    ] {
        let mut conv = Conv2d::new(cin, cout, k, pad, &mut Rng::new(7));
        let x = tensor(cin, n, h, h, 8);
        let y = conv.forward(&x).clone();
        let dy = tensor(cout, n, y.h, y.w, 9);
        conv.backward(&x, &dy, true);
        let sh = ConvShape {
            cin,
            n,
            h,
            w: h,
            cout,
            k,
            pad,
        };
        let (mut dx_, dw, db, dgw, dgb) = (
            up(gpu, &x.data)?,
            up(gpu, &conv.weight)?,
            up(gpu, &conv.bias)?,
            zeros(conv.weight.len())?,
            zeros(cout)?,
        );
        let out = zeros(y.data.len())?;
        let mut cols = ops::Columns::default();
        ops::conv_forward(
            gpu,
            &mut s,
            &mut cols,
            &sh,
            dx_.ptr(),
            dw.ptr(),
            db.ptr(),
            out.ptr(),
        )?;
        let ddy = up(gpu, &dy.data)?;
        let gdx = zeros(x.data.len())?;
        // The backward pass must use the columns the forward pass kept: with the input
        // overwritten (same address) it still gives the CPU's gradients. Then, with the input
        // restored and the columns unfolded again, the very same ones.
        dx_.upload(gpu, 0, &vec![0f32; x.data.len()])?;
        ops::conv_backward(
            gpu,
            &mut s,
            &mut cols,
            &sh,
            dx_.ptr(),
            dw.ptr(),
            ddy.ptr(),
            dgw.ptr(),
            dgb.ptr(),
            Some(gdx.ptr()),
        )?;
        dx_.upload(gpu, 0, &x.data)?;
        let (dgw2, dgb2, gdx2) = (
            zeros(conv.weight.len())?,
            zeros(cout)?,
            zeros(x.data.len())?,
        );
        ops::conv_backward(
            gpu,
            &mut s,
            &mut ops::Columns::default(),
            &sh,
            dx_.ptr(),
            dw.ptr(),
            ddy.ptr(),
            dgw2.ptr(),
            dgb2.ptr(),
            Some(gdx2.ptr()),
        )?;
        let tag = format!("conv {cin}->{cout} k{k} p{pad} n{n} {h}x{h}");
        rep.add(
            format!("{tag} dW and dx, kept columns = unfolded again"),
            &[down(gpu, &dgw2)?, down(gpu, &gdx2)?].concat(),
            &[down(gpu, &dgw)?, down(gpu, &gdx)?].concat(),
            0.0,
        );
        rep.add(
            format!("{tag} forward"),
            &down(gpu, &out)?,
            &y.data,
            conv_tol(gpu.gemm_policy),
        );
        rep.add(
            format!("{tag} dW"),
            &down(gpu, &dgw)?,
            &conv.dweight,
            conv_tol(gpu.gemm_policy),
        );
        rep.add(
            format!("{tag} db"),
            &down(gpu, &dgb)?,
            &conv.dbias,
            KERNEL_TOL,
        );
        rep.add(
            format!("{tag} dx"),
            &down(gpu, &gdx)?,
            &conv.dx.data,
            conv_tol(gpu.gemm_policy),
        );
    }
    Ok(())
}

fn check_prelu(gpu: &Gpu, rep: &mut Report) -> Result<()> {
    let mut s = Scratch::default();
    // The last two have rows of 2 parts (CHAN_PART) per channel.
    for (count, c, n, h) in [(1, 6, 5, 7), (6, 6, 5, 7), (1, 3, 48, 26), (3, 3, 48, 26)] {
        let mut l = PRelu::new(count);
        l.slopes = (0..count).map(|i| 0.1 + 0.05 * i as f32).collect();
        let x = tensor(c, n, h, h, 11);
        let y = l.forward(&x).clone();
        let dy = tensor(c, n, h, h, 12);
        l.backward(&x, &dy, true);
        let row = x.row();
        let (gx, gs, gdy) = (up(gpu, &x.data)?, up(gpu, &l.slopes)?, up(gpu, &dy.data)?);
        let (gy, gds, gdx) = (zeros(x.data.len())?, zeros(count)?, zeros(x.data.len())?);
        ops::prelu_forward(gpu, gx.ptr(), c, row, gs.ptr(), count, gy.ptr())?;
        ops::prelu_backward(
            gpu,
            &mut s,
            gx.ptr(),
            gdy.ptr(),
            c,
            row,
            gs.ptr(),
            count,
            gds.ptr(),
            Some(gdx.ptr()),
        )?;
        rep.add(
            format!("prelu c{c} n{n} {h}x{h} ({count} slopes) forward"),
            &down(gpu, &gy)?,
            &y.data,
            KERNEL_TOL,
        );
        rep.add(
            format!("prelu c{c} n{n} {h}x{h} ({count} slopes) dslopes"),
            &down(gpu, &gds)?,
            &l.dslopes,
            KERNEL_TOL,
        );
        rep.add(
            format!("prelu c{c} n{n} {h}x{h} ({count} slopes) dx"),
            &down(gpu, &gdx)?,
            &l.dx.data,
            KERNEL_TOL,
        );
    }
    Ok(())
}

fn check_batchnorm(gpu: &Gpu, rep: &mut Report) -> Result<()> {
    let mut s = Scratch::default();
    // (3, 50, 26): rows of 3 parts (CHAN_PART) per channel.
    for &(c, n, h) in &[(3, 4, 5), (64, 32, 13), (256, 64, 1), (3, 50, 26)] {
        let mut bn = BatchNorm::new(c);
        bn.gamma = random(c, 20).iter().map(|v| 1.0 + 0.5 * v).collect();
        bn.beta = random(c, 21);
        bn.running_mean = random(c, 22).iter().map(|v| 0.1 * v).collect();
        bn.running_var = random(c, 23).iter().map(|v| 1.0 + 0.5 * v).collect();
        let x = Tensor {
            data: random(c * n * h * h, 24)
                .iter()
                .map(|v| 2.0 * v + 0.3)
                .collect(),
            ..Tensor::zeros(c, n, h, h)
        };
        let (rm0, rv0) = (bn.running_mean.clone(), bn.running_var.clone());
        let (g, b) = (up(gpu, &bn.gamma)?, up(gpu, &bn.beta)?);
        let (rm, rv) = (up(gpu, &rm0)?, up(gpu, &rv0)?);
        let (mean, inv) = (zeros(c)?, zeros(c)?);
        let t = BnTensors {
            gamma: g.ptr(),
            beta: b.ptr(),
            running_mean: rm.ptr(),
            running_var: rv.ptr(),
            mean: mean.ptr(),
            inv_std: inv.ptr(),
        };
        let row = x.row();
        // Evaluation mode first (running statistics unchanged).
        let ye = bn.forward(&x, false).clone();
        let gx = up(gpu, &x.data)?;
        let gy = zeros(x.data.len())?;
        ops::bn_forward(gpu, &mut s, gx.ptr(), c, row, &t, false, gy.ptr())?;
        let tag = format!("batchnorm c{c} n{n} {h}x{h}");
        rep.add(
            format!("{tag} eval forward"),
            &down(gpu, &gy)?,
            &ye.data,
            KERNEL_TOL,
        );
        let y = bn.forward(&x, true).clone();
        ops::bn_forward(gpu, &mut s, gx.ptr(), c, row, &t, true, gy.ptr())?;
        rep.add(
            format!("{tag} train forward"),
            &down(gpu, &gy)?,
            &y.data,
            KERNEL_TOL,
        );
        rep.add(
            format!("{tag} running mean"),
            &down(gpu, &rm)?,
            &bn.running_mean,
            KERNEL_TOL,
        );
        rep.add(
            format!("{tag} running var"),
            &down(gpu, &rv)?,
            &bn.running_var,
            KERNEL_TOL,
        );
        let dy = tensor(c, n, h, h, 25);
        bn.backward(&x, &dy, true);
        let gdy = up(gpu, &dy.data)?;
        let (dg, db, gdx) = (zeros(c)?, zeros(c)?, zeros(x.data.len())?);
        ops::bn_backward(
            gpu,
            &mut s,
            gx.ptr(),
            gdy.ptr(),
            c,
            row,
            &t,
            dg.ptr(),
            db.ptr(),
            Some(gdx.ptr()),
        )?;
        rep.add(
            format!("{tag} dgamma"),
            &down(gpu, &dg)?,
            &bn.dgamma,
            KERNEL_TOL,
        );
        rep.add(
            format!("{tag} dbeta"),
            &down(gpu, &db)?,
            &bn.dbeta,
            KERNEL_TOL,
        );
        rep.add(
            format!("{tag} dx"),
            &down(gpu, &gdx)?,
            &bn.dx.data,
            KERNEL_TOL,
        );
    }
    Ok(())
}

fn check_pool_flatten(gpu: &Gpu, rep: &mut Report) -> Result<()> {
    for &(c, n, h, w) in &[(3, 4, 7, 9), (64, 16, 26, 26)] {
        let mut p = MaxPool2::new();
        let x = tensor(c, n, h, w, 30);
        let y = p.forward(&x).clone();
        let dy = tensor(c, n, h / 2, w / 2, 31);
        p.backward(&x, &dy);
        let (gx, gdy) = (up(gpu, &x.data)?, up(gpu, &dy.data)?);
        let (gy, gdx) = (zeros(y.data.len())?, zeros(x.data.len())?);
        let arg = DevBuf::<u8>::zeros(y.data.len())?;
        ops::maxpool_forward(gpu, gx.ptr(), c * n, h, w, gy.ptr(), arg.ptr())?;
        ops::maxpool_backward(gpu, gdy.ptr(), arg.ptr(), c * n, h, w, gdx.ptr())?;
        let tag = format!("maxpool c{c} n{n} {h}x{w}");
        rep.add(format!("{tag} forward"), &down(gpu, &gy)?, &y.data, 0.0);
        rep.add(format!("{tag} dx"), &down(gpu, &gdx)?, &p.dx.data, 0.0);
    }
    let mut f = Flatten::default();
    let x = tensor(5, 6, 3, 4, 32);
    let y = f.forward(&x).clone();
    f.backward(&x, &y);
    let gx = up(gpu, &x.data)?;
    let (gy, gdx) = (zeros(y.data.len())?, zeros(x.data.len())?);
    ops::flatten(gpu, true, gx.ptr(), 5, 6, 12, gy.ptr())?;
    ops::flatten(gpu, false, gy.ptr(), 5, 6, 12, gdx.ptr())?;
    rep.add("flatten forward", &down(gpu, &gy)?, &y.data, 0.0);
    rep.add("flatten backward", &down(gpu, &gdx)?, &f.dx.data, 0.0);
    Ok(())
}

fn check_linear(gpu: &Gpu, rep: &mut Report) -> Result<()> {
    let mut s = Scratch::default();
    for &(inp, outp, n) in &[(7, 5, 4), (576, 256, 256), (1152, 2, 100)] {
        let mut l = Linear::new(inp, outp, &mut Rng::new(40));
        let x = tensor(inp, n, 1, 1, 41);
        let y = l.forward(&x).clone();
        let dy = tensor(outp, n, 1, 1, 42);
        l.backward(&x, &dy, true);
        let (gx, gw, gb, gdy) = (
            up(gpu, &x.data)?,
            up(gpu, &l.weight)?,
            up(gpu, &l.bias)?,
            up(gpu, &dy.data)?,
        );
        let (gy, gdw, gdb, gdx) = (
            zeros(y.data.len())?,
            zeros(l.weight.len())?,
            zeros(outp)?,
            zeros(x.data.len())?,
        );
        ops::linear_forward(
            gpu,
            &mut s,
            gx.ptr(),
            inp,
            outp,
            n,
            gw.ptr(),
            gb.ptr(),
            gy.ptr(),
        )?;
        ops::linear_backward(
            gpu,
            &mut s,
            gx.ptr(),
            inp,
            outp,
            n,
            gw.ptr(),
            gdy.ptr(),
            gdw.ptr(),
            gdb.ptr(),
            Some(gdx.ptr()),
        )?;
        let tag = format!("linear {inp}->{outp} n{n}");
        rep.add(
            format!("{tag} forward"),
            &down(gpu, &gy)?,
            &y.data,
            KERNEL_TOL,
        );
        rep.add(
            format!("{tag} dW"),
            &down(gpu, &gdw)?,
            &l.dweight,
            KERNEL_TOL,
        );
        rep.add(format!("{tag} db"), &down(gpu, &gdb)?, &l.dbias, KERNEL_TOL);
        rep.add(
            format!("{tag} dx"),
            &down(gpu, &gdx)?,
            &l.dx.data,
            KERNEL_TOL,
        );
    }
    Ok(())
}

fn check_head(gpu: &Gpu, rep: &mut Report) -> Result<()> {
    for &(f, n) in &[(256, 64), (2, 50)] {
        for m in 1..=4u32 {
            for lambda in [0.0, 0.5, 100.0] {
                let mut head = LSoftmax::new(f, 10, m, &mut Rng::new(50 + m as u64));
                let x = random(f * n, 51);
                let targets: Vec<u8> = (0..n).map(|i| ((i * 7 + 3) % 10) as u8).collect();
                let eval = head.forward_eval(&x, n).to_vec();
                let logits = head.forward_train(&x, n, &targets, lambda).to_vec();
                let mut dl = Vec::new();
                let (loss, correct) = softmax_cross_entropy(&logits, 10, &targets, &mut dl);
                head.backward(&x, n, &dl);
                let hb = HeadBuffers::new(n, 10)?;
                let hs = HeadShape {
                    features: f,
                    classes: 10,
                    margin: m,
                };
                let (gx, gw) = (up(gpu, &x)?, up(gpu, &head.weight)?);
                let gt = DevBuf::from_slice(gpu, &targets)?;
                let (gdw, gdx) = (zeros(head.weight.len())?, zeros(x.len())?);
                let gl = DevBuf::<f64>::zeros(1)?;
                let gc = DevBuf::<i32>::zeros(1)?;
                let tag = format!("lsoftmax F{f} n{n} m{m} lambda {lambda}");
                ops::head_forward(gpu, &hb, &hs, gx.ptr(), gw.ptr(), gt.ptr(), n, 0.0, false)?;
                if lambda == 0.0 {
                    rep.add(
                        format!("lsoftmax F{f} n{n} m{m} eval logits"),
                        &down(gpu, &hb.logits)?,
                        &eval,
                        KERNEL_TOL,
                    );
                }
                ops::head_forward(gpu, &hb, &hs, gx.ptr(), gw.ptr(), gt.ptr(), n, lambda, true)?;
                rep.add(
                    format!("{tag} logits"),
                    &down(gpu, &hb.logits)?,
                    &logits,
                    KERNEL_TOL,
                );
                // The backward from the CPU's dlogits, so that the head alone is compared.
                ops::cross_entropy(gpu, &hb, 10, gt.ptr(), n, gl.at(0), gc.at(0))?;
                let gpu_dl = down(gpu, &hb.dlogits)?;
                let gpu_loss = gl.to_vec(gpu)?[0];
                let gpu_correct = gc.to_vec(gpu)?[0];
                let mut hb2 = hb;
                hb2.dlogits.upload(gpu, 0, &dl)?;
                ops::head_backward(
                    gpu,
                    &hb2,
                    &hs,
                    gx.ptr(),
                    gw.ptr(),
                    gt.ptr(),
                    n,
                    lambda,
                    gdw.ptr(),
                    gdx.ptr(),
                )?;
                rep.add(
                    format!("{tag} dW"),
                    &down(gpu, &gdw)?,
                    &head.dweight,
                    KERNEL_TOL,
                );
                rep.add(format!("{tag} dx"), &down(gpu, &gdx)?, &head.dx, KERNEL_TOL);
                if lambda == 0.5 {
                    rep.add(
                        format!("cross-entropy n{n} m{m} dlogits"),
                        &gpu_dl,
                        &dl,
                        KERNEL_TOL,
                    );
                    rep.add(
                        format!("cross-entropy n{n} m{m} loss"),
                        &[gpu_loss as f32],
                        &[loss as f32],
                        KERNEL_TOL,
                    );
                    rep.add(
                        format!("cross-entropy n{n} m{m} correct"),
                        &[gpu_correct as f32],
                        &[correct as f32],
                        0.0,
                    );
                }
            }
        }
    }
    Ok(())
}

fn check_sgd_gather(gpu: &Gpu, rep: &mut Report, data: &mnist::Mnist) -> Result<()> {
    let n = 1000;
    let mut w = random(n, 60);
    let g1 = random(n, 61);
    let g2 = random(n, 62);
    let (gw, mut gg, gb) = (up(gpu, &w)?, zeros(n)?, zeros(n)?);
    let mut opt = Sgd::new(0.9, 5e-4);
    for (i, g) in [&g1, &g2].into_iter().enumerate() {
        opt.step(
            vec![Param {
                value: &mut w,
                grad: g,
            }],
            0.1,
        );
        gg.upload(gpu, 0, g)?;
        ops::sgd_step(gpu, gw.ptr(), gg.ptr(), gb.ptr(), n, 0.1, 0.9, 5e-4, i == 0)?;
        rep.add(
            format!("sgd step {} weights", i + 1),
            &down(gpu, &gw)?,
            &w,
            0.0,
        );
        rep.add(
            format!("sgd step {} momentum", i + 1),
            &down(gpu, &gb)?,
            &opt.buffers[0],
            0.0,
        );
    }
    // Batch gather: a few arbitrary training images.
    let idx: Vec<usize> = vec![5, 0, 59_999, 12_345, 777];
    let split = DeviceSplitLite::new(gpu, &data.train)?;
    let order = DevBuf::from_slice(gpu, &idx.iter().map(|&i| i as u32).collect::<Vec<u32>>())?;
    let out = zeros(idx.len() * split.pixels)?;
    let labels = DevBuf::<u8>::zeros(idx.len())?;
    ops::gather_batch(
        gpu,
        split.images.ptr(),
        split.labels.ptr(),
        order.ptr(),
        0,
        idx.len(),
        split.pixels,
        out.ptr(),
        labels.ptr(),
    )?;
    let images: Vec<&[u8]> = idx.iter().map(|&i| data.train.image(i)).collect();
    let mut want = Tensor::default();
    images_to_tensor(&images, data.train.rows, data.train.cols, &mut want);
    rep.add(
        "gather images (normalised)",
        &down(gpu, &out)?,
        &want.data,
        0.0,
    );
    let want_l: Vec<f32> = idx.iter().map(|&i| data.train.label(i) as f32).collect();
    let got_l: Vec<f32> = labels.to_vec(gpu)?.iter().map(|&l| l as f32).collect();
    rep.add("gather labels", &got_l, &want_l, 0.0);
    Ok(())
}

/// The training images and labels on the device (for the gather check).
struct DeviceSplitLite {
    images: DevBuf<u8>,
    labels: DevBuf<u8>,
    pixels: usize,
}

impl DeviceSplitLite {
    fn new(gpu: &Gpu, s: &mnist::Split) -> Result<Self> {
        Ok(Self {
            images: DevBuf::from_slice(gpu, &s.images)?,
            labels: DevBuf::from_slice(gpu, &s.labels)?,
            pixels: s.image_len(),
        })
    }
}

/// Trains `steps` steps on the CPU and the GPU and compares every step's loss, and the whole
/// state (parameters, running statistics, momentum) and the gradients after the last step.
///
/// Before each step the GPU is given the CPU's state (parameters, running statistics,
/// momentum), so every step is compared from identical inputs and the carried state (momentum,
/// running statistics, the lambda schedule, the step index) is still exercised. Left to run
/// freely, the two drift apart by rounding, and after a few steps an activation within rounding
/// of a PReLU's kink (or a max-pool tie) can take the other branch on one side: on an AVX-512
/// machine (OpenBLAS's SkylakeX kernels) that made `tiny`'s second convolution's gradients differ
/// by 2e-2 after 3 free steps while every layer after it agreed to 4e-5.
fn check_steps(
    rep: &mut Report,
    data: &mnist::Mnist,
    preset: &str,
    batch: usize,
    steps: usize,
) -> Result<()> {
    let arch = ArchSpec::preset(preset).expect("a preset");
    let mut cfg = TrainConfig::seed_recipe(arch, 4);
    cfg.batch = batch;
    cfg.seed = 3;
    let mut cpu = Trainer::new(cfg.clone())?;
    let mut gpu_t = Trainer::new(cfg)?;
    gpu_t.attach_cuda(data)?;
    let order = cpu.epoch_order(data.train.len(), 0);
    let lr = cpu.config.lr;
    let (mom, wd) = (cpu.config.momentum, cpu.config.weight_decay);
    let g = gpu_t.gpu.as_mut().expect("attached");
    g.set_order(&order)?;
    g.reserve_slots(steps)?;
    let tol = step_tol(g.gpu.gemm_policy);
    let mut cpu_secs = 0.0;
    for s in 0..steps {
        let lambda = gpu_t.lambda.step();
        // The GPU starts this step from the CPU's state (see above).
        let g = gpu_t.gpu.as_mut().expect("attached");
        g.net.upload(&g.gpu, &cpu.net, &cpu.opt.buffers)?;
        let idx = &order[s * batch..(s + 1) * batch];
        let images: Vec<&[u8]> = idx.iter().map(|&i| data.train.image(i)).collect();
        let labels: Vec<u8> = idx.iter().map(|&i| data.train.label(i)).collect();
        let cpu_start = Instant::now();
        let cpu_loss = cpu.step(&images, &labels, lr)?.0;
        cpu_secs += cpu_start.elapsed().as_secs_f64();
        g.step(s * batch, batch, lambda, lr, mom, wd, s)?;
        let (loss, _) = g.slot_result(s)?;
        rep.add(
            format!("{preset} b{batch} step {} loss (cpu {cpu_loss:.6})", s + 1),
            &[loss as f32],
            &[cpu_loss as f32],
            tol,
        );
    }
    let g = gpu_t.gpu.as_mut().expect("attached");
    let grads = g.net.gradients(&g.gpu)?;
    let cpu_grads: Vec<Vec<f32>> = cpu.net.params().iter().map(|p| p.grad.to_vec()).collect();
    let mut mom_gpu = Vec::new();
    g.net.download(&g.gpu, &mut gpu_t.net, &mut mom_gpu)?;
    let (cs, gs) = (cpu.net.state(), gpu_t.net.state());
    let state_err = worst_of(
        &cs.iter()
            .zip(&gs)
            .map(|((n, a), (_, b))| (n.clone(), a.as_slice(), b.as_slice()))
            .collect::<Vec<_>>(),
    );
    let grad_err = worst_of(
        &cpu_grads
            .iter()
            .zip(&grads)
            .enumerate()
            .map(|(i, (a, b))| (format!("param {i}"), a.as_slice(), b.as_slice()))
            .collect::<Vec<_>>(),
    );
    let mom_err = worst_of(
        &cpu.opt
            .buffers
            .iter()
            .zip(&mom_gpu)
            .enumerate()
            .map(|(i, (a, b))| (format!("param {i}"), a.as_slice(), b.as_slice()))
            .collect::<Vec<_>>(),
    );
    for (what, (name, err)) in [
        ("state (weights, running stats), worst", state_err),
        ("last gradients, worst", grad_err),
        ("momentum, worst", mom_err),
    ] {
        let row = Row {
            name: format!("{preset} b{batch} step {steps} from the CPU's state: {what} {name}"),
            err,
            tol,
        };
        println!(
            "{:<58} {:>10.3e} {:>8.0e}  {}",
            row.name,
            row.err,
            row.tol,
            if row.ok() { "PASS" } else { "FAIL" }
        );
        rep.rows.push(row);
    }
    println!("  (CPU: {steps} steps in {cpu_secs:.2} s)");
    Ok(())
}

/// Times `steps` GPU training steps of `preset` at `batch` (after `warmup`); images/s.
pub fn bench(
    data: &mnist::Mnist,
    preset: &str,
    batch: usize,
    warmup: usize,
    steps: usize,
    policy: GemmPolicy,
) -> Result<f64> {
    let arch = ArchSpec::preset(preset).expect("a preset");
    let mut cfg = TrainConfig::seed_recipe(arch, 4);
    cfg.batch = batch;
    let mut t = Trainer::new(cfg)?;
    t.attach_cuda(data)?;
    let order = t.epoch_order(data.train.len(), 0);
    let g = t.gpu.as_mut().expect("attached");
    g.gpu.gemm_policy = policy;
    g.set_order(&order)?;
    let per_epoch = data.train.len() / batch;
    g.reserve_slots(per_epoch)?;
    let run = |g: &mut super::GpuState, k: usize, from: usize| -> Result<()> {
        for s in 0..k {
            let b = (from + s) % per_epoch;
            g.step(b * batch, batch, 0.0, 0.01, 0.9, 5e-4, b)?;
        }
        g.gpu.sync()
    };
    run(g, warmup, 0)?;
    let start = Instant::now();
    run(g, steps, warmup)?;
    let secs = start.elapsed().as_secs_f64();
    Ok((steps * batch) as f64 / secs)
}

/// Runs every check; `bench_steps > 0` also times `paper` at batch 256 (with the GPU's
/// [`GemmPolicy`] and with square tiles only), `gemm_batch > 0` times the convolutions'
/// products ([`bench_gemm`]); `quick` skips the `paper` steps. Fails when a row fails.
pub fn run(data: &mnist::Mnist, bench_steps: usize, gemm_batch: usize, quick: bool) -> Result<()> {
    let gpu = Gpu::new()?;
    println!("device: {}", gpu.info);
    println!("{:<58} {:>10} {:>8}  result", "check", "error", "tol");
    let mut rep = Report { rows: Vec::new() };
    check_gemm(&gpu, &mut rep)?;
    check_conv(&gpu, &mut rep)?;
    check_prelu(&gpu, &mut rep)?;
    check_batchnorm(&gpu, &mut rep)?;
    check_pool_flatten(&gpu, &mut rep)?;
    check_linear(&gpu, &mut rep)?;
    check_head(&gpu, &mut rep)?;
    check_sgd_gather(&gpu, &mut rep, data)?;
    if gemm_batch > 0 {
        bench_gemm(&gpu, gemm_batch)?;
    }
    let policy = gpu.gemm_policy;
    drop(gpu);
    check_steps(&mut rep, data, "tiny", 64, 3)?;
    if !quick {
        check_steps(&mut rep, data, "paper", 256, 3)?;
    }
    if bench_steps > 0 {
        let mut policies = vec![policy];
        if policy != GemmPolicy::Square {
            policies.push(GemmPolicy::Square);
        }
        for p in policies {
            let ips = bench(data, "paper", 256, 5, bench_steps, p)?;
            println!(
                "bench: paper m=4 batch 256 on the GPU, gemm {p:?}: {ips:.0} images/s ({:.2} ms/step)",
                1000.0 * 256.0 / ips
            );
        }
    }
    let failed: Vec<&Row> = rep.rows.iter().filter(|r| !r.ok()).collect();
    println!(
        "gpu-check: {} checks, {} failed -> {}",
        rep.rows.len(),
        failed.len(),
        if failed.is_empty() { "PASS" } else { "FAIL" }
    );
    if !failed.is_empty() {
        bail!(
            "{} GPU checks failed (first: {})",
            failed.len(),
            failed[0].name
        );
    }
    Ok(())
}
