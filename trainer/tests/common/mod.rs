//! Helpers shared by the integration tests.

use lsoftmax_trainer::rng::Rng;
use mnist::Split;

/// Random "digits" whose label is encoded in where the bright square sits: learnable, and no
/// data set needed.
pub fn synthetic(n: usize, seed: u64) -> Split {
    let mut rng = Rng::new(seed);
    let mut images = vec![0u8; n * 784];
    let mut labels = vec![0u8; n];
    for i in 0..n {
        let y = rng.below(10) as usize;
        labels[i] = y as u8;
        let img = &mut images[i * 784..(i + 1) * 784];
        for p in img.iter_mut() {
            *p = rng.below(64) as u8;
        }
        let (r0, c0) = (2 + (y / 5) * 12, 2 + (y % 5) * 5);
        for r in r0..r0 + 8 {
            for c in c0..c0 + 4 {
                img[r * 28 + c] = 255;
            }
        }
    }
    Split {
        images,
        labels,
        rows: 28,
        cols: 28,
    }
}
