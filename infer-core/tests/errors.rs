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
    // Window scratch 3*3*4 (second conv) + conv1's 144 in + 576 out (the pool pair ties).
    assert_eq!(m.arena_bytes(), 36 + 12 * 12 + 12 * 12 * 4);
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
