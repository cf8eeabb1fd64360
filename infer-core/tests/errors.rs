//! Each failure mode yields its own error.

mod common;

use common::{reframe, small_random_spec};
use infer_core::format::{FORMAT_VERSION, MAGIC};
use infer_core::{Error, Model};

fn valid() -> Vec<u8> {
    small_random_spec(7).to_bytes()
}

#[test]
fn valid_model_loads_and_runs() {
    let b = valid();
    assert_eq!(&b[..4], &MAGIC);
    let m = Model::from_bytes(&b).unwrap();
    // Window scratch 3*3*4 (second conv) + the stage (one pooled row, 6*4, for the pooling
    // done in place) + conv1's 144 in + 576 out.
    assert_eq!(m.arena_bytes(), 36 + 6 * 4 + 12 * 12 + 12 * 12 * 4);
    let mut arena = vec![0u8; m.arena_bytes()];
    let p = m.classify(&[100u8; 144], &mut arena, None).unwrap();
    assert!(p.class < 5);
}

#[test]
fn bad_crc() {
    let mut b = valid();
    let n = b.len();
    b[n / 2] ^= 0x10;
    assert!(matches!(Model::from_bytes(&b), Err(Error::BadCrc { .. })));
    let mut b = valid();
    b[n - 1] ^= 1;
    assert!(matches!(Model::from_bytes(&b), Err(Error::BadCrc { .. })));
}

#[test]
fn unknown_version() {
    let mut b = valid();
    b[4..6].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(
        Model::from_bytes(&b).unwrap_err(),
        Error::UnsupportedVersion {
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION
        }
    );
    let mut b = valid();
    b[6] = 1; // reserved flags
    assert!(matches!(
        Model::from_bytes(&b),
        Err(Error::UnsupportedVersion { .. })
    ));
}

#[test]
fn wrong_magic() {
    let mut b = valid();
    b[0] = b'X';
    assert_eq!(Model::from_bytes(&b).unwrap_err(), Error::BadMagic);
    assert_eq!(Model::from_bytes(b"PNG").unwrap_err(), Error::BadMagic);
}

#[test]
fn truncated_file() {
    let b = valid();
    for cut in [0, 2, 4, 11, 12, 100, b.len() - 1] {
        match Model::from_bytes(&b[..cut]) {
            Err(Error::Truncated { needed, got }) => {
                assert_eq!(got, cut);
                assert!(needed > got);
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    let mut longer = b.clone();
    longer.push(0);
    assert!(matches!(
        Model::from_bytes(&longer),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn arena_too_small_and_wrong_image() {
    let b = valid();
    let m = Model::from_bytes(&b).unwrap();
    let mut arena = vec![0u8; m.arena_bytes() - 1];
    assert_eq!(
        m.classify(&[0u8; 144], &mut arena, None).unwrap_err(),
        Error::ArenaTooSmall {
            needed: m.arena_bytes(),
            got: m.arena_bytes() - 1
        }
    );
    let mut arena = vec![0u8; m.arena_bytes() + 10];
    assert!(m.classify(&[0u8; 144], &mut arena, None).is_ok());
    assert_eq!(
        m.classify(&[0u8; 143], &mut arena, None).unwrap_err(),
        Error::InputSize {
            expected: 144,
            got: 143
        }
    );
}

#[test]
fn content_errors_name_the_layer() {
    // Wrong shift in layer 2 (the second conv): valid framing, invalid content.
    let mut spec = small_random_spec(9);
    if let common::Layer::Conv { p, .. } = &mut spec.layers[2] {
        p.shift[3] = 0;
    }
    assert_eq!(
        Model::from_bytes(&spec.to_bytes()).unwrap_err(),
        Error::ParamOutOfRange {
            layer: 2,
            what: "shift"
        }
    );
    // Shape chaining broken at layer 4 (dense input length).
    let mut spec = small_random_spec(9);
    if let common::Layer::Dense { input, .. } = &mut spec.layers[4] {
        *input = 95;
    }
    assert!(matches!(
        Model::from_bytes(&spec.to_bytes()).unwrap_err(),
        Error::ShapeMismatch { layer: 4, .. }
    ));
    // Array length that does not match the shape (head = layer 6).
    let mut spec = small_random_spec(9);
    spec.head_w.pop();
    assert!(matches!(
        Model::from_bytes(&spec.to_bytes()).unwrap_err(),
        Error::ShapeMismatch { layer: 6, .. }
    ));
    // Body bytes after the postcard value.
    let b = valid();
    let mut body = b[12..b.len() - 4].to_vec();
    body.push(0);
    assert!(matches!(
        Model::from_bytes(&reframe(&b, &body)),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn kernel_and_head_errors_name_the_field() {
    use common::{Layer, Spec};
    let shape = |layer: usize, what: &'static str| Error::ShapeMismatch { layer, what };
    let range = |layer: usize, what: &'static str| Error::ParamOutOfRange { layer, what };
    type Edit = fn(&mut Spec);
    fn pop<T>(v: &mut Vec<T>) {
        v.pop();
    }
    fn conv(spec: &mut Spec) -> &mut common::Kernel {
        match &mut spec.layers[2] {
            Layer::Conv { p, .. } => p,
            _ => unreachable!(),
        }
    }
    fn dense(spec: &mut Spec) -> &mut common::Kernel {
        match &mut spec.layers[4] {
            Layer::Dense { p, .. } => p,
            _ => unreachable!(),
        }
    }
    let cases: [(Edit, Error); 14] = [
        (
            |s| pop(&mut conv(s).weights),
            shape(2, "weight array length"),
        ),
        (|s| pop(&mut conv(s).bias), shape(2, "bias array length")),
        (
            |s| pop(&mut conv(s).mult_pos),
            shape(2, "mult_pos array length"),
        ),
        (
            |s| pop(&mut conv(s).mult_neg),
            shape(2, "mult_neg array length"),
        ),
        (|s| pop(&mut conv(s).shift), shape(2, "shift array length")),
        (
            |s| pop(&mut dense(s).offset),
            shape(4, "offset array length"),
        ),
        (|s| conv(s).bias[1] = 1 << 30, range(2, "bias")),
        (|s| dense(s).bias[0] = -(1 << 30), range(4, "bias")),
        (|s| conv(s).shift[0] = 62, range(2, "shift")),
        (|s| dense(s).shift[7] = 0x80, range(4, "shift")),
        (|s| conv(s).offset[5] = (1 << 61) + 1, range(2, "offset")),
        (|s| s.head_mult[4] = -1, range(6, "head multiplier")),
        (
            |s| pop(&mut s.head_mult),
            shape(6, "head multiplier array length"),
        ),
        (|s| s.classes = 17, range(6, "class count")),
    ];
    for (i, (edit, want)) in cases.into_iter().enumerate() {
        let mut spec = small_random_spec(9);
        edit(&mut spec);
        assert_eq!(
            Model::from_bytes(&spec.to_bytes()).unwrap_err(),
            want,
            "case {i}"
        );
    }
    // Extreme values inside the ranges are accepted.
    let mut spec = small_random_spec(9);
    conv(&mut spec).bias[0] = (1 << 30) - 1;
    conv(&mut spec).offset[0] = -(1 << 61);
    conv(&mut spec).shift[0] = 61;
    conv(&mut spec).mult_neg[0] = i32::MIN;
    spec.head_mult[0] = i32::MAX;
    assert!(Model::from_bytes(&spec.to_bytes()).is_ok());
}
