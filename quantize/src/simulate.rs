//! An integer simulation of a [`QuantModel`], written independently of infer-core's kernels
//! (CHW maps, direct index arithmetic, `i128` requantization). It defines the expected
//! result of `infer_core::Model::classify` bit for bit.

use crate::quant::{QuantKernel, QuantLayer, QuantModel};
use crate::ExportError;

/// Output of [`simulate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimPrediction {
    /// `argmax_j mult_j * dots_j` (first maximum).
    pub class: usize,
    /// Integer head dot products, one per class.
    pub dots: Vec<i32>,
    /// `mult_j * dots_j`.
    pub scores: Vec<i64>,
    /// The int8 feature vector (HWC flatten order, as infer-core computes it).
    pub features: Vec<i8>,
}

/// `floor(v / 2^sh + 1/2)` for `v = a*m + off`, clamped to the int8 activation range.
fn requant(a: i64, m: i32, sh: u8, off: i64) -> i8 {
    let v = i128::from(a) * i128::from(m) + i128::from(off);
    let den = 1i128 << sh;
    // floor((2v + den) / (2 den)) == floor(v/den + 1/2)
    let r = (2 * v + den).div_euclid(2 * den);
    r.clamp(-127, 127) as i8
}

fn finish(p: &QuantKernel, o: usize, acc: i64) -> i8 {
    let a = acc + i64::from(p.bias[o]);
    let m = if a < 0 { p.mult_neg[o] } else { p.mult_pos[o] };
    requant(a, m, p.shift[o], p.offset[o])
}

/// Runs `q` on one image with straightforward integer loops.
pub fn simulate(q: &QuantModel, image: &[u8]) -> Result<SimPrediction, ExportError> {
    let hw = q.input_hw;
    if image.len() != hw * hw {
        return Err(ExportError::InputSize {
            expected: hw * hw,
            got: image.len(),
        });
    }
    // CHW map (c, h, w, data) or vector.
    let mut c = 1usize;
    let mut h = hw;
    let mut w = hw;
    let mut map: Vec<i8> = image.iter().map(|&p| q.input_lut[usize::from(p)]).collect();
    let mut vector: Option<Vec<i8>> = None;
    for layer in &q.layers {
        match layer {
            QuantLayer::Conv {
                output,
                k,
                pad,
                params,
                ..
            } => {
                let (k, pad) = (usize::from(*k), usize::from(*pad));
                let (oh, ow, co_n) = (
                    usize::from(output.h),
                    usize::from(output.w),
                    usize::from(output.c),
                );
                let mut out = vec![0i8; co_n * oh * ow];
                for co in 0..co_n {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = 0i64;
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy + ky) as isize - pad as isize;
                                    let ix = (ox + kx) as isize - pad as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let (iy, ix) = (iy as usize, ix as usize);
                                    for ci in 0..c {
                                        let xv = map[(ci * h + iy) * w + ix];
                                        let wv = params.weights[((co * k + ky) * k + kx) * c + ci];
                                        acc += i64::from(xv) * i64::from(wv);
                                    }
                                }
                            }
                            out[(co * oh + oy) * ow + ox] = finish(params, co, acc);
                        }
                    }
                }
                map = out;
                (c, h, w) = (co_n, oh, ow);
            }
            QuantLayer::MaxPool2 { .. } => {
                let (oh, ow) = (h / 2, w / 2);
                let mut out = vec![0i8; c * oh * ow];
                for ch in 0..c {
                    for y in 0..oh {
                        for x in 0..ow {
                            let at =
                                |dy: usize, dx: usize| map[(ch * h + 2 * y + dy) * w + 2 * x + dx];
                            out[(ch * oh + y) * ow + x] =
                                at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                        }
                    }
                }
                map = out;
                (h, w) = (oh, ow);
            }
            QuantLayer::Flatten { .. } => {
                let mut v = Vec::with_capacity(map.len());
                for y in 0..h {
                    for x in 0..w {
                        for ch in 0..c {
                            v.push(map[(ch * h + y) * w + x]);
                        }
                    }
                }
                vector = Some(v);
            }
            QuantLayer::Dense {
                input,
                output,
                params,
            } => {
                let x = vector
                    .take()
                    .ok_or_else(|| ExportError::shape(0, "dense layer before flatten"))?;
                let out = (0..*output)
                    .map(|o| {
                        let acc: i64 = (0..*input)
                            .map(|i| i64::from(x[i]) * i64::from(params.weights[o * input + i]))
                            .sum();
                        finish(params, o, acc)
                    })
                    .collect();
                vector = Some(out);
            }
        }
    }
    let x = vector.ok_or_else(|| ExportError::shape(q.layers.len(), "no feature vector"))?;
    let f = q.features;
    let dots: Vec<i32> = (0..q.classes)
        .map(|j| {
            let d: i64 = (0..f)
                .map(|i| i64::from(x[i]) * i64::from(q.head.weights[j * f + i]))
                .sum();
            d as i32
        })
        .collect();
    let scores: Vec<i64> = dots
        .iter()
        .zip(&q.head.mult)
        .map(|(&d, &m)| i64::from(d) * i64::from(m))
        .collect();
    let mut class = 0;
    for (j, &s) in scores.iter().enumerate() {
        if s > scores[class] {
            class = j;
        }
    }
    Ok(SimPrediction {
        class,
        dots,
        scores,
        features: x,
    })
}
