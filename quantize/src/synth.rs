//! Synthetic models and images for tests, examples and benchmarks: random networks with the
//! project's architectures (random weights, BatchNorm statistics derived from real
//! activations then perturbed, negative BatchNorm gammas, random PReLU slopes) and random
//! stroke images. Deterministic for a given seed.

use crate::float_model::{FloatLayer, FloatModel, Normalize};
use crate::reference::{apply_layer, input_tensor, Tensor};

/// A small deterministic PRNG (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform(1e-7, 1.0);
        let u2 = self.uniform(0.0, 1.0);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
}

/// The architectures [`random_model`] can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// conv5x5 1->16 pad2, PReLU (shared), BN, pool, conv5x5 16->32 pad2, PReLU (per channel),
    /// BN, pool, Flatten, Linear 1568->32, BN1d, head 32->10.
    Tiny,
    /// Like `Tiny` but exercising the other foldable orders: conv3x3 1->8 pad1, BN, PReLU,
    /// BN, pool, conv3x3 8->12 pad0, PReLU, pool, Flatten, Linear 300->24, PReLU, Linear
    /// 24->16, BN1d, head 16->10 (and a leading BN(1)).
    Mixed,
    /// The paper's MNIST network (about 104 M MACs).
    Paper,
    /// The paper's Figure 2 network (2-d features).
    Fig2,
}

struct Builder {
    rng: Rng,
    layers: Vec<FloatLayer>,
    probes: Vec<Tensor>,
}

impl Builder {
    fn push(&mut self, l: FloatLayer) {
        let i = self.layers.len();
        for t in &mut self.probes {
            let cur = std::mem::replace(t, Tensor::Vector(Vec::new()));
            *t = apply_layer(i, &l, cur).unwrap_or(Tensor::Vector(Vec::new()));
        }
        self.layers.push(l);
    }

    fn conv(&mut self, cin: usize, cout: usize, k: usize, pad: usize) {
        let sd = (2.0 / (cin * k * k) as f32).sqrt();
        let weight = (0..cout * cin * k * k)
            .map(|_| self.rng.normal() * sd)
            .collect();
        let bias = (0..cout).map(|_| self.rng.normal() * 0.1).collect();
        self.push(FloatLayer::Conv2d {
            cin,
            cout,
            k,
            pad,
            weight,
            bias,
        });
    }

    fn linear(&mut self, inp: usize, out: usize) {
        let sd = (2.0 / inp as f32).sqrt();
        let weight = (0..inp * out).map(|_| self.rng.normal() * sd).collect();
        let bias = (0..out).map(|_| self.rng.normal() * 0.1).collect();
        self.push(FloatLayer::Linear {
            inp,
            out,
            weight,
            bias,
        });
    }

    fn prelu(&mut self, c: usize, shared: bool) {
        let n = if shared { 1 } else { c };
        let slopes = (0..n).map(|_| self.rng.uniform(-0.3, 0.6)).collect();
        self.push(FloatLayer::PRelu { slopes });
    }

    /// BatchNorm whose running statistics are the probes' statistics, perturbed; about a
    /// third of the gammas are negative.
    fn bn(&mut self) {
        let c = self.probes.first().map(Tensor::channels).unwrap_or(1);
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        let mut n = 0usize;
        for t in &self.probes {
            let per = (t.values().len() / c).max(1);
            for (i, &v) in t.values().iter().enumerate() {
                let ch = (i / per).min(c - 1);
                sum[ch] += f64::from(v);
                sq[ch] += f64::from(v) * f64::from(v);
            }
            n += per;
        }
        let n = n.max(1) as f64;
        let mut mean = Vec::with_capacity(c);
        let mut var = Vec::with_capacity(c);
        let mut gamma = Vec::with_capacity(c);
        let mut beta = Vec::with_capacity(c);
        for ch in 0..c {
            let m = sum[ch] / n;
            let v = (sq[ch] / n - m * m).max(1e-4);
            mean.push((m + v.sqrt() * 0.1 * f64::from(self.rng.normal())) as f32);
            var.push((v * f64::from(self.rng.uniform(0.7, 1.4))) as f32);
            let g = self.rng.uniform(0.5, 1.5);
            gamma.push(if self.rng.below(3) == 0 { -g } else { g });
            beta.push(self.rng.normal() * 0.2);
        }
        self.push(FloatLayer::BatchNorm {
            gamma,
            beta,
            mean,
            var,
            eps: 1e-5,
        });
    }
}

/// A random [`FloatModel`] with architecture `arch` (deterministic in `seed`).
pub fn random_model(arch: Arch, seed: u64) -> FloatModel {
    let mut rng = Rng::new(seed);
    let mut shell = FloatModel {
        input_hw: 28,
        normalize: Normalize {
            mean: 0.1307,
            std: 0.3081,
        },
        layers: Vec::new(),
        features: 0,
        classes: 10,
        head: Vec::new(),
        margin: 4,
    };
    let probes = (0..6)
        .map(|_| {
            let img = synthetic_digit(&mut rng);
            input_tensor(&shell, &img).unwrap_or(Tensor::Vector(Vec::new()))
        })
        .collect();
    let mut b = Builder {
        rng,
        layers: Vec::new(),
        probes,
    };
    let features = match arch {
        Arch::Tiny => {
            b.conv(1, 16, 5, 2);
            b.prelu(16, true);
            b.bn();
            b.push(FloatLayer::MaxPool2);
            b.conv(16, 32, 5, 2);
            b.prelu(32, false);
            b.bn();
            b.push(FloatLayer::MaxPool2);
            b.push(FloatLayer::Flatten);
            b.linear(32 * 7 * 7, 32);
            b.bn();
            32
        }
        Arch::Mixed => {
            b.bn();
            b.conv(1, 8, 3, 1);
            b.bn();
            b.prelu(8, false);
            b.bn();
            b.push(FloatLayer::MaxPool2);
            b.conv(8, 12, 3, 0);
            b.prelu(12, true);
            b.push(FloatLayer::MaxPool2);
            b.push(FloatLayer::Flatten);
            b.linear(12 * 6 * 6, 24);
            b.prelu(24, false);
            b.linear(24, 16);
            b.bn();
            16
        }
        Arch::Paper => {
            b.bn();
            b.conv(1, 64, 3, 0);
            b.prelu(64, true);
            b.bn();
            for (reps, pool) in [(3, true), (4, true), (3, true)] {
                for _ in 0..reps {
                    b.conv(64, 64, 3, 1);
                    b.prelu(64, true);
                    b.bn();
                }
                if pool {
                    b.push(FloatLayer::MaxPool2);
                }
            }
            b.push(FloatLayer::Flatten);
            b.linear(576, 256);
            b.bn();
            256
        }
        Arch::Fig2 => {
            let mut cin = 1;
            for c in [32, 64, 128] {
                for _ in 0..2 {
                    b.conv(cin, c, 5, 2);
                    b.prelu(c, true);
                    b.bn();
                    cin = c;
                }
                b.push(FloatLayer::MaxPool2);
            }
            b.push(FloatLayer::Flatten);
            b.linear(1152, 2);
            b.bn();
            2
        }
    };
    shell.head = (0..features * 10).map(|_| b.rng.normal()).collect();
    shell.features = features;
    shell.layers = b.layers;
    shell
}

/// A 28x28 image of 1 to 4 random thick strokes (anti-aliased, 0 = background), roughly
/// MNIST-like in its statistics.
pub fn synthetic_digit(rng: &mut Rng) -> [u8; 784] {
    let mut img = [0f32; 784];
    let strokes = 1 + rng.below(4);
    for _ in 0..strokes {
        let (x0, y0) = (rng.uniform(5.0, 23.0), rng.uniform(4.0, 24.0));
        let (x1, y1) = (rng.uniform(5.0, 23.0), rng.uniform(4.0, 24.0));
        let r = rng.uniform(1.0, 2.2);
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = (dx * dx + dy * dy).max(1e-3);
        for y in 0..28 {
            for x in 0..28 {
                let (px, py) = (x as f32 - x0, y as f32 - y0);
                let t = ((px * dx + py * dy) / len2).clamp(0.0, 1.0);
                let (ex, ey) = (px - t * dx, py - t * dy);
                let d = (ex * ex + ey * ey).sqrt();
                let v = (r + 0.5 - d).clamp(0.0, 1.0);
                img[y * 28 + x] = img[y * 28 + x].max(v);
            }
        }
    }
    let mut out = [0u8; 784];
    for (o, v) in out.iter_mut().zip(img) {
        *o = (v * 255.0).round() as u8;
    }
    out
}

/// A 28x28 image of uniform random bytes.
pub fn noise_image(rng: &mut Rng) -> [u8; 784] {
    let mut out = [0u8; 784];
    for o in out.iter_mut() {
        *o = rng.next_u64() as u8;
    }
    out
}
