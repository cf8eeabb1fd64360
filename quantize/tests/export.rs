//! End-to-end tests of folding, quantization, export and the infer-core cross-check.

use infer_core::Model;
use lsoftmax_quantize::synth::{noise_image, random_model, synthetic_digit, Arch, Rng};
use lsoftmax_quantize::{
    argmax, float_forward, fold, load_float, quantize, save_float, simulate, Calibration,
    ExportError, FloatLayer, QuantOptions,
};

fn images(seed: u64, n: usize) -> Vec<[u8; 784]> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            if i % 5 == 4 {
                noise_image(&mut rng)
            } else {
                synthetic_digit(&mut rng)
            }
        })
        .collect()
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().chain(b).fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn folded_forward_matches_unfolded() {
    for (arch, seed) in [
        (Arch::Tiny, 1),
        (Arch::Tiny, 2),
        (Arch::Mixed, 3),
        (Arch::Mixed, 4),
    ] {
        let m = random_model(arch, seed);
        // The generator must produce the advertised variety.
        let negative_gamma = m.layers.iter().any(
            |l| matches!(l, FloatLayer::BatchNorm { gamma, .. } if gamma.iter().any(|&g| g < 0.0)),
        );
        assert!(negative_gamma);
        let folded = fold(&m).unwrap();
        for img in images(seed + 100, 20) {
            let a = float_forward(&m, &img).unwrap();
            let b = folded.forward(&img).unwrap();
            let d = max_rel_diff(&a.logits, &b.logits).max(max_rel_diff(&a.features, &b.features));
            assert!(d < 1e-4, "{arch:?}/{seed}: relative difference {d}");
        }
    }
}

#[test]
fn infer_core_matches_simulation_bit_for_bit() {
    let mut total = 0;
    // `paper` (its 64->64 convolutions and the pooling run in place in the arena) on a few
    // images: its simulation is slow.
    for (arch, seed, calib, n) in [
        (Arch::Tiny, 11, Calibration::MaxAbs, 80),
        (Arch::Tiny, 12, Calibration::Percentile(99.9), 80),
        (Arch::Mixed, 13, Calibration::MaxAbs, 80),
        (Arch::Mixed, 14, Calibration::Percentile(99.0), 80),
        (Arch::Paper, 15, Calibration::MaxAbs, 3),
    ] {
        let m = random_model(arch, seed);
        let q = quantize(&m, &images(seed, 16), QuantOptions { calibration: calib }).unwrap();
        let bytes = q.to_bytes().unwrap();
        let model = Model::from_bytes(&bytes).unwrap();
        let mut arena = vec![0u8; model.arena_bytes()];
        // Bytes beyond `arena_bytes()` only change how many rows an in-place layer computes
        // per kernel call.
        let mut larger = vec![0u8; model.arena_bytes() + 77];
        let mut fast = vec![0u8; model.arena_bytes_fast()];
        for img in images(seed + 1000, n) {
            let p = model.classify(&img, &mut arena, None).unwrap();
            let s = simulate(&q, &img).unwrap();
            assert_eq!(p.class, s.class);
            assert_eq!(&p.dots[..p.classes], &s.dots[..]);
            assert_eq!(model.classify(&img, &mut larger, None).unwrap(), p);
            assert_eq!(model.classify(&img, &mut fast, None).unwrap(), p);
            let feats = model.features_of(&img, &mut arena).unwrap();
            assert_eq!(
                feats.iter().map(|&b| b as i8).collect::<Vec<_>>(),
                s.features
            );
            total += 1;
        }
    }
    assert!(total >= 300);
}

#[test]
fn int8_agrees_with_float_on_most_images() {
    for (arch, seed) in [(Arch::Tiny, 21), (Arch::Mixed, 22)] {
        let m = random_model(arch, seed);
        let q = quantize(&m, &images(seed, 32), QuantOptions::default()).unwrap();
        let test = images(seed + 7, 200);
        let agree = test
            .iter()
            .filter(|img| {
                simulate(&q, &img[..]).unwrap().class
                    == argmax(&float_forward(&m, &img[..]).unwrap().logits)
            })
            .count();
        eprintln!("{arch:?}: int8/float top-1 agreement {agree}/200");
        assert!(agree >= 170, "{arch:?}: only {agree}/200 agree");
    }
}

#[test]
fn bytes_load_in_infer_core_and_report_arena() {
    let m = random_model(Arch::Tiny, 31);
    let q = quantize(&m, &images(31, 8), QuantOptions::default()).unwrap();
    let bytes = q.to_bytes().unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    // Window scratch 5*5*16 + the stage (one pooled row, 14*16: the pooling runs in place)
    // + the largest input+output pair: the first convolution, 28*28 in + 28*28*16 out.
    assert_eq!(
        model.arena_bytes(),
        5 * 5 * 16 + 14 * 16 + 28 * 28 + 28 * 28 * 16
    );
    assert_eq!(
        (model.classes(), model.features(), model.input_hw()),
        (10, 32, 28)
    );
    let mut small = vec![0u8; model.arena_bytes() - 1];
    assert!(matches!(
        model.classify(&[0u8; 784], &mut small, None),
        Err(infer_core::Error::ArenaTooSmall { .. })
    ));
    eprintln!(
        "tiny: file {} bytes, arena {} bytes",
        bytes.len(),
        model.arena_bytes()
    );
}

#[test]
fn float_export_round_trips_exactly() {
    for arch in [Arch::Tiny, Arch::Mixed] {
        let m = random_model(arch, 41);
        let bytes = save_float(&m).unwrap();
        let back = load_float(&bytes).unwrap();
        assert_eq!(back, m);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.head), bits(&m.head));
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n / 2] ^= 1;
        assert!(load_float(&bad).is_err());
        assert!(load_float(&bytes[..n - 1]).is_err());
    }
}

#[test]
fn unsupported_sequences_name_the_layer() {
    let mut m = random_model(Arch::Tiny, 51);
    // BN after a max-pool (index 4 is the first MaxPool2; insert after it).
    let bn = m.layers[2].clone();
    m.layers.insert(4, bn);
    match fold(&m) {
        Err(ExportError::Unsupported { index: 4, .. } | ExportError::Shape { index: 4, .. }) => {}
        other => panic!("{other:?}"),
    }
    let mut m = random_model(Arch::Tiny, 52);
    m.layers.insert(2, FloatLayer::PRelu { slopes: vec![0.1] });
    match fold(&m) {
        Err(e @ ExportError::Unsupported { index: 2, .. }) => {
            assert!(e.to_string().contains("layer 2"))
        }
        other => panic!("{other:?}"),
    }
    let mut m = random_model(Arch::Tiny, 53);
    m.layers.retain(|l| !matches!(l, FloatLayer::Flatten));
    assert!(matches!(
        fold(&m),
        Err(ExportError::Unsupported { index: 8, .. })
    ));
}
