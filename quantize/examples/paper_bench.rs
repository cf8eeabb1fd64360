//! Sizes and single-thread speed of a random `paper`-shaped model (or `fig2`/`tiny`):
//!
//! ```text
//! cargo run --release -p lsoftmax-quantize --example paper_bench [paper|fig2|tiny|mixed] [iterations]
//! ```
//!
//! Builds a random float model, quantizes it on synthetic images, writes nothing, and prints
//! the model file size, the arena sizes, the MAC count and the time per `classify` call
//! (one thread) with the smallest arena (`arena_bytes`: in-place convolutions a few rows at a
//! time) and with `arena_bytes_fast` (one kernel call per layer). It also cross-checks a few
//! images against the independent simulation, with both arenas.

use std::time::Instant;

use infer_core::Model;
use lsoftmax_quantize::synth::{random_model, synthetic_digit, Arch, Rng};
use lsoftmax_quantize::{quantize, save_float, simulate, QuantOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let arch = match args.next().as_deref() {
        None | Some("paper") => Arch::Paper,
        Some("fig2") => Arch::Fig2,
        Some("tiny") => Arch::Tiny,
        Some("mixed") => Arch::Mixed,
        Some(other) => return Err(format!("unknown architecture {other}").into()),
    };
    let iters: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200);
    let t0 = Instant::now();
    let float = random_model(arch, 2016);
    let mut rng = Rng::new(7);
    let calib: Vec<[u8; 784]> = (0..16).map(|_| synthetic_digit(&mut rng)).collect();
    let q = quantize(&float, &calib, QuantOptions::default())?;
    let bytes = q.to_bytes()?;
    let model = Model::from_bytes(&bytes)?;
    println!("architecture      {arch:?}");
    println!("build+quantize    {:.2} s", t0.elapsed().as_secs_f64());
    println!("int8 model file   {} bytes", bytes.len());
    println!("f32 model file    {} bytes", save_float(&float)?.len());
    println!(
        "arena             {} bytes (fast: {} bytes)",
        model.arena_bytes(),
        model.arena_bytes_fast()
    );
    println!("MACs per image    {}", model.macs());

    let images: Vec<[u8; 784]> = (0..32).map(|_| synthetic_digit(&mut rng)).collect();
    let mut checksum = 0usize;
    for (name, size) in [
        ("smallest arena", model.arena_bytes()),
        ("fast arena", model.arena_bytes_fast()),
    ] {
        let mut arena = vec![0u8; size];
        for img in images.iter().take(4) {
            let p = model.classify(img, &mut arena, None)?;
            let s = simulate(&q, img)?;
            assert_eq!((p.class, &p.dots[..p.classes]), (s.class, &s.dots[..]));
        }
        // Warm up, then time single calls.
        for img in &images {
            model.classify(img, &mut arena, None)?;
        }
        let mut times = Vec::with_capacity(iters);
        for i in 0..iters {
            let img = &images[i % images.len()];
            let t = Instant::now();
            let p = model.classify(img, &mut arena, None)?;
            times.push(t.elapsed().as_secs_f64());
            checksum += p.class;
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        println!(
            "{name:<17} {size} bytes: classify median {:.3} ms, mean {:.3} ms, min {:.3} ms over {iters} calls (1 thread), {:.1} GMAC/s (median); 4 images agree with the simulation",
            median * 1e3,
            mean * 1e3,
            times[0] * 1e3,
            model.macs() as f64 / median / 1e9
        );
    }
    println!("(checksum {checksum})");
    Ok(())
}
