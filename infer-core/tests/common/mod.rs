//! Test-only helpers: a PRNG and a builder that writes valid model files directly with the
//! infer-core format types (no dependency on the exporter).
#![allow(dead_code)]

use infer_core::format::{
    encode_to_slice, encoded_size_bound, BoundedSeq, HeadParams, Header, InputParams, KernelParams,
    LayerDesc, LayerParams, ModelBody, Shape,
};

/// SplitMix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }
}

/// Owned arrays of one fused kernel.
#[derive(Clone)]
pub struct Kernel {
    pub weights: Vec<i8>,
    pub bias: Vec<i32>,
    pub mult_pos: Vec<i32>,
    pub mult_neg: Vec<i32>,
    pub shift: Vec<u8>,
    pub offset: Vec<i64>,
}

impl Kernel {
    /// Random parameters producing a useful spread of int8 outputs for `terms` products.
    pub fn random(rng: &mut Rng, outs: usize, terms: usize) -> Self {
        let mut k = Kernel {
            weights: (0..outs * terms).map(|_| rng.next_u64() as i8).collect(),
            bias: Vec::new(),
            mult_pos: Vec::new(),
            mult_neg: Vec::new(),
            shift: Vec::new(),
            offset: Vec::new(),
        };
        // Typical |acc| ~ 64 * 64 * sqrt(terms); aim the output std at ~40.
        let acc = 4096.0 * (terms as f64).sqrt();
        for _ in 0..outs {
            let sh = 40u8;
            let m = (40.0 / acc * 2f64.powi(40)) as i64;
            k.bias.push(rng.range_i64(-(acc as i64), acc as i64) as i32);
            k.mult_pos.push(rng.range_i64(-m, m) as i32);
            k.mult_neg.push(rng.range_i64(-m, m) as i32);
            k.shift.push(sh);
            k.offset.push(rng.range_i64(-20, 20) << sh);
        }
        k
    }
}

pub enum Layer {
    Conv {
        input: Shape,
        output: Shape,
        k: u8,
        pad: u8,
        p: Kernel,
    },
    Pool {
        input: Shape,
    },
    Flatten {
        input: Shape,
    },
    Dense {
        input: u32,
        output: u32,
        p: Kernel,
    },
}

pub struct Spec {
    pub input_hw: u16,
    pub lut: Vec<i8>,
    pub layers: Vec<Layer>,
    pub features: u32,
    pub classes: u16,
    pub head_w: Vec<i8>,
    pub head_mult: Vec<i32>,
}

fn i8b(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}
fn i32b(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn i64b(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

struct KB(Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

impl Spec {
    pub fn to_bytes(&self) -> Vec<u8> {
        let kbs: Vec<Option<KB>> = self
            .layers
            .iter()
            .map(|l| match l {
                Layer::Conv { p, .. } | Layer::Dense { p, .. } => Some(KB(
                    i8b(&p.weights),
                    i32b(&p.bias),
                    i32b(&p.mult_pos),
                    i32b(&p.mult_neg),
                    p.shift.clone(),
                    i64b(&p.offset),
                )),
                _ => None,
            })
            .collect();
        fn kp(k: &KB) -> KernelParams<'_> {
            KernelParams {
                weights: &k.0,
                bias: &k.1,
                mult_pos: &k.2,
                mult_neg: &k.3,
                shift: &k.4,
                offset: &k.5,
                out_scale: 0.05,
            }
        }
        let mut arch = BoundedSeq::new();
        let mut params = BoundedSeq::new();
        for (l, kb) in self.layers.iter().zip(&kbs) {
            let (d, p) = match (l, kb) {
                (
                    Layer::Conv {
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
                    LayerParams::Conv(kp(kb)),
                ),
                (Layer::Pool { input }, _) => (
                    LayerDesc::MaxPool2 {
                        input: *input,
                        output: Shape {
                            h: input.h / 2,
                            w: input.w / 2,
                            c: input.c,
                        },
                    },
                    LayerParams::MaxPool2,
                ),
                (Layer::Flatten { input }, _) => (
                    LayerDesc::Flatten {
                        input: *input,
                        output: input.len().unwrap() as u32,
                    },
                    LayerParams::Flatten,
                ),
                (Layer::Dense { input, output, .. }, Some(kb)) => (
                    LayerDesc::Dense {
                        input: *input,
                        output: *output,
                    },
                    LayerParams::Dense(kp(kb)),
                ),
                _ => unreachable!(),
            };
            arch.push(d).unwrap();
            params.push(p).unwrap();
        }
        let lut = i8b(&self.lut);
        let hw = i8b(&self.head_w);
        let hm = i32b(&self.head_mult);
        let body = ModelBody {
            header: Header {
                input_hw: self.input_hw,
                classes: self.classes,
                features: self.features,
                margin: 4,
                arch,
            },
            input: InputParams {
                lut: &lut,
                scale: 0.02,
            },
            layers: params,
            head: HeadParams {
                weights: &hw,
                mult: &hm,
                shift: 30,
                feature_scale: 0.1,
                weight_scale: 0.01,
            },
        };
        let mut buf = vec![0u8; encoded_size_bound(&body)];
        let n = encode_to_slice(&body, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }
}

/// A small random model: 12x12 input, conv3x3 1->4 pad1, pool, conv3x3 4->6 pad0, flatten,
/// dense 96->8, dense 8->8, head 8->5.
pub fn small_random_spec(seed: u64) -> Spec {
    let mut rng = Rng(seed);
    let s = |h, w, c| Shape { h, w, c };
    let lut = (0..256).map(|p| ((p * 127) / 255) as i8).collect();
    let layers = vec![
        Layer::Conv {
            input: s(12, 12, 1),
            output: s(12, 12, 4),
            k: 3,
            pad: 1,
            p: Kernel::random(&mut rng, 4, 9),
        },
        Layer::Pool {
            input: s(12, 12, 4),
        },
        Layer::Conv {
            input: s(6, 6, 4),
            output: s(4, 4, 6),
            k: 3,
            pad: 0,
            p: Kernel::random(&mut rng, 6, 36),
        },
        Layer::Flatten { input: s(4, 4, 6) },
        Layer::Dense {
            input: 96,
            output: 8,
            p: Kernel::random(&mut rng, 8, 96),
        },
        Layer::Dense {
            input: 8,
            output: 8,
            p: Kernel::random(&mut rng, 8, 8),
        },
    ];
    Spec {
        input_hw: 12,
        lut,
        layers,
        features: 8,
        classes: 5,
        head_w: (0..40).map(|_| rng.next_u64() as i8).collect(),
        head_mult: (0..5)
            .map(|_| rng.range_i64(1 << 29, 1 << 30) as i32)
            .collect(),
    }
}

/// Recomputes the length field and the CRC of a (possibly edited) framed file whose body is
/// `bytes[12..]` without the old CRC (`body`).
pub fn reframe(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = prefix[..8].to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let crc = infer_core::crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}
