//! Hostile input: well over 100,000 mutated model files. Every one must come back as `Ok` or
//! `Err` without panicking, and every `Ok` model must classify into an arena of exactly
//! `arena_bytes()` without panicking.

mod common;

use common::{reframe, small_random_spec, Rng};
use infer_core::format::{decode_body, encoded_size_bound, ModelBody};
use infer_core::Model;

struct Stats {
    total: usize,
    ok: usize,
}

fn check(bytes: &[u8], rng: &mut Rng, stats: &mut Stats) {
    stats.total += 1;
    let Ok(m) = Model::from_bytes(bytes) else {
        return;
    };
    stats.ok += 1;
    // A mutation may declare a huge (yet consistent) network; only run the affordable ones,
    // and check that the others reject a too-small arena.
    if m.arena_bytes() > (1 << 22) || m.macs() > 20_000_000 {
        let mut small = vec![0u8; 1024];
        assert!(m
            .classify(&vec![0u8; m.input_hw() * m.input_hw()], &mut small, None)
            .is_err());
        return;
    }
    let mut arena = vec![0u8; m.arena_bytes()];
    let n = m.input_hw() * m.input_hw();
    let image: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
    let p = m.classify(&image, &mut arena, None).unwrap();
    assert!(p.class < m.classes());
    assert!(p.cos.iter().all(|c| (-1.0..=1.0).contains(c)));
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn mutate(rng: &mut Rng, v: &mut Vec<u8>) {
    let n = v.len().max(1);
    match rng.below(7) {
        0 => {
            let i = rng.below(n);
            if let Some(b) = v.get_mut(i) {
                *b ^= 1 << rng.below(8);
            }
        }
        1 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(n);
                if let Some(b) = v.get_mut(i) {
                    *b = rng.next_u64() as u8;
                }
            }
        }
        2 => {
            let i = rng.below(v.len() + 1);
            for _ in 0..1 + rng.below(3) {
                v.insert(i, rng.next_u64() as u8);
            }
        }
        3 => {
            let i = rng.below(n);
            let k = (1 + rng.below(4)).min(v.len().saturating_sub(i));
            v.drain(i..i + k);
        }
        4 => {
            // A random "length field": a varint of random magnitude written over the data.
            let bits = rng.below(40);
            let val = rng.next_u64() & ((1u64 << bits) - 1).max(1);
            let enc = varint(val);
            let i = rng.below(n);
            for (k, b) in enc.into_iter().enumerate() {
                if let Some(slot) = v.get_mut(i + k) {
                    *slot = b;
                }
            }
        }
        5 => {
            let keep = rng.below(v.len() + 1);
            v.truncate(keep);
        }
        _ => {
            // Small integer nudge of one byte (shapes, shifts, enum tags).
            let i = rng.below(n);
            if let Some(b) = v.get_mut(i) {
                *b = b.wrapping_add(if rng.below(2) == 0 { 1 } else { 255 });
            }
        }
    }
}

#[test]
fn hundred_thousand_mutations_never_panic() {
    let mut rng = Rng(0xDEC0DE);
    let mut stats = Stats { total: 0, ok: 0 };
    let seeds = [1u64, 2, 3];
    for &seed in &seeds {
        let valid = small_random_spec(seed).to_bytes();
        // Truncation at every length, with and without a fixed-up frame.
        for cut in 0..=valid.len() {
            check(&valid[..cut], &mut rng, &mut stats);
            if cut >= 12 + 4 {
                let body = &valid[12..cut - 4];
                check(&reframe(&valid, body), &mut rng, &mut stats);
            }
        }
        // Random mutations: raw (mostly caught by the CRC) and with length + CRC recomputed,
        // which sends them through postcard decoding and content validation.
        for i in 0..40_000 {
            let fix = i % 4 != 0;
            let mut v = if fix {
                valid[12..valid.len() - 4].to_vec()
            } else {
                valid.clone()
            };
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &mut v);
            }
            let file = if fix { reframe(&valid, &v) } else { v };
            check(&file, &mut rng, &mut stats);
        }
    }
    eprintln!("{} mutated files, {} loaded", stats.total, stats.ok);
    assert!(stats.total >= 100_000);
    assert!(
        stats.ok > 100,
        "the mutations should also produce some valid models"
    );
}

/// A decoded body re-encoded: a canonical form that compares NaN payloads bit for bit.
fn reencode(b: &ModelBody<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; encoded_size_bound(b)];
    let n = postcard::to_slice(b, &mut buf)
        .map(|s| s.len())
        .unwrap_or(0);
    buf.truncate(n);
    buf
}

/// What serde's derived `Deserialize` (postcard) makes of a body, re-encoded, or `None` when
/// it is rejected.
fn postcard_decode(body: &[u8]) -> Option<Vec<u8>> {
    let (parsed, rest) = postcard::take_from_bytes::<ModelBody<'_>>(body).ok()?;
    rest.is_empty().then(|| reencode(&parsed))
}

/// The hand-written body reader (`format::decode_body`) accepts exactly what postcard does,
/// with the same result, on valid bodies and on 200,000 mutated ones.
#[test]
fn body_reader_agrees_with_postcard() {
    let mut rng = Rng(0xB0D1);
    let (mut total, mut ok) = (0usize, 0usize);
    for seed in [1u64, 2, 3, 4] {
        let valid = small_random_spec(seed).to_bytes();
        let body = &valid[12..valid.len() - 4];
        for i in 0..50_000 {
            let mut v = body.to_vec();
            if i > 0 {
                for _ in 0..1 + rng.below(3) {
                    mutate(&mut rng, &mut v);
                }
            }
            let mine = decode_body(&v).ok().map(|b| reencode(&b));
            assert_eq!(mine, postcard_decode(&v), "seed {seed} mutation {i}: {v:?}");
            total += 1;
            ok += usize::from(mine.is_some());
        }
    }
    eprintln!("{total} bodies, {ok} decoded");
    assert!(
        ok > 1000,
        "the mutations should also produce some decodable bodies"
    );
}
