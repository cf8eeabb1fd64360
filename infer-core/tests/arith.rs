//! Hand-checked arithmetic: requantization, a tiny convolution worked out on paper, the head
//! rule, cosines and angles, and the scalar helpers.

mod common;

use common::{Kernel, Layer, Spec};
use infer_core::format::Shape;
use infer_core::math::{acos_f32, isqrt_u64, requantize, sqrt_f32};
use infer_core::{crc32, Model, Threshold};

#[test]
fn requantize_rounds_half_up_and_clamps() {
    let half = 1 << 30; // 0.5 in Q31 with shift 31
    assert_eq!(requantize(5, half, 31, 0), 3); // 2.5 -> 3
    assert_eq!(requantize(-5, half, 31, 0), -2); // -2.5 -> -2
    assert_eq!(requantize(-3, half, 31, 0), -1); // -1.5 -> -1
    assert_eq!(requantize(-4, half, 31, 0), -2);
    assert_eq!(requantize(7, half, 31, 1 << 31), 5); // 3.5 + 1 = 4.5 -> 5
    assert_eq!(requantize(1_000_000, half, 31, 0), 127);
    assert_eq!(requantize(-1_000_000, half, 31, 0), -127);
    assert_eq!(requantize(i32::MAX, i32::MIN, 1, 0), -127);
    // Extreme valid operands: (2^62 + 2^61 + 2^60) >> 61 = 3, no overflow.
    assert_eq!(requantize(i32::MIN, i32::MIN, 61, 1 << 61), 3);
    // Negative multiplier: -0.25 * 10 = -2.5 -> -2.
    assert_eq!(requantize(10, -(1 << 29), 31, 0), -2);
}

/// 3x3 image, conv3x3 1->2 pad1, flatten, 3-class head; every number below is computed by
/// hand in the comments.
fn hand_model() -> Vec<u8> {
    let s = |h, w, c| Shape { h, w, c };
    // Channel 0: all-ones kernel, x0.5. Channel 1: centre 2, others -1, bias -1,
    // x0.5 for A >= 0, x(-0.25) for A < 0, +3.
    let mut w = vec![1i8; 9];
    w.extend((0..9).map(|i| if i == 4 { 2 } else { -1 }));
    let p = Kernel {
        weights: w,
        bias: vec![0, -1],
        mult_pos: vec![1 << 30, 1 << 30],
        mult_neg: vec![1 << 30, -(1 << 29)],
        shift: vec![31, 31],
        offset: vec![0, 3 << 31],
    };
    let mut head_w = vec![0i8; 54];
    head_w[0] = 1; // class 0: feature 0
    head_w[18..36].iter_mut().for_each(|v| *v = 1); // class 1: sum of features
    head_w[36 + 17] = 2; // class 2: 2 * feature 17 - feature 8
    head_w[36 + 8] = -1;
    Spec {
        input_hw: 3,
        lut: (0..256).map(|p: i32| p.min(127) as i8).collect(),
        layers: vec![
            Layer::Conv {
                input: s(3, 3, 1),
                output: s(3, 3, 2),
                k: 3,
                pad: 1,
                p,
            },
            Layer::Flatten { input: s(3, 3, 2) },
        ],
        features: 18,
        classes: 3,
        head_w,
        head_mult: vec![1 << 30, 1 << 24, 1 << 27],
    }
    .to_bytes()
}

/// The worked example of `docs/model-format.md`: exact prefix and first body bytes.
#[test]
fn documented_byte_layout() {
    let b = hand_model();
    let body_len = b.len() - 16;
    assert_eq!(&b[..8], b"LSQ8\x01\x00\x00\x00");
    assert_eq!(&b[8..12], &(body_len as u32).to_le_bytes());
    #[rustfmt::skip]
    let head: [u8; 22] = [
        0x03, 0x03, 0x12, 0x04,                         // input_hw, classes, features, margin
        0x02,                                           // arch: 2 entries
        0x00, 0x03, 0x03, 0x01, 0x03, 0x03, 0x02, 0x03, 0x01, // Conv (3,3,1)->(3,3,2) k3 pad1
        0x02, 0x03, 0x03, 0x02, 0x12,                   // Flatten (3,3,2) -> 18
        0x80, 0x02,                                     // lut length 256
        0x00,                                           // lut[0]
    ];
    assert_eq!(&b[12..34], &head);
    // After the 256 LUT bytes: scale 0.02f32 LE, then 2 layers, the first a Conv whose
    // weights array has 18 bytes.
    assert_eq!(&b[34 + 255..34 + 255 + 4], &0.02f32.to_le_bytes());
    assert_eq!(&b[34 + 259..34 + 262], &[0x02, 0x00, 0x12]);
    let crc = u32::from_le_bytes(b[b.len() - 4..].try_into().unwrap());
    assert_eq!(crc, crc32(&b[..b.len() - 4]));
}

#[test]
fn hand_checked_conv_requant_and_head() {
    let bytes = hand_model();
    let m = Model::from_bytes(&bytes).unwrap();
    assert_eq!(m.arena_bytes(), 9 + 9 + 18); // window 3*3*1, input 9, conv output 18
    let image = [1u8, 2, 3, 4, 5, 6, 7, 8, 60];
    let mut arena = vec![0u8; m.arena_bytes()];
    // Channel 0 = round_half_up(neighbourhood sum / 2):
    //   sums 12 21 16 / 27 96 84 / 24 90 79 -> 6 11 8 / 14 48 42 / 12 45 40.
    // Channel 1: A = 3*centre - sum - 1 = -10 -16 -8 / -16 -82 -67 / -4 -67 100;
    //   A < 0: -A/4 + 3 -> 5.5 7 5 / 7 23.5 19.75 / 4 19.75; A = 100: 50 + 3.
    //   Rounded half up: 6 7 5 / 7 24 20 / 4 20 53.
    let expect: [i8; 18] = [
        6, 6, 11, 7, 8, 5, 14, 7, 48, 24, 42, 20, 12, 4, 45, 20, 40, 53,
    ];
    let feats: Vec<i8> = m
        .features_of(&image, &mut arena)
        .unwrap()
        .iter()
        .map(|&b| b as i8)
        .collect();
    assert_eq!(feats, expect);
    let p = m.classify(&image, &mut arena, None).unwrap();
    // dots: 6, sum = 372, 2*53 - 48 = 58. Scores 6*2^30, 372*2^24, 58*2^27: class 2 wins
    // although class 1 has the largest dot product.
    assert_eq!(&p.dots[..3], &[6, 372, 58]);
    assert_eq!(p.class, 2);
    assert_eq!(p.classes, 3);
    assert!(!p.rejected);
    // Cosines and gap, recomputed in f64.
    let x: Vec<f64> = expect.iter().map(|&v| f64::from(v)).collect();
    let xn = x.iter().map(|v| v * v).sum::<f64>().sqrt();
    let wn = [1f64, 18f64.sqrt(), 5f64.sqrt()];
    let dots = [6f64, 372.0, 58.0];
    let mut theta = [0f64; 3];
    for j in 0..3 {
        let c = dots[j] / (wn[j] * xn);
        assert!(
            (f64::from(p.cos[j]) - c).abs() < 1e-5,
            "cos {j}: {} vs {c}",
            p.cos[j]
        );
        theta[j] = c.acos();
    }
    let gap = (theta[0].min(theta[1]) - theta[2]).to_degrees();
    assert!(
        (f64::from(p.gap_deg) - gap).abs() < 1e-3,
        "gap {} vs {gap}",
        p.gap_deg
    );
    // Class 1 points closer to x than the predicted class 2: the gap is negative.
    assert!(p.gap_deg < 0.0);
    assert!(p.cos[3..].iter().all(|&c| c == 0.0));
    // Thresholds.
    let c2 = p.cos[2];
    assert!(
        !m.classify(&image, &mut arena, Some(Threshold::MinCos(c2)))
            .unwrap()
            .rejected
    );
    assert!(
        m.classify(&image, &mut arena, Some(Threshold::MinCos(c2 + 1e-3)))
            .unwrap()
            .rejected
    );
    assert!(
        m.classify(&image, &mut arena, Some(Threshold::MinGapDeg(0.0)))
            .unwrap()
            .rejected
    );
    assert!(
        m.classify(&image, &mut arena, Some(Threshold::MinGapDeg(f32::NAN)))
            .unwrap()
            .rejected
    );
    // An all-zero image gives all-zero... features? Channel 1 still has its +3 offset.
    let p0 = m.classify(&[0u8; 9], &mut arena, None).unwrap();
    assert_eq!(p0.dots[0], 0);
}

#[test]
fn acos_is_accurate() {
    let mut worst = 0f64;
    for i in 0..=200_000 {
        let x = -1.0 + 2.0 * (i as f64) / 200_000.0;
        let got = f64::from(acos_f32(x as f32));
        let want = f64::from(x as f32).acos();
        worst = worst.max((got - want).abs());
    }
    assert!(worst < 1e-6, "worst acos error {worst}");
    assert_eq!(acos_f32(2.0), 0.0);
    assert!((acos_f32(-2.0) - std::f32::consts::PI).abs() < 1e-6);
    assert!(acos_f32(f32::NAN).is_nan());
}

#[test]
fn sqrt_and_isqrt() {
    for n in (0u64..100_000).chain([
        u64::MAX,
        u64::MAX - 1,
        1 << 62,
        (1 << 62) - 1,
        4_294_967_295 * 4_294_967_295,
    ]) {
        let r = isqrt_u64(n);
        assert!(u128::from(r) * u128::from(r) <= u128::from(n));
        assert!(
            u128::from(r + 1) * u128::from(r + 1) > u128::from(n),
            "isqrt({n}) = {r}"
        );
    }
    for i in 1..10_000 {
        let x = i as f32 * 1.37e-4;
        assert!((sqrt_f32(x) - x.sqrt()).abs() <= 2.0 * f32::EPSILON * x.sqrt());
    }
}

#[test]
fn crc_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}
