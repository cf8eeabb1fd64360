//! L-Softmax digit classification on an STM32F405 (Cortex-M4F), run under QEMU.
//!
//! The model file and a set of MNIST test digits with the host's predictions (`digits.bin`)
//! are embedded in flash. The firmware parses the model with `infer-core`, classifies every
//! digit in a static arena, prints one line per digit and a summary over semihosting, and
//! exits with success only if every prediction equals the host's. Executed instructions are
//! measured with SysTick (see `clock` and README.md).
#![no_std]
#![no_main]
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod clock;
mod digits;
mod infer;
mod stack;

use core::panic::PanicInfo;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use static_cell::ConstStaticCell;

use crate::clock::Clock;
use crate::digits::Digits;

/// Sizes computed by `build.rs` from the model and the digits file.
mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

/// The model file (path chosen by `build.rs`, see `LSOFTMAX_FIRMWARE_MODEL`).
static MODEL: &[u8] = include_bytes!(env!("LSOFTMAX_FIRMWARE_MODEL_FILE"));
/// Test digits with the host's predictions (written by `lsoftmax firmware-digits`; path chosen
/// by `build.rs`: `digits.bin` unless `LSOFTMAX_FIRMWARE_DIGITS_FILE` is set).
static DIGITS: &[u8] = include_bytes!(env!("LSOFTMAX_FIRMWARE_DIGITS_PATH"));

/// The inference arena: a zero-initialised static in `.bss` (its size shows in the RAM figures
/// and the stack stays small), handed out once as `&'static mut` without `static mut`.
static ARENA: ConstStaticCell<[u8; config::ARENA_BYTES]> =
    ConstStaticCell::new([0; config::ARENA_BYTES]);

/// Reports a failure over semihosting and makes QEMU exit with a non-zero status.
fn fail(args: core::fmt::Arguments<'_>) -> ! {
    hprintln!("FAIL: {}", args);
    exit(false)
}

/// Ends the QEMU run with success or failure.
fn exit(success: bool) -> ! {
    debug::exit(if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Only reached without a semihosting host (real hardware with no debugger).
    loop {
        cortex_m::asm::bkpt();
    }
}

/// Running statistics of per-digit instruction counts.
struct Stats {
    n: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Stats {
    fn add(&mut self, v: u64) {
        self.n += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn mean(&self) -> u64 {
        self.sum / self.n.max(1)
    }
}

/// `num / den` as a percentage with one decimal, e.g. `(98, 4)` for 98.4 %.
fn percent_tenths(num: u64, den: u64) -> (u64, u64) {
    let t = (num * 1000 + den / 2) / den.max(1);
    (t / 10, t % 10)
}

#[entry]
fn main() -> ! {
    stack::paint();
    let Some(cp) = cortex_m::Peripherals::take() else {
        fail(format_args!("core peripherals already taken"))
    };
    let clock = Clock::start(cp.SYST);
    hprintln!(
        "firmware-demo: model {} bytes, digits file {} bytes, SysTick {} Hz of virtual time (calibrated; -icount shift=0 makes 1 instruction = 1 ns)",
        MODEL.len(),
        DIGITS.len(),
        clock.systick_hz()
    );

    let digits = Digits::parse(DIGITS).unwrap_or_else(|e| fail(format_args!("digits.bin: {}", e)));
    let t0 = clock.now();
    let crc = infer::crc32(MODEL.get(..MODEL.len().saturating_sub(4)).unwrap_or(&[]));
    let t1 = clock.now();
    if crc != digits.model_fingerprint() {
        fail(format_args!(
            "digits.bin was generated for another model (fingerprint {:#010x}, embedded model \
             {:#010x})",
            digits.model_fingerprint(),
            crc
        ));
    }
    // Borrowed from the `Result` rather than moved out of it: `Model` is 2.5 KB, and a second
    // copy would sit in `main`'s stack frame for the whole run.
    let loaded = infer::load(MODEL);
    let model = match &loaded {
        Ok(m) => m,
        Err(e) => fail(format_args!("model: {}", e)),
    };
    let t2 = clock.now();
    let pixels = model.input_hw() * model.input_hw();
    if digits.pixels() != pixels || digits.len() != config::DIGIT_COUNT {
        fail(format_args!("digits.bin does not match the model"));
    }
    hprintln!(
        "model: {} classes, {} features, margin {}, {} MACs/digit, arena {} of {} bytes, \
         Model value {} bytes; instructions: fingerprint check {}, Model::from_bytes {}",
        model.classes(),
        model.features(),
        model.margin(),
        model.macs(),
        model.arena_bytes(),
        config::ARENA_BYTES,
        core::mem::size_of_val(model),
        clock.instructions(t1 - t0),
        clock.instructions(t2 - t1)
    );

    let Some(arena) = ARENA.try_take() else {
        fail(format_args!("arena already taken"))
    };

    let mut same = 0u64;
    let mut correct = 0u64;
    let mut stats = Stats {
        n: 0,
        sum: 0,
        min: u64::MAX,
        max: 0,
    };
    for (i, d) in digits.iter().take(config::DIGIT_LIMIT).enumerate() {
        let start = clock.now();
        let result = infer::classify(model, d.pixels, arena);
        let end = clock.now();
        let p = result.unwrap_or_else(|e| fail(format_args!("digit {}: {}", i, e)));
        stats.add(clock.instructions(end - start));
        let ok = p.class == usize::from(d.expected);
        same += u64::from(ok);
        correct += u64::from(p.class == usize::from(d.label));
        hprintln!(
            "digit {}: predicted {} expected {} label {} {} (test image {})",
            i,
            p.class,
            d.expected,
            d.label,
            if ok { "ok" } else { "MISMATCH" },
            d.index
        );
    }

    let n = stats.n;
    let (acc, acc_t) = percent_tenths(correct, n);
    let mean = stats.mean();
    // Instructions per MAC, two decimals.
    let per_mac = (mean * 100 + model.macs() / 2) / model.macs().max(1);
    // Milliseconds at 168 MHz if every instruction took one cycle (a lower bound), one decimal.
    let ms_tenths = (mean * 10_000 + 84_000_000) / 168_000_000;
    hprintln!(
        "{}/{} predictions equal the host's; accuracy vs labels {}.{}%; instructions per digit \
         mean {} (min {}, max {}), {}.{:02} per MAC; {}.{} ms/digit at 168 MHz if CPI = 1; \
         stack high-water {} of {} bytes{}",
        same,
        n,
        acc,
        acc_t,
        mean,
        stats.min,
        stats.max,
        per_mac / 100,
        per_mac % 100,
        ms_tenths / 10,
        ms_tenths % 10,
        stack::high_water(),
        stack::room(),
        if n < digits.len() as u64 {
            " (LSOFTMAX_FIRMWARE_LIMIT: not all digits of digits.bin were checked)"
        } else {
            ""
        }
    );
    exit(same == n && n > 0)
}

/// Reports the panic over semihosting and exits with a failure status.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    hprintln!("PANIC: {}", info);
    exit(false)
}

/// Reports a hard fault (e.g. a bad memory access) instead of spinning forever.
#[allow(unsafe_code)]
#[cortex_m_rt::exception]
unsafe fn HardFault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
    hprintln!("HARD FAULT at pc {:#010x}", frame.pc());
    exit(false)
}
