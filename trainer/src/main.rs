//! The `lsoftmax` command-line tool.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use lsoftmax_trainer::arch::{ArchSpec, PRESETS};
use lsoftmax_trainer::checkpoint::Checkpoint;
use lsoftmax_trainer::lambda::LambdaSchedule;
use lsoftmax_trainer::train::{self, evaluate, RunOptions, TrainConfig, Trainer};

mod cli;
use cli::{
    BenchArgs, BenchInferArgs, ClassifyArgs, Cli, Command, DataArgs, DeviceKind, EvalArgs,
    ExportArgs, FirmwareDigitsArgs, GpuCheckArgs, LambdaKind, PlotArgs, ReportArgs, TrainArgs,
    VisualizeArgs,
};
use infer_core::Threshold;
use lsoftmax_trainer::{deploy, torch_io, viz};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    lsoftmax_trainer::gemm::use_single_threaded_blas();
    if let Some(t) = cli.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .context("setting up the thread pool")?;
    }
    match cli.command {
        Command::FetchData(a) => {
            let dir = data_dir(&a);
            mnist::fetch(&dir).with_context(|| format!("fetching MNIST into {}", dir.display()))?;
            let m = mnist::load_dir(&dir)?;
            println!(
                "MNIST ready in {}: {} training and {} test images",
                dir.display(),
                m.train.len(),
                m.test.len()
            );
            Ok(())
        }
        Command::Train(a) => train_cmd(a),
        Command::Eval(a) => eval_cmd(a),
        Command::Bench(a) => bench_cmd(a),
        Command::BenchInfer(a) => bench_infer_cmd(a),
        Command::Export(a) => export_cmd(a),
        Command::Classify(a) => classify_cmd(a),
        Command::FirmwareDigits(a) => firmware_digits_cmd(a),
        Command::GpuCheck(a) => gpu_check_cmd(a),
        Command::ImportTorch(a) => {
            let ck = torch_io::import_file(&a.safetensors, &a.preset, a.margin, &a.out)?;
            println!(
                "wrote {}: {} network, margin {}, {} tensors",
                a.out.display(),
                ck.config.arch.name,
                ck.config.margin,
                ck.tensors.len()
            );
            Ok(())
        }
        Command::ExportTorch(a) => {
            let net = torch_io::export_file(&a.checkpoint, &a.out)?;
            println!(
                "wrote {}: the seed's {} state_dict (margin {} is not stored in it)",
                a.out.display(),
                if net.spec.name == "paper" {
                    "MNISTNet"
                } else {
                    "MNISTFIG2Net"
                },
                net.head.margin
            );
            Ok(())
        }
        Command::Visualize(a) => visualize_cmd(a),
        Command::Plot(a) => plot_cmd(a),
        Command::Report(a) => report_cmd(a),
    }
}

fn data_dir(a: &DataArgs) -> PathBuf {
    a.data.clone().unwrap_or_else(mnist::default_data_dir)
}

fn load_data(a: &DataArgs) -> Result<mnist::Mnist> {
    let dir = data_dir(a);
    mnist::load_or_fetch(&dir).with_context(|| format!("loading MNIST from {}", dir.display()))
}

fn arch_from(preset: &str, file: Option<&Path>) -> Result<ArchSpec> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let spec: ArchSpec = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid architecture spec", path.display()))?;
            spec.shapes()
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("architecture {}", path.display()))?;
            Ok(spec)
        }
        None => ArchSpec::preset(preset).with_context(|| {
            format!(
                "unknown preset '{preset}'; choose one of {}",
                PRESETS.join(", ")
            )
        }),
    }
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    let init = match &a.init {
        Some(path) => Some(
            Checkpoint::load(path)
                .with_context(|| format!("--init: cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let arch = match &init {
        Some(ck) => ck.config.arch.clone(),
        None => arch_from(&a.preset, a.arch.as_deref())?,
    };
    let dir = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}-m{}", arch.name, a.margin)));
    let mut trainer = if a.resume {
        let path = train::RunPaths::new(&dir).checkpoint;
        let ck = Checkpoint::load(&path)
            .with_context(|| format!("--resume: cannot read {}", path.display()))?;
        let mut t = Trainer::from_checkpoint(ck)?;
        if a.epochs != t.config.epochs {
            eprintln!(
                "resuming with --epochs {} (the run was configured for {})",
                a.epochs, t.config.epochs
            );
            t.config.epochs = a.epochs;
        }
        eprintln!("resuming {} after epoch {}", dir.display(), t.epochs_done);
        t
    } else {
        let lambda = match a.lambda {
            LambdaKind::Seed => LambdaSchedule::Seed {
                start: a.lambda_start,
                decay: a.lambda_decay,
                min: a.lambda_min,
            },
            LambdaKind::Caffe => LambdaSchedule::Caffe {
                base: a.caffe_base,
                gamma: a.caffe_gamma,
                power: a.caffe_power,
                min: a.lambda_min,
            },
        };
        let config = TrainConfig {
            margin: a.margin,
            epochs: a.epochs,
            batch: a.batch,
            lr: a.lr,
            lr_gamma: a.lr_gamma,
            lr_steps: a.lr_steps.clone(),
            momentum: a.momentum,
            weight_decay: a.weight_decay,
            lambda,
            seed: a.seed,
            log_every: a.log_every,
            train_limit: a.train_limit,
            test_limit: a.test_limit,
            ..TrainConfig::seed_recipe(arch, a.margin)
        };
        let ck = train::RunPaths::new(&dir).checkpoint;
        if ck.exists() {
            bail!("{} already holds a checkpoint; pass --resume to continue it or choose another --out", dir.display());
        }
        let mut t = Trainer::new(config)?;
        if let (Some(ck), Some(path)) = (&init, &a.init) {
            t.net
                .load_state(&ck.tensors)
                .map_err(anyhow::Error::msg)
                .with_context(|| {
                    format!("--init: {} does not match its architecture", path.display())
                })?;
            eprintln!("starting from the weights in {}", path.display());
        }
        t
    };
    let data = load_data(&a.data)?;
    select_device(&mut trainer, a.device, &data)?;
    let params = trainer.net.parameter_count();
    eprintln!(
        "training {} (m = {}, {} parameters) for {} epochs, batch {}, lr {}, into {}",
        trainer.config.arch.name,
        trainer.config.margin,
        params,
        trainer.config.epochs,
        trainer.config.batch,
        trainer.config.lr,
        dir.display()
    );
    let opts = RunOptions {
        progress: !a.quiet,
        stop_after: a.stop_after,
        precise_bn: a.precise_bn,
    };
    if let Some(eval) = train::run(&mut trainer, &data, &dir, &opts)? {
        println!(
            "test accuracy after {} epochs: {:.2}% (loss {:.4})",
            trainer.epochs_done, eval.accuracy, eval.loss
        );
    }
    Ok(())
}

/// Moves training to the GPU for `cuda`, and for `auto` when this binary has CUDA and a GPU
/// answers (falling back to the CPU with the reason otherwise).
fn select_device(trainer: &mut Trainer, device: DeviceKind, data: &mnist::Mnist) -> Result<()> {
    #[cfg(feature = "cuda")]
    match device {
        DeviceKind::Cpu => {}
        DeviceKind::Cuda => {
            let info = trainer
                .attach_cuda(data)
                .context("--device cuda: cannot use the GPU (try --device cpu)")?;
            eprintln!("device: {info}");
        }
        DeviceKind::Auto => match trainer.attach_cuda(data) {
            Ok(info) => eprintln!("device: {info}"),
            Err(e) => eprintln!("device: CPU (CUDA unavailable: {e:#})"),
        },
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (trainer, data);
        if device == DeviceKind::Cuda {
            bail!("--device cuda: this lsoftmax was built without CUDA support; rebuild it with `cargo build --release --features cuda` (see docs/cuda.md) or use --device cpu");
        }
    }
    Ok(())
}

fn gpu_check_cmd(a: GpuCheckArgs) -> Result<()> {
    #[cfg(feature = "cuda")]
    {
        let data = load_data(&a.data)?;
        let gemm_batch = a.gemm_bench_batch.unwrap_or(if a.quick { 0 } else { 256 });
        let bench_steps = a.bench_steps.unwrap_or(if a.quick { 0 } else { 50 });
        lsoftmax_trainer::cuda::check::run(&data, bench_steps, gemm_batch, a.quick)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = a;
        bail!("gpu-check: this lsoftmax was built without CUDA support; rebuild it with `cargo build --release --features cuda`")
    }
}

fn threshold(min_cos: Option<f32>, min_gap: Option<f32>) -> Option<Threshold> {
    min_cos
        .map(Threshold::MinCos)
        .or(min_gap.map(Threshold::MinGapDeg))
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    if let Some(path) = &a.model {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let model = deploy::load_model(&bytes, path)?;
        let data = load_data(&a.data)?;
        let th = threshold(a.min_cos, a.min_gap);
        let e = deploy::evaluate_model(&model, &data.test, None, th)?;
        let ips = deploy::model_throughput(&model, &data.test, 2000)?;
        println!(
            "{}: {} bytes, arena {} bytes, {} MACs per digit",
            path.display(),
            bytes.len(),
            model.arena_bytes(),
            model.macs()
        );
        println!("int8 test accuracy {:.2}% ({} images)", e.accuracy, e.count);
        if th.is_some() {
            println!(
                "rejected {} ({:.2}%); accuracy on the accepted digits {:.2}%",
                e.rejected,
                100.0 * e.rejected as f64 / e.count as f64,
                e.accepted_accuracy
            );
        }
        println!(
            "infer-core speed: {ips:.0} images/s on one thread ({:.3} ms per digit)",
            1000.0 / ips
        );
        return Ok(());
    }
    let path = a
        .checkpoint
        .as_ref()
        .expect("clap requires --checkpoint or --model");
    let ck = Checkpoint::load(path)?;
    let epochs = ck.epochs_done;
    let batch = ck.config.batch;
    let t = Trainer::from_checkpoint(ck)?;
    let mut net = t.net;
    let data = load_data(&a.data)?;
    let stats_note = recompute_bn_opt(&mut net, &data.train, a.recompute_bn, batch)?;
    let e = evaluate(&mut net, &data.test, None);
    println!(
        "{} (m = {}) after {} epochs: test accuracy {:.2}% ({} images), loss {:.4}{stats_note}",
        net.spec.name, net.head.margin, epochs, e.accuracy, e.count, e.loss
    );
    println!("confusion matrix (rows: true class, columns: predicted):");
    print!("      ");
    for j in 0..e.confusion.len() {
        print!("{j:>6}");
    }
    println!();
    for (i, row) in e.confusion.iter().enumerate() {
        print!("{i:>6}");
        for v in row {
            print!("{v:>6}");
        }
        println!();
    }
    Ok(())
}

/// `--recompute-bn N` of `eval` and `export`: recomputes `net`'s BatchNorm running statistics
/// from the first `n` training images (nothing for 0) and returns the note to print with the
/// results (empty for 0).
fn recompute_bn_opt(
    net: &mut lsoftmax_trainer::network::Network,
    train_split: &mnist::Split,
    n: usize,
    batch: usize,
) -> Result<String> {
    if n == 0 {
        return Ok(String::new());
    }
    let n = n.min(train_split.len());
    if n < 2 {
        bail!("--recompute-bn needs at least 2 training images, got {n}");
    }
    eprintln!("recomputing the BatchNorm statistics from {n} training images ...");
    let used = train::recompute_bn(net, train_split, n, batch);
    Ok(format!(
        ", BatchNorm statistics recomputed from {n} training images ({used} batches)"
    ))
}

fn export_cmd(a: ExportArgs) -> Result<()> {
    let ck = Checkpoint::load(&a.checkpoint)?;
    let batch = ck.config.batch;
    let mut net = Trainer::from_checkpoint(ck)?.net;
    let data = load_data(&a.data)?;
    let stats_note = recompute_bn_opt(&mut net, &data.train, a.recompute_bn, batch)?;
    let calib = deploy::calibration_images(&data.train, a.calib);
    let q = deploy::export(&net, &calib, a.percentile)?;
    let bytes = q.to_bytes().context("encoding the model")?;
    deploy::write_model(&a.out, &bytes)?;
    let model = deploy::load_model(&bytes, &a.out)?;
    println!(
        "wrote {}: {} bytes, arena {} bytes, {} MACs per digit (calibrated on {} training images{stats_note})",
        a.out.display(),
        bytes.len(),
        model.arena_bytes(),
        model.macs(),
        calib.len()
    );
    if let Some(f) = &a.f32_out {
        let fb = lsoftmax_quantize::save_float(&net.to_float_model())
            .context("encoding the f32 model")?;
        deploy::write_model(f, &fb)?;
        println!("wrote {} (f32): {} bytes", f.display(), fb.len());
    }
    if a.verify > 0 {
        let n = deploy::verify_against_simulation(&q, &bytes, &data.test, a.verify)?;
        println!("infer-core and the integer simulation agree bit for bit on {n} test digits");
    }
    if !a.no_check {
        let f = evaluate(&mut net, &data.test, None);
        let e = deploy::evaluate_model(&model, &data.test, None, None)?;
        println!(
            "test accuracy: f32 checkpoint {:.2}%, int8 model {:.2}% (difference {:+.2} points)",
            f.accuracy,
            e.accuracy,
            e.accuracy - f.accuracy
        );
    }
    Ok(())
}

fn classify_cmd(a: ClassifyArgs) -> Result<()> {
    let bytes = std::fs::read(&a.model).with_context(|| {
        format!(
            "reading model {} (train and `export` one, or pass --model)",
            a.model.display()
        )
    })?;
    let model = deploy::load_model(&bytes, &a.model)?;
    let mut arena = vec![0u8; model.arena_bytes()];
    let th = threshold(a.min_cos, a.min_gap);
    for path in &a.images {
        let png = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let digit = mnist::preprocess::digit_from_png(&png)
            .with_context(|| format!("{}: cannot use this image", path.display()))?;
        let p = model
            .classify(&digit, &mut arena, th)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let verdict = if p.rejected {
            " (unsure: below the threshold)"
        } else {
            ""
        };
        println!("{}: {}{verdict}", path.display(), p.class);
        let cos: Vec<String> = p.cos[..p.classes]
            .iter()
            .enumerate()
            .map(|(j, c)| format!("{j}:{c:+.3}"))
            .collect();
        println!("  cos(theta_j): {}", cos.join(" "));
        println!("  angular gap to the runner-up: {:.2} degrees", p.gap_deg);
    }
    Ok(())
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn bench_cmd(a: BenchArgs) -> Result<()> {
    let arch = arch_from(&a.preset, None)?;
    let data = load_data(&a.data)?;
    println!(
        "bench: training {} (m = {}) on {} threads, real MNIST batches",
        arch.name,
        a.margin,
        rayon::current_num_threads()
    );
    let mut ours = Vec::new();
    for &batch in &a.batch {
        let mut cfg = TrainConfig::seed_recipe(arch.clone(), a.margin);
        cfg.batch = batch;
        let mut t = Trainer::new(cfg)?;
        let order = t.epoch_order(data.train.len(), 0);
        let mut batches = order.chunks(batch);
        let mut run_steps = |t: &mut Trainer, k: usize| -> Result<()> {
            for _ in 0..k {
                let idx = batches
                    .next()
                    .context("ran out of training images; use fewer --steps")?;
                let images: Vec<&[u8]> = idx.iter().map(|&i| data.train.image(i)).collect();
                let labels: Vec<u8> = idx.iter().map(|&i| data.train.label(i)).collect();
                t.step(&images, &labels, 0.01)?;
            }
            Ok(())
        };
        run_steps(&mut t, a.warmup)?;
        t.net.time_layers(a.layers);
        let start = Instant::now();
        run_steps(&mut t, a.steps)?;
        let secs = start.elapsed().as_secs_f64();
        let ips = (a.steps * batch) as f64 / secs;
        let rss = peak_rss().map_or("?".to_string(), |b| {
            format!("{:.0} MiB", b as f64 / (1 << 20) as f64)
        });
        println!("  lsoftmax  batch {batch:>4}: {ips:8.1} images/s ({:.1} ms/step, peak RSS so far {rss})", 1000.0 * secs / a.steps as f64);
        if a.layers {
            print_layer_times(&t.net, batch, secs / a.steps as f64);
        }
        ours.push((batch, ips));
    }
    if a.torch {
        torch_compare(&a, &ours)?;
    }
    Ok(())
}

/// Prints `bench --layers`: per layer, its forward and backward milliseconds per step (and
/// the GFLOP/s of each convolution, forward and backward together), then the totals per kind
/// of layer.
fn print_layer_times(net: &lsoftmax_trainer::network::Network, batch: usize, step_secs: f64) {
    use lsoftmax_trainer::layers::Layer;
    println!(
        "    {:>3} {:<22} {:>14} {:>9} {:>9} {:>9}",
        "#", "layer", "output", "fwd ms", "bwd ms", "GFLOP/s"
    );
    let mut kinds: Vec<(&str, f64, f64)> = Vec::new();
    for (i, (layer, t)) in net.layers.iter().zip(net.layer_times()).enumerate() {
        let passes = f64::from(t.passes.max(1));
        let (fwd, bwd) = (t.forward / passes, t.backward / passes);
        let out = layer.out();
        let (kind, name, flops) = match layer {
            Layer::Conv(c) => {
                let macs = (c.cout * c.cin * c.k * c.k * out.h * out.w * batch) as f64;
                // Forward, weight gradient and (except below the input) input gradient.
                let passes = if i > 0 { 3.0 } else { 2.0 };
                let name = format!("conv {}->{} {}x{} pad {}", c.cin, c.cout, c.k, c.k, c.pad);
                ("conv", name, Some(2.0 * macs * passes))
            }
            Layer::PRelu(_) => ("prelu", "prelu".to_string(), None),
            Layer::BatchNorm(_) => ("batchnorm", "batchnorm".to_string(), None),
            Layer::MaxPool(_) => ("maxpool", "maxpool 2x2".to_string(), None),
            Layer::Flatten(_) => ("flatten", "flatten".to_string(), None),
            Layer::Linear(l) => ("linear", format!("linear {}->{}", l.inp, l.outp), None),
        };
        let shape = format!("{}x{}x{}", out.c, out.h, out.w);
        let rate = flops.map_or(String::new(), |f| format!("{:.0}", f / (fwd + bwd) / 1e9));
        println!(
            "    {i:>3} {name:<22} {shape:>14} {:>9.2} {:>9.2} {rate:>9}",
            fwd * 1e3,
            bwd * 1e3
        );
        match kinds.iter_mut().find(|k| k.0 == kind) {
            Some(k) => {
                k.1 += fwd;
                k.2 += bwd;
            }
            None => kinds.push((kind, fwd, bwd)),
        }
    }
    let mut layers_total = 0.0;
    for (kind, f, b) in &kinds {
        println!(
            "    all {kind:<18} {:>9.1} ms forward {:>9.1} ms backward",
            f * 1e3,
            b * 1e3
        );
        layers_total += f + b;
    }
    println!(
        "    feature layers {:.1} ms of the {:.1} ms step ({:.0} %); head, loss, SGD and batch assembly the rest",
        layers_total * 1e3,
        step_secs * 1e3,
        100.0 * layers_total / step_secs
    );
}

/// Runs a reference benchmark script under PYTHON (default `.cache/venv/bin/python`) and
/// returns its standard output; a failure names the script and shows its standard error.
fn run_reference(script: &str, args: &[String], what: &str) -> Result<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| ".cache/venv/bin/python".to_string());
    let out = std::process::Command::new(&python)
        .arg(script)
        .args(args)
        .output()
        .with_context(|| {
            format!("running {python} {script} (run bench/setup_python.sh first, or set PYTHON)")
        })?;
    if !out.status.success() {
        bail!(
            "the {what} reference failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn torch_compare(a: &BenchArgs, ours: &[(usize, f64)]) -> Result<()> {
    let batches: Vec<String> = a.batch.iter().map(|b| b.to_string()).collect();
    let mut args = vec!["--json".to_string()];
    args.extend(batches);
    args.extend([
        "--steps".into(),
        a.steps.to_string(),
        "--warmup".into(),
        a.warmup.to_string(),
    ]);
    args.extend(["--margin".into(), a.margin.to_string()]);
    let stdout = run_reference("bench/torch_train_bench.py", &args, "PyTorch")?;
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(batch), Some(ips)) = (v["batch"].as_u64(), v["images_per_s"].as_f64()) else {
            continue;
        };
        let mine = ours.iter().find(|(b, _)| *b as u64 == batch).map(|x| x.1);
        let ratio = mine.map_or("n/a".to_string(), |m| format!("{:.2}x", m / ips));
        println!("  pytorch   batch {batch:>4}: {ips:8.1} images/s (torch {}, {} threads) -> lsoftmax / pytorch = {ratio}", v["torch"].as_str().unwrap_or("?"), v["threads"]);
    }
    Ok(())
}

fn bench_infer_cmd(a: BenchInferArgs) -> Result<()> {
    let data = load_data(&a.data)?;
    println!(
        "bench-infer: infer-core, one thread, batch 1, {} MNIST test digits per model",
        a.images
    );
    let mut paper_ms = None;
    for path in &a.model {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let model = deploy::load_model(&bytes, path)?;
        // Warm caches, then time.
        deploy::model_throughput(&model, &data.test, 50)?;
        let ips = deploy::model_throughput(&model, &data.test, a.images)?;
        let ms = 1000.0 / ips;
        println!(
            "  infer-core  {}: {ips:8.1} images/s ({ms:.3} ms/digit; {} MACs, file {} bytes, arena {} bytes; {} at the smallest)",
            path.display(),
            model.macs(),
            bytes.len(),
            model.arena_bytes_fast(),
            model.arena_bytes()
        );
        if model.macs() > 50_000_000 {
            paper_ms = Some(ms);
        }
    }
    if a.onnx {
        let mut args: Vec<String> = ["--json", "--agree-n", "200"].map(String::from).to_vec();
        if let Some(w) = &a.onnx_weights {
            args.extend(["--weights".into(), w.display().to_string()]);
        }
        let stdout = run_reference("bench/onnx_infer_bench.py", &args, "onnxruntime")?;
        for line in stdout.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["batch"].as_u64() != Some(1) {
                continue;
            }
            let (Some(prec), Some(ms)) = (v["precision"].as_str(), v["ms_per_digit"].as_f64())
            else {
                continue;
            };
            let ratio = paper_ms.map_or("n/a (no paper-sized model given)".to_string(), |p| {
                format!("{:.2}x", ms / p)
            });
            println!(
                "  onnxruntime paper {prec}: {:8.1} images/s ({ms:.3} ms/digit, onnxruntime {}) -> infer-core speed-up {ratio}",
                1000.0 / ms,
                v["onnxruntime"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

fn firmware_digits_cmd(a: FirmwareDigitsArgs) -> Result<()> {
    let bytes =
        std::fs::read(&a.model).with_context(|| format!("reading model {}", a.model.display()))?;
    let data = load_data(&a.data)?;
    lsoftmax_trainer::firmware_data::write_firmware_digits(&bytes, &data.test, a.count, &a.out)?;
    println!(
        "wrote {} ({} digits with the host's predictions for {})",
        a.out.display(),
        a.count,
        a.model.display()
    );
    Ok(())
}

fn visualize_cmd(a: VisualizeArgs) -> Result<()> {
    let cfg = viz::fig2::VisualizeConfig {
        margins: a.margins,
        epochs: a.epochs,
        batches: a.batches,
        batch: a.batch,
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        seed: a.seed,
        test_limit: a.test_limit,
        runs_dir: a.runs_dir,
        out: a.out,
        retrain: a.retrain,
        progress: !a.quiet,
    };
    let data = load_data(&a.data)?;
    let start = Instant::now();
    let results = viz::fig2::visualize(&cfg, &data)?;
    println!("{}", viz::fig2::angle_table(&results));
    println!(
        "wrote {} ({} bytes) and {} in {:.0} s",
        cfg.out.display(),
        std::fs::metadata(&cfg.out).map_or(0, |m| m.len()),
        cfg.table_path().display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn plot_cmd(a: PlotArgs) -> Result<()> {
    let logs = viz::logs::read_logs(&a.logs)?;
    let size = viz::curves::plot(&logs, &a.out)?;
    println!(
        "wrote {} ({size} bytes, {} runs)",
        a.out.display(),
        logs.len()
    );
    Ok(())
}

fn report_cmd(a: ReportArgs) -> Result<()> {
    let logs = viz::logs::read_logs(&a.logs)?;
    let table = viz::report::report_markdown(&logs);
    print!("{table}");
    if let Some(out) = &a.out {
        lsoftmax_trainer::checkpoint::write_atomic(out, table.as_bytes())
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
