//! Build script of the firmware demo.
//!
//! * Finds the model file: `$LSOFTMAX_FIRMWARE_MODEL` if set (a relative path is taken
//!   relative to this `firmware-demo/` folder), else `../models/paper-m4.lsq8`.
//! * Finds the digits file (the test vectors, written by `lsoftmax firmware-digits`):
//!   `$LSOFTMAX_FIRMWARE_DIGITS_FILE` if set (relative to this folder), else `digits.bin`.
//! * Validates both on the host: the model with `infer_core::Model::from_bytes`, the digits
//!   file's header, its size and the fingerprint of the model it was generated with (CRC-32
//!   of the model file without its 4-byte CRC trailer).
//! * Checks the flash and RAM budgets of the STM32F405 before the linker would fail with a
//!   less helpful message.
//! * `$LSOFTMAX_FIRMWARE_LIMIT`, if set, limits the run to the first N digits (quick runs
//!   and profiling; the summary then says how many of the file's digits were checked).
//! * Hands the results to the firmware: the model path (`LSOFTMAX_FIRMWARE_MODEL_FILE`, for
//!   `include_bytes!`), the digits path (`LSOFTMAX_FIRMWARE_DIGITS_PATH`) and
//!   `$OUT_DIR/config.rs` (arena size, digit count).
//!
//! Every failure prints what to run to fix it and exits with status 1.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Model used when `LSOFTMAX_FIRMWARE_MODEL` is not set (relative to this folder).
const DEFAULT_MODEL: &str = "../models/paper-m4.lsq8";
/// Environment variable naming another model file.
const MODEL_ENV: &str = "LSOFTMAX_FIRMWARE_MODEL";
/// Environment variable limiting how many digits the firmware classifies (default: all).
const LIMIT_ENV: &str = "LSOFTMAX_FIRMWARE_LIMIT";
/// The digits file, relative to this folder.
const DIGITS_FILE: &str = "digits.bin";
/// Environment variable naming another digits file (for trying other models).
const DIGITS_ENV: &str = "LSOFTMAX_FIRMWARE_DIGITS_FILE";
/// Total flash of the STM32F405.
const FLASH_BYTES: usize = 1024 * 1024;
/// Flash kept for code, vector table and constants other than the model and the digits.
const CODE_RESERVE: usize = 48 * 1024;
/// Largest arena the firmware may reserve (RAM goal: arena + stack + rest <= 112 KiB).
const ARENA_BUDGET: usize = 100 * 1000;
/// Magic bytes and version of the digits file (see `trainer/src/firmware_data.rs`).
const DIGITS_MAGIC: &[u8; 4] = b"LSFD";
const DIGITS_VERSION: u16 = 1;
/// Header and per-record prefix lengths of the digits file.
const DIGITS_HEADER: usize = 16;
const RECORD_PREFIX: usize = 6;

/// Prints `msg` as the reason of a failed build and exits.
fn fail(msg: &str) -> ! {
    eprintln!("\nerror: firmware-demo build failed\n\n{msg}\n");
    std::process::exit(1);
}

/// The commands that produce the default model, for error messages.
fn model_commands() -> String {
    "From the repository root, train and export the default model:\n\
     \x20   cargo run --release -p lsoftmax-trainer -- train --preset paper --margin 4\n\
     \x20   cargo run --release -p lsoftmax-trainer -- export --checkpoint runs/paper-m4/checkpoint.bin --out models/paper-m4.lsq8\n\
     or build against another model file:\n\
     \x20   LSOFTMAX_FIRMWARE_MODEL=/absolute/path/model.lsq8 bash scripts/firmware.sh"
        .to_string()
}

/// The command that (re)generates the digits file for `model`, for error messages.
fn digits_command(model: &Path, count: usize, out: &Path) -> String {
    format!(
        "From the repository root, (re)generate it with:\n\
         \x20   cargo run --release -p lsoftmax-trainer -- firmware-digits --model {} --count {count} --out {}",
        model.display(),
        out.display()
    )
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    println!("cargo:rerun-if-env-changed={MODEL_ENV}");
    println!("cargo:rerun-if-env-changed={LIMIT_ENV}");
    println!("cargo:rerun-if-env-changed={DIGITS_ENV}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=memory.x");

    // cortex-m-rt's link.x includes memory.x from the linker search path.
    let memory_x = std::fs::read(manifest.join("memory.x")).expect("memory.x is in the crate");
    std::fs::write(out.join("memory.x"), memory_x).expect("writing OUT_DIR/memory.x");
    println!("cargo:rustc-link-search={}", out.display());

    let model_path = match std::env::var_os(MODEL_ENV) {
        Some(p) if !p.is_empty() => manifest.join(p),
        _ => manifest.join(DEFAULT_MODEL),
    };
    // Shown in messages as typed from the repository root (`models/paper-m4.lsq8`) when the
    // model lies under it, else as given.
    let model_shown = model_path
        .strip_prefix(manifest.join(".."))
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| model_path.clone());
    println!("cargo:rerun-if-changed={}", model_path.display());
    let (digits_path, digits_out) = match std::env::var_os(DIGITS_ENV) {
        Some(p) if !p.is_empty() => (manifest.join(&p), PathBuf::from(p)),
        _ => (
            manifest.join(DIGITS_FILE),
            Path::new("firmware-demo").join(DIGITS_FILE),
        ),
    };
    println!("cargo:rerun-if-changed={}", digits_path.display());

    let model_bytes = match std::fs::read(&model_path) {
        Ok(b) => b,
        Err(e) => fail(&format!(
            "The model file {} cannot be read ({e}).\n\n{}",
            model_path.display(),
            model_commands()
        )),
    };
    let model = match infer_core::Model::from_bytes(&model_bytes) {
        Ok(m) => m,
        Err(e) => fail(&format!(
            "The model file {} is not a valid infer-core model: {e}.\n\n{}",
            model_path.display(),
            model_commands()
        )),
    };
    let pixels = model.input_hw() * model.input_hw();

    let digits = match std::fs::read(&digits_path) {
        Ok(b) => b,
        Err(e) => fail(&format!(
            "The digits file {} cannot be read ({e}).\n\n{}",
            digits_path.display(),
            digits_command(&model_shown, 128, &digits_out)
        )),
    };
    let regenerate = |why: String, count: usize| -> ! {
        fail(&format!(
            "The digits file {} {why}.\n\n{}",
            digits_path.display(),
            digits_command(&model_shown, count, &digits_out)
        ))
    };
    if digits.len() < DIGITS_HEADER
        || &digits[..4] != DIGITS_MAGIC
        || le_u16(&digits, 4) != DIGITS_VERSION
    {
        regenerate("is not a version-1 firmware digits file".into(), 128);
    }
    let file_pixels = usize::from(le_u16(&digits, 6));
    let count = le_u32(&digits, 8) as usize;
    let count_hint = count.clamp(1, 10_000);
    if file_pixels != pixels {
        regenerate(
            format!("holds {file_pixels}-pixel digits but the model expects {pixels}"),
            count_hint,
        );
    }
    if count == 0 || digits.len() != DIGITS_HEADER + count * (RECORD_PREFIX + pixels) {
        regenerate(
            "is truncated or its length does not match its header".into(),
            count_hint,
        );
    }
    // Fingerprint: CRC-32 of the model file without its last 4 bytes (its own CRC trailer).
    let crc = infer_core::crc32(&model_bytes[..model_bytes.len().saturating_sub(4)]);
    if le_u32(&digits, 12) != crc {
        regenerate(
            format!(
                "was generated for another model (model fingerprint {:#010x}, {} has {crc:#010x})",
                le_u32(&digits, 12),
                model_path.display()
            ),
            count,
        );
    }

    let flash_need = model_bytes.len() + digits.len() + CODE_RESERVE;
    if flash_need > FLASH_BYTES {
        let room = FLASH_BYTES.saturating_sub(model_bytes.len() + CODE_RESERVE + DIGITS_HEADER);
        let fits = room / (RECORD_PREFIX + pixels);
        if fits == 0 {
            fail(&format!(
                "The model ({} bytes) leaves no room in the 1 MiB flash for code and digits; \
                 use a smaller model (LSOFTMAX_FIRMWARE_MODEL=...).",
                model_bytes.len()
            ));
        }
        regenerate(
            format!(
                "({} bytes) and the model ({} bytes) do not fit in 1 MiB of flash with {} KiB \
                 for code; at most {fits} digits fit",
                digits.len(),
                model_bytes.len(),
                CODE_RESERVE / 1024
            ),
            fits,
        );
    }
    // Convolutions other than 3x3 run one channel at a time unless infer-core's packed
    // kernel is linked (the `packed-conv` feature): say so rather than leave them ~3x slow.
    let other_kernels = model
        .body()
        .header
        .arch
        .as_slice()
        .iter()
        .any(|d| matches!(d, infer_core::format::LayerDesc::Conv { k, .. } if *k != 3));
    if other_kernels && std::env::var_os("CARGO_FEATURE_PACKED_CONV").is_none() {
        println!(
            "cargo:warning=the model {} has convolutions other than 3x3; they run one channel \
             at a time (about 3x slower). Build with `--features packed-conv` \
             (FIRMWARE_FEATURES=packed-conv bash scripts/firmware.sh) for the packed kernel.",
            model_path.display()
        );
    }
    let arena = model.arena_bytes();
    if arena > ARENA_BUDGET {
        fail(&format!(
            "The model {} needs a {arena}-byte arena; the RAM budget allows {ARENA_BUDGET} bytes \
             (128 KiB SRAM, goal <= 112 KiB with the stack). Use a smaller model \
             (LSOFTMAX_FIRMWARE_MODEL=...).",
            model_path.display()
        ));
    }

    let canonical = model_path.canonicalize().unwrap_or(model_path.clone());
    println!(
        "cargo:rustc-env=LSOFTMAX_FIRMWARE_MODEL_FILE={}",
        canonical.display()
    );
    let canonical = digits_path.canonicalize().unwrap_or(digits_path.clone());
    println!(
        "cargo:rustc-env=LSOFTMAX_FIRMWARE_DIGITS_PATH={}",
        canonical.display()
    );
    let mut cfg = String::new();
    writeln!(
        cfg,
        "/// Bytes of the static inference arena (the model's `arena_bytes()`, rounded up to 8)."
    )
    .ok();
    writeln!(
        cfg,
        "pub const ARENA_BYTES: usize = {};",
        arena.div_ceil(8) * 8
    )
    .ok();
    writeln!(cfg, "/// Number of digits in `digits.bin`.").ok();
    writeln!(cfg, "pub const DIGIT_COUNT: usize = {count};").ok();
    let limit = match std::env::var(LIMIT_ENV) {
        Ok(v) if !v.is_empty() => match v.parse::<usize>() {
            Ok(n) if n > 0 => n.min(count),
            _ => fail(&format!(
                "{LIMIT_ENV}={v} is not a positive number of digits; unset it to classify all {count}."
            )),
        },
        _ => count,
    };
    writeln!(
        cfg,
        "/// Digits the firmware classifies (the first ones; `{LIMIT_ENV}`, default all)."
    )
    .ok();
    writeln!(cfg, "pub const DIGIT_LIMIT: usize = {limit};").ok();
    std::fs::write(out.join("config.rs"), cfg).expect("writing OUT_DIR/config.rs");
}
