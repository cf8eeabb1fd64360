//! Calibration, int8 quantization and serialization to the infer-core format.
//!
//! # Scheme
//!
//! * Activations: symmetric int8, one scale per tensor, zero point 0 (so zero padding is
//!   exact), values in `[-127, 127]`. A stage's output scale is `range / 127` where `range` is
//!   the calibrated magnitude of the stage's (folded float) output; pooling and flatten keep
//!   their input's scale. The input scale is `max_p |input(p)| / 127` over all 256 pixel values
//!   and the input lookup table is `lut[p] = round(input(p) / s_in)`.
//! * Weights: symmetric int8, one scale per output channel, `s_w = max|w| / 127`.
//! * Bias: `round(bias / (s_w s_x))`, i32, in accumulator units.
//! * Two-branch requantization per output channel `c` (see [module `fold`](mod@crate::fold)): with
//!   `S = s_w[c] s_x`, `Mpos = u S / s_y`, `Mneg = u a S / s_y`, `V = v / s_y`, choose the
//!   largest shift `sh <= 61` with `|m| < 2^31` for both `m = round(M 2^sh)` and
//!   `|round(V 2^sh)| <= 2^61`; then the int8 output is
//!   `clamp(floor((A m + off + 2^(sh-1)) / 2^sh), -127, 127)` with `A = acc + bias` and `m` the
//!   multiplier of `A`'s sign.
//! * Head: per-class symmetric int8 scale `s_j`, weights stored class-major; the class
//!   multipliers are `round(s_j / max_k s_k * 2^30)`, so `argmax_j mult_j (W_j . x)` is the
//!   float rule `argmax_j s_j (W_j . x)` up to rounding.

use infer_core::format::{
    self, BoundedSeq, HeadParams, Header, InputParams, KernelParams, LayerDesc, LayerParams,
    ModelBody, Shape,
};

use crate::float_model::FloatModel;
use crate::fold::{fold, FoldedKernel, FoldedModel, FoldedStage};
use crate::ExportError;

/// How activation ranges are measured on the calibration images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    /// The largest `|value|` of each stage's output over all calibration images.
    MaxAbs,
    /// The given percentile (e.g. `99.99`) of `|value|` over all values of all calibration
    /// images, per stage (histogram of 4096 bins over `[0, max]`; the upper edge of the bin
    /// reaching the percentile). Values above it saturate at +-127.
    Percentile(f64),
}

/// Quantization options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantOptions {
    /// Activation range estimator.
    pub calibration: Calibration,
}

impl Default for QuantOptions {
    fn default() -> Self {
        QuantOptions {
            calibration: Calibration::MaxAbs,
        }
    }
}

/// Quantized parameters of a conv or dense stage with `n` outputs (infer-core layout).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantKernel {
    /// int8 weights: conv `[cout][ky][kx][cin]`, dense `[out][in]` with `in` in HWC flatten
    /// order when the dense layer follows a Flatten.
    pub weights: Vec<i8>,
    /// Bias in accumulator units.
    pub bias: Vec<i32>,
    /// Multiplier for accumulators `>= 0`.
    pub mult_pos: Vec<i32>,
    /// Multiplier for accumulators `< 0`.
    pub mult_neg: Vec<i32>,
    /// Right shift, 1..=61.
    pub shift: Vec<u8>,
    /// Offset added before the shift.
    pub offset: Vec<i64>,
    /// Real value of one output step.
    pub out_scale: f32,
}

/// One quantized layer; mirrors [`infer_core::format::LayerDesc`].
#[derive(Clone, Debug, PartialEq)]
pub enum QuantLayer {
    /// Fused convolution.
    Conv {
        /// Input shape (HWC).
        input: Shape,
        /// Output shape (HWC).
        output: Shape,
        /// Kernel size.
        k: u8,
        /// Padding.
        pad: u8,
        /// Parameters.
        params: QuantKernel,
    },
    /// 2x2 max pooling.
    MaxPool2 {
        /// Input shape.
        input: Shape,
        /// Output shape.
        output: Shape,
    },
    /// Flatten (no data movement in HWC).
    Flatten {
        /// Input shape.
        input: Shape,
    },
    /// Fused dense layer.
    Dense {
        /// Inputs.
        input: usize,
        /// Outputs.
        output: usize,
        /// Parameters.
        params: QuantKernel,
    },
}

/// The quantized head.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantHead {
    /// int8 weights `[classes][features]`.
    pub weights: Vec<i8>,
    /// Per-class multipliers (`s_j / max_k s_k * 2^shift`).
    pub mult: Vec<i32>,
    /// Fractional bits of `mult` (30).
    pub shift: u8,
    /// Real value of one feature step.
    pub feature_scale: f32,
    /// `max_k s_k`.
    pub weight_scale: f32,
}

/// A fully quantized model, owning its arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantModel {
    /// Input height/width.
    pub input_hw: usize,
    /// Classes.
    pub classes: usize,
    /// Features.
    pub features: usize,
    /// Training margin (informational).
    pub margin: u32,
    /// `lut[p]`: int8 network input of pixel `p`.
    pub input_lut: Vec<i8>,
    /// Real value of one input step.
    pub input_scale: f32,
    /// Layers.
    pub layers: Vec<QuantLayer>,
    /// Head.
    pub head: QuantHead,
}

/// Per-stage activation ranges (real magnitudes mapped to 127), one per folded stage.
pub fn calibrate<I: AsRef<[u8]>>(
    folded: &FoldedModel,
    images: &[I],
    calibration: Calibration,
) -> Result<Vec<f64>, ExportError> {
    if images.is_empty() {
        return Err(ExportError::NoCalibration);
    }
    let n = folded.stages.len();
    let mut max = vec![0f64; n];
    for img in images {
        let outs = folded.stage_outputs(img.as_ref())?;
        for (m, t) in max.iter_mut().zip(&outs[1..]) {
            let a = t.values().iter().fold(0f32, |a, v| a.max(v.abs()));
            *m = m.max(f64::from(a));
        }
    }
    let Calibration::Percentile(p) = calibration else {
        return Ok(max);
    };
    const BINS: usize = 4096;
    let mut hist = vec![[0u64; BINS]; n];
    for img in images {
        let outs = folded.stage_outputs(img.as_ref())?;
        for ((h, t), &m) in hist.iter_mut().zip(&outs[1..]).zip(&max) {
            if m <= 0.0 {
                continue;
            }
            for v in t.values() {
                let b = ((f64::from(v.abs()) / m) * BINS as f64) as usize;
                h[b.min(BINS - 1)] += 1;
            }
        }
    }
    let frac = (p / 100.0).clamp(0.0, 1.0);
    Ok(hist
        .iter()
        .zip(&max)
        .map(|(h, &m)| {
            let total: u64 = h.iter().sum();
            let want = (frac * total as f64).ceil() as u64;
            let mut cum = 0;
            for (b, &c) in h.iter().enumerate() {
                cum += c;
                if cum >= want {
                    return m * (b + 1) as f64 / BINS as f64;
                }
            }
            m
        })
        .collect())
}

fn q8(v: f64) -> i8 {
    v.round().clamp(-127.0, 127.0) as i8
}

/// Symmetric per-row int8 quantization: returns (scales, quantized) for `rows` rows.
fn quantize_rows(w: &[f32], rows: usize) -> (Vec<f64>, Vec<i8>) {
    let per = w.len() / rows.max(1);
    let mut scales = Vec::with_capacity(rows);
    let mut q = Vec::with_capacity(w.len());
    for r in 0..rows {
        let row = &w[r * per..(r + 1) * per];
        let m = row.iter().fold(0f64, |a, &v| a.max(f64::from(v).abs()));
        let s = if m > 0.0 { m / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(row.iter().map(|&v| q8(f64::from(v) / s)));
    }
    (scales, q)
}

/// Fixed-point form of `(Mpos, Mneg, V)`: `(mpos, mneg, shift, offset)`.
fn fixed_point(mpos: f64, mneg: f64, v: f64) -> Option<(i32, i32, u8, i64)> {
    let m = mpos.abs().max(mneg.abs());
    if !(m.is_finite() && v.is_finite()) {
        return None;
    }
    // Largest shift that keeps the larger multiplier below 2^31.
    let mut sh: i32 = if m > 0.0 {
        30 - m.log2().floor() as i32
    } else {
        61
    };
    sh = sh.min(61);
    while sh >= 1 {
        let p = 2f64.powi(sh);
        let (a, b, o) = ((mpos * p).round(), (mneg * p).round(), (v * p).round());
        let lim = f64::from(i32::MAX);
        if a.abs() <= lim && b.abs() <= lim && o.abs() <= infer_core::math::MAX_OFFSET as f64 {
            return Some((a as i32, b as i32, sh as u8, o as i64));
        }
        sh -= 1;
    }
    None
}

fn quantize_kernel(
    index: usize,
    k: &FoldedKernel,
    rows: usize,
    reorder: impl Fn(&[i8]) -> Vec<i8>,
    s_x: f64,
    s_y: f64,
) -> Result<QuantKernel, ExportError> {
    let (s_w, q) = quantize_rows(&k.weight, rows);
    let per = q.len() / rows.max(1);
    let mut weights = Vec::with_capacity(q.len());
    for r in 0..rows {
        weights.extend(reorder(&q[r * per..(r + 1) * per]));
    }
    let mut out = QuantKernel {
        weights,
        bias: Vec::with_capacity(rows),
        mult_pos: Vec::with_capacity(rows),
        mult_neg: Vec::with_capacity(rows),
        shift: Vec::with_capacity(rows),
        offset: Vec::with_capacity(rows),
        out_scale: s_y as f32,
    };
    for (o, &sw) in s_w.iter().enumerate() {
        let s = sw * s_x;
        let b = (f64::from(k.bias[o]) / s).round();
        if b.is_nan() || b.abs() > f64::from(infer_core::math::MAX_BIAS) {
            return Err(ExportError::unrepresentable(
                index,
                format!("bias of output {o} is {b} accumulator units"),
            ));
        }
        let u = f64::from(k.post_mul[o]);
        let a = f64::from(k.neg_slope[o]);
        let (mp, mn, sh, off) = fixed_point(
            u * s / s_y,
            u * a * s / s_y,
            f64::from(k.post_add[o]) / s_y,
        )
        .ok_or_else(|| {
            ExportError::unrepresentable(index, format!("requantization multiplier of output {o}"))
        })?;
        out.bias.push(b as i32);
        out.mult_pos.push(mp);
        out.mult_neg.push(mn);
        out.shift.push(sh);
        out.offset.push(off);
    }
    Ok(out)
}

fn shape(index: usize, h: usize, w: usize, c: usize) -> Result<Shape, ExportError> {
    let f = |v: usize| {
        u16::try_from(v).map_err(|_| ExportError::unrepresentable(index, "dimension above 65535"))
    };
    Ok(Shape {
        h: f(h)?,
        w: f(w)?,
        c: f(c)?,
    })
}

/// CHW-flatten-ordered row -> HWC-flatten-ordered row for a `c x h x w` map.
fn chw_to_hwc<T: Copy>(row: &[T], (c, h, w): (usize, usize, usize)) -> Vec<T> {
    let mut out = Vec::with_capacity(row.len());
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                out.push(row[(ch * h + y) * w + x]);
            }
        }
    }
    out
}

/// Quantizes an already folded model with the given per-stage ranges (from [`calibrate`]).
pub fn quantize_folded(folded: &FoldedModel, ranges: &[f64]) -> Result<QuantModel, ExportError> {
    if ranges.len() != folded.stages.len() {
        return Err(ExportError::NoCalibration);
    }
    let hw = folded.input_hw;
    let in_max = folded
        .input_value(0)
        .abs()
        .max(folded.input_value(255).abs());
    let s_in = if in_max > 0.0 { in_max / 127.0 } else { 1.0 };
    let input_lut = (0..=255u8)
        .map(|p| q8(folded.input_value(p) / s_in))
        .collect();
    let mut s_x = s_in;
    let mut pending_perm: Option<(usize, usize, usize)> = None;
    let mut layers = Vec::with_capacity(folded.stages.len());
    for (stage, &range) in folded.stages.iter().zip(ranges) {
        let index = stage.first_layer();
        let s_y = if range > 0.0 && range.is_finite() {
            range / 127.0
        } else {
            1.0 / 127.0
        };
        match stage {
            FoldedStage::Conv {
                cin,
                cout,
                k,
                pad,
                in_hw,
                out_hw,
                kernel,
                ..
            } => {
                let (cin, k) = (*cin, *k);
                // [cin][k][k] -> [k][k][cin]
                let reorder = |row: &[i8]| {
                    let mut v = Vec::with_capacity(row.len());
                    for ky in 0..k {
                        for kx in 0..k {
                            for ci in 0..cin {
                                v.push(row[(ci * k + ky) * k + kx]);
                            }
                        }
                    }
                    v
                };
                let params = quantize_kernel(index, kernel, *cout, reorder, s_x, s_y)?;
                layers.push(QuantLayer::Conv {
                    input: shape(index, in_hw.0, in_hw.1, cin)?,
                    output: shape(index, out_hw.0, out_hw.1, *cout)?,
                    k: u8::try_from(k)
                        .map_err(|_| ExportError::unrepresentable(index, "kernel above 255"))?,
                    pad: u8::try_from(*pad)
                        .map_err(|_| ExportError::unrepresentable(index, "padding above 255"))?,
                    params,
                });
                s_x = s_y;
            }
            FoldedStage::MaxPool2 { c, h, w, .. } => layers.push(QuantLayer::MaxPool2 {
                input: shape(index, *h, *w, *c)?,
                output: shape(index, h / 2, w / 2, *c)?,
            }),
            FoldedStage::Flatten { c, h, w, .. } => {
                pending_perm = Some((*c, *h, *w));
                layers.push(QuantLayer::Flatten {
                    input: shape(index, *h, *w, *c)?,
                });
            }
            FoldedStage::Dense {
                inp, out, kernel, ..
            } => {
                let perm = pending_perm.take();
                let reorder = |row: &[i8]| match perm {
                    Some(p) => chw_to_hwc(row, p),
                    None => row.to_vec(),
                };
                let params = quantize_kernel(index, kernel, *out, reorder, s_x, s_y)?;
                layers.push(QuantLayer::Dense {
                    input: *inp,
                    output: *out,
                    params,
                });
                s_x = s_y;
            }
        }
    }
    // Head: [features][classes] -> per class rows.
    let (f, c) = (folded.features, folded.classes);
    let mut rows = vec![0f32; f * c];
    for i in 0..f {
        for j in 0..c {
            rows[j * f + i] = folded.head[i * c + j];
        }
    }
    let (scales, q) = quantize_rows(&rows, c);
    let mut weights = Vec::with_capacity(q.len());
    for j in 0..c {
        let row = &q[j * f..(j + 1) * f];
        weights.extend(match pending_perm {
            Some(p) => chw_to_hwc(row, p),
            None => row.to_vec(),
        });
    }
    let smax = scales.iter().fold(0f64, |a, &s| a.max(s));
    let shift = 30u8;
    let mult = scales
        .iter()
        .map(|&s| (s / smax * f64::from(1u32 << shift)).round() as i32)
        .collect();
    Ok(QuantModel {
        input_hw: hw,
        classes: c,
        features: f,
        margin: folded.margin,
        input_lut,
        input_scale: s_in as f32,
        layers,
        head: QuantHead {
            weights,
            mult,
            shift,
            feature_scale: s_x as f32,
            weight_scale: smax as f32,
        },
    })
}

/// Folds, calibrates on `calib_images` (each `input_hw^2` pixels) and quantizes `model`.
pub fn quantize<I: AsRef<[u8]>>(
    model: &FloatModel,
    calib_images: &[I],
    opts: QuantOptions,
) -> Result<QuantModel, ExportError> {
    let folded = fold(model)?;
    let ranges = calibrate(&folded, calib_images, opts.calibration)?;
    let q = quantize_folded(&folded, &ranges)?;
    // Make sure the result is a valid infer-core model (layer count, ranges, shapes).
    let bytes = q.to_bytes()?;
    infer_core::Model::from_bytes(&bytes)?;
    Ok(q)
}

fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}

fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

/// Byte images of one kernel's arrays, to be borrowed by [`KernelParams`].
struct KernelBytes {
    w: Vec<u8>,
    b: Vec<u8>,
    mp: Vec<u8>,
    mn: Vec<u8>,
    sh: Vec<u8>,
    off: Vec<u8>,
    scale: f32,
}

impl KernelBytes {
    fn new(k: &QuantKernel) -> Self {
        KernelBytes {
            w: i8_bytes(&k.weights),
            b: le_bytes(&k.bias, i32::to_le_bytes),
            mp: le_bytes(&k.mult_pos, i32::to_le_bytes),
            mn: le_bytes(&k.mult_neg, i32::to_le_bytes),
            sh: k.shift.clone(),
            off: le_bytes(&k.offset, i64::to_le_bytes),
            scale: k.out_scale,
        }
    }
    fn params(&self) -> KernelParams<'_> {
        KernelParams {
            weights: &self.w,
            bias: &self.b,
            mult_pos: &self.mp,
            mult_neg: &self.mn,
            shift: &self.sh,
            offset: &self.off,
            out_scale: self.scale,
        }
    }
}

impl QuantModel {
    /// Serializes to the infer-core model format (see `docs/model-format.md`), using the
    /// infer-core format types. Fails if the model has more than
    /// [`infer_core::MAX_LAYERS`] layers or a size does not fit the format's integer fields.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ExportError> {
        let too_big = |what: &'static str| ExportError::Core(infer_core::Error::Encode(what));
        let kernels: Vec<Option<KernelBytes>> = self
            .layers
            .iter()
            .map(|l| match l {
                QuantLayer::Conv { params, .. } | QuantLayer::Dense { params, .. } => {
                    Some(KernelBytes::new(params))
                }
                _ => None,
            })
            .collect();
        let mut arch = BoundedSeq::<LayerDesc, { format::MAX_LAYERS }>::new();
        let mut params = BoundedSeq::<LayerParams<'_>, { format::MAX_LAYERS }>::new();
        for (l, kb) in self.layers.iter().zip(&kernels) {
            let (d, p) = match (l, kb) {
                (
                    QuantLayer::Conv {
                        input,
                        output,
                        k,
                        pad,
                        ..
                    },
                    Some(kb),
                ) => (
                    LayerDesc::Conv {
                        input: *input,
                        output: *output,
                        k: *k,
                        pad: *pad,
                    },
                    LayerParams::Conv(kb.params()),
                ),
                (QuantLayer::MaxPool2 { input, output }, _) => (
                    LayerDesc::MaxPool2 {
                        input: *input,
                        output: *output,
                    },
                    LayerParams::MaxPool2,
                ),
                (QuantLayer::Flatten { input }, _) => {
                    let n = input
                        .len()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or(too_big("flatten length"))?;
                    (
                        LayerDesc::Flatten {
                            input: *input,
                            output: n,
                        },
                        LayerParams::Flatten,
                    )
                }
                (QuantLayer::Dense { input, output, .. }, Some(kb)) => (
                    LayerDesc::Dense {
                        input: u32::try_from(*input).map_err(|_| too_big("dense input"))?,
                        output: u32::try_from(*output).map_err(|_| too_big("dense output"))?,
                    },
                    LayerParams::Dense(kb.params()),
                ),
                _ => return Err(too_big("internal: kernel bytes")),
            };
            arch.push(d)
                .map_err(|_| too_big("more than MAX_LAYERS layers"))?;
            params
                .push(p)
                .map_err(|_| too_big("more than MAX_LAYERS layers"))?;
        }
        let lut = i8_bytes(&self.input_lut);
        let hw = i8_bytes(&self.head.weights);
        let hm = le_bytes(&self.head.mult, i32::to_le_bytes);
        let body = ModelBody {
            header: Header {
                input_hw: u16::try_from(self.input_hw).map_err(|_| too_big("input_hw"))?,
                classes: u16::try_from(self.classes).map_err(|_| too_big("classes"))?,
                features: u32::try_from(self.features).map_err(|_| too_big("features"))?,
                margin: self.margin,
                arch,
            },
            input: InputParams {
                lut: &lut,
                scale: self.input_scale,
            },
            layers: params,
            head: HeadParams {
                weights: &hw,
                mult: &hm,
                shift: self.head.shift,
                feature_scale: self.head.feature_scale,
                weight_scale: self.head.weight_scale,
            },
        };
        let mut buf = vec![0u8; format::encoded_size_bound(&body)];
        let n = format::encode_to_slice(&body, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Writes [`QuantModel::to_bytes`] to `path`.
    pub fn write_file(&self, path: impl AsRef<std::path::Path>) -> Result<(), ExportError> {
        std::fs::write(path, self.to_bytes()?)?;
        Ok(())
    }
}
