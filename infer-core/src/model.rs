//! A validated, borrowed model and integer inference.

use crate::format::{decode_into, unframe, LayerDesc, LayerParams, ModelBody, MAX_CLASSES};
use crate::kernels::{conv2d, conv2d_in_place, dense, dot_i8, maxpool2_in_place};
use crate::math::{acos_f32, chunk_i32, isqrt_u64};
use crate::validate;
use crate::Error;

/// When to flag a prediction as rejected (see [`Prediction::rejected`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// Reject unless the cosine between the feature vector and the predicted class's weight
    /// vector is at least this value.
    MinCos(f32),
    /// Reject unless the angular gap [`Prediction::gap_deg`] is at least this many degrees.
    MinGapDeg(f32),
}

/// Result of [`Model::classify`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Predicted class: the `j` maximising `W_j . x` (exactly, in integers; ties go to the
    /// lowest index).
    pub class: usize,
    /// Number of classes; entries of the arrays below at and after this index are 0.
    pub classes: usize,
    /// Integer dot products `q(W_j) . q(x)` of the int8 head weights and int8 features (the
    /// per-class weight scales are not applied).
    pub dots: [i32; MAX_CLASSES],
    /// `cos(theta_j) = (W_j . x) / (|W_j| |x|)`, from the integer dot products and integer
    /// norms (the per-class and feature scales cancel). 0 when either norm is 0.
    pub cos: [f32; MAX_CLASSES],
    /// Angular gap in degrees: `min_{j != class} theta_j - theta_class` (may be negative when a
    /// class with a smaller weight norm points closer to `x`); 180 for a one-class model.
    pub gap_deg: f32,
    /// Whether the threshold passed to [`Model::classify`] was not met (always `false` without
    /// one). The comparison is `value >= threshold`; a NaN threshold rejects everything.
    pub rejected: bool,
}

/// A model file parsed and fully validated; borrows every array from the file's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    body: ModelBody<'a>,
    head_norm_q16: [u64; MAX_CLASSES],
    /// Scratch bytes at the start of the arena (largest convolution receptive field).
    scratch: usize,
    /// Bytes of the maps and vectors at the end of the arena (see `validate::Sizes`).
    maps: usize,
    /// Extra bytes of [`Model::arena_bytes_fast`].
    fast_extra: usize,
    arena: usize,
    macs: u64,
}

impl<'a> Model<'a> {
    /// Parses and validates a model file.
    ///
    /// Checks, in order: magic, version/flags, declared length, CRC-32, the postcard body,
    /// then every layer: descriptor kind vs parameter kind, shape chaining from the
    /// `input_hw x input_hw x 1` image to the `features`-long vector, every array length
    /// against the declared shapes, accumulator lengths (`<= 2^16` products), bias, shift
    /// and offset ranges, and the head. After it succeeds, [`Model::classify`] cannot fail
    /// because of the model's content.
    #[inline]
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        let mut m = Model {
            body: ModelBody::empty(),
            head_norm_q16: [0; MAX_CLASSES],
            scratch: 0,
            maps: 0,
            fast_extra: 0,
            arena: 0,
            macs: 0,
        };
        decode_into(unframe(bytes)?, &mut m.body)?;
        let sizes = validate::check(&m.body)?;
        m.scratch = sizes.scratch;
        m.maps = sizes.maps;
        m.fast_extra = sizes.fast_stage.saturating_sub(sizes.stage);
        m.arena = sizes.arena;
        m.macs = sizes.macs;
        // sqrt(|W_j|^2) with 16 fractional bits; |W_j|^2 <= 2^16 * 2^14 = 2^30, so the
        // shifted value stays below 2^62.
        let features = m.features().max(1);
        for (n, row) in m
            .head_norm_q16
            .iter_mut()
            .zip(m.body.head.weights.chunks_exact(features))
        {
            let sq: u64 = row
                .iter()
                .map(|&v| (i64::from(v as i8) * i64::from(v as i8)) as u64)
                .sum();
            *n = isqrt_u64(sq << 32);
        }
        Ok(m)
    }

    /// Bytes of scratch memory [`Model::classify`] needs: the largest convolution receptive
    /// field (`k*k*cin`, a window buffer), a stage of rows for the layers computed in place
    /// (the pooling, and the convolutions whose output has their input's shape: `pad + 3`
    /// rows of the largest such map, or one pooled row), and the largest map they work on or
    /// `input + output` size over the other layers (two int8 maps that live at the two ends
    /// of the rest of the arena). See docs/model-format.md, section 7.
    pub fn arena_bytes(&self) -> usize {
        self.arena
    }

    /// An arena size with which every in-place convolution runs in one kernel call per
    /// layer (its stage holds the whole map and the pending rows): [`Model::arena_bytes`]
    /// plus at most one map. Faster where memory is plentiful (a desktop); any size from
    /// [`Model::arena_bytes`] on gives the same results, the bytes beyond it enlarge the
    /// stage.
    pub fn arena_bytes_fast(&self) -> usize {
        self.arena.saturating_add(self.fast_extra)
    }

    /// Multiply-accumulates per image (convolutions, dense layers and the head).
    pub fn macs(&self) -> u64 {
        self.macs
    }

    /// Input images are `input_hw() x input_hw()` pixels.
    pub fn input_hw(&self) -> usize {
        usize::from(self.body.header.input_hw)
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        usize::from(self.body.header.classes)
    }

    /// Length of the feature vector fed to the head.
    pub fn features(&self) -> usize {
        self.body.header.features as usize
    }

    /// The L-Softmax margin the model was trained with (informational).
    pub fn margin(&self) -> u32 {
        self.body.header.margin
    }

    /// The decoded (and validated) body, for inspection.
    pub fn body(&self) -> &ModelBody<'a> {
        &self.body
    }

    /// Runs the network on one image (`input_hw^2` pixels, row-major, 0 = background)
    /// using `arena` (at least [`Model::arena_bytes`] bytes) as the only working memory.
    ///
    /// Fails only when the image has the wrong size ([`Error::InputSize`]) or the arena is
    /// too small ([`Error::ArenaTooSmall`]).
    pub fn classify(
        &self,
        image: &[u8],
        arena: &mut [u8],
        threshold: Option<Threshold>,
    ) -> Result<Prediction, Error> {
        let features = self.run(image, arena)?;
        Ok(self.head(features, threshold))
    }

    /// Runs the feature layers and returns the int8 feature vector (a slice of `arena`).
    pub fn features_of<'b>(&self, image: &[u8], arena: &'b mut [u8]) -> Result<&'b [u8], Error> {
        self.run(image, arena)
    }

    fn run<'b>(&self, image: &[u8], arena: &'b mut [u8]) -> Result<&'b [u8], Error> {
        const LAYOUT: Error = Error::Malformed("internal: arena layout");
        let hw = self.input_hw();
        let n_in = hw * hw;
        if image.len() != n_in {
            return Err(Error::InputSize {
                expected: n_in,
                got: image.len(),
            });
        }
        let got = arena.len();
        if got < self.arena {
            return Err(Error::ArenaTooSmall {
                needed: self.arena,
                got,
            });
        }
        // [window | stage (the bytes beyond `arena_bytes()` too) | maps].
        let (win, arena) = arena.split_at_mut_checked(self.scratch).ok_or(LAYOUT)?;
        let stage_len = arena.len().checked_sub(self.maps).ok_or(LAYOUT)?;
        let (stage, arena) = arena.split_at_mut_checked(stage_len).ok_or(LAYOUT)?;
        let lut = self.body.input.lut;
        for (d, &p) in arena.iter_mut().zip(image) {
            *d = lut.get(usize::from(p)).copied().unwrap_or(0);
        }
        // The current map sits at the front of the maps region (`front`) or at its back.
        let mut front = true;
        let mut cur = n_in;
        for (d, p) in self
            .body
            .header
            .arch
            .as_slice()
            .iter()
            .zip(self.body.layers.as_slice())
        {
            let out_len = match *d {
                LayerDesc::Conv { output, .. } | LayerDesc::MaxPool2 { output, .. } => {
                    output.len().unwrap_or(0)
                }
                LayerDesc::Dense { output, .. } => output as usize,
                LayerDesc::Flatten { .. } => continue,
            };
            // Pooling, and a convolution whose output has its input's shape, run in place
            // (the map stays at its end of the region); the other layers write their output
            // at the other end.
            let total = arena.len();
            let start = if front { 0 } else { total.saturating_sub(cur) };
            match (*d, *p) {
                (
                    LayerDesc::Conv {
                        input,
                        output,
                        k,
                        pad,
                    },
                    LayerParams::Conv(kp),
                ) => {
                    let (k, pad) = (usize::from(k), usize::from(pad));
                    if input == output {
                        let map = arena.get_mut(start..start + cur).ok_or(LAYOUT)?;
                        conv2d_in_place(map, input, k, pad, &kp, win, stage);
                        continue;
                    }
                    let (src, dst) = split(arena, front, cur, out_len).ok_or(LAYOUT)?;
                    let rows = 0..usize::from(output.h);
                    conv2d(src, input, dst, output, rows, k, pad, &kp, win);
                }
                (LayerDesc::MaxPool2 { input, output }, LayerParams::MaxPool2) => {
                    let map = arena.get_mut(start..start + cur).ok_or(LAYOUT)?;
                    maxpool2_in_place(map, input, output, stage);
                    // The pooled map is at the start of the old one: at the back, move it
                    // to the end.
                    if !front {
                        let to = total.checked_sub(out_len).ok_or(LAYOUT)?;
                        if start + out_len > total {
                            return Err(LAYOUT);
                        }
                        arena.copy_within(start..start + out_len, to);
                    }
                    cur = out_len;
                    continue;
                }
                (LayerDesc::Dense { .. }, LayerParams::Dense(kp)) => {
                    let (src, dst) = split(arena, front, cur, out_len).ok_or(LAYOUT)?;
                    dense(src, dst, &kp);
                }
                _ => return Err(LAYOUT),
            }
            front = !front;
            cur = out_len;
        }
        let total = arena.len();
        let feats = if front {
            arena.get(..cur)
        } else {
            total.checked_sub(cur).and_then(|s| arena.get(s..))
        };
        feats.ok_or(LAYOUT)
    }

    fn head(&self, x: &[u8], threshold: Option<Threshold>) -> Prediction {
        let classes = self.classes();
        let hp = &self.body.head;
        let mut pred = Prediction {
            class: 0,
            classes,
            dots: [0; MAX_CLASSES],
            cos: [0.0; MAX_CLASSES],
            gap_deg: 180.0,
            rejected: false,
        };
        let n = x.len().max(1);
        let mut best: Option<i64> = None;
        for (j, (dot, wr)) in pred
            .dots
            .iter_mut()
            .zip(hp.weights.chunks_exact(n))
            .enumerate()
        {
            *dot = dot_i8(x, wr);
            let m = hp.mult.get(j * 4..j * 4 + 4).map(chunk_i32).unwrap_or(0);
            let score = i64::from(*dot) * i64::from(m);
            if best.is_none_or(|b| score > b) {
                best = Some(score);
                pred.class = j;
            }
        }
        let x_sq: u64 = x
            .iter()
            .map(|&v| (i64::from(v as i8) * i64::from(v as i8)) as u64)
            .sum();
        let x_norm_q16 = isqrt_u64(x_sq << 32);
        let mut angles = [0f32; MAX_CLASSES];
        for (((c, a), &dot), &wn) in pred
            .cos
            .iter_mut()
            .zip(angles.iter_mut())
            .zip(pred.dots.iter())
            .zip(self.head_norm_q16.iter())
            .take(classes)
        {
            let den = (wn as f32) * (x_norm_q16 as f32);
            *c = if den > 0.0 {
                ((dot as f32 * 4_294_967_296.0) / den).clamp(-1.0, 1.0)
            } else {
                0.0
            };
            *a = acos_f32(*c);
        }
        let theta = angles.get(pred.class).copied().unwrap_or(0.0);
        let other = angles
            .iter()
            .take(classes)
            .enumerate()
            .filter(|&(j, _)| j != pred.class)
            .map(|(_, &a)| a)
            .fold(f32::INFINITY, f32::min);
        if other.is_finite() {
            pred.gap_deg = (other - theta) * (180.0 / core::f32::consts::PI);
        }
        let best_cos = pred.cos.get(pred.class).copied().unwrap_or(0.0);
        pred.rejected = match threshold {
            None => false,
            Some(Threshold::MinCos(t)) => !meets(best_cos, t),
            Some(Threshold::MinGapDeg(t)) => !meets(pred.gap_deg, t),
        };
        pred
    }
}

/// `value >= threshold`, false when either is NaN.
fn meets(value: f32, threshold: f32) -> bool {
    matches!(
        value.partial_cmp(&threshold),
        Some(core::cmp::Ordering::Greater | core::cmp::Ordering::Equal)
    )
}

/// Splits the arena into the current map (`cur` bytes at the front or the back) and the
/// destination of the next layer (`out` bytes at the other end).
fn split(arena: &mut [u8], src_front: bool, cur: usize, out: usize) -> Option<(&[u8], &mut [u8])> {
    let total = arena.len();
    if src_front {
        let (a, b) = arena.split_at_mut_checked(total.checked_sub(out)?)?;
        Some((a.get(..cur)?, b))
    } else {
        let (a, b) = arena.split_at_mut_checked(out)?;
        let start = b.len().checked_sub(cur)?;
        Some((b.get(start..)?, a))
    }
}
