//! A 64-bit tick counter built on SysTick, and its calibration in executed instructions.
//!
//! SysTick counts down from [`RELOAD`] at the core clock and raises an exception at every
//! wrap; the handler counts wraps in an atomic, and [`Clock::now`] combines that count with
//! the current value. Under QEMU with `-icount shift=0` the virtual clock advances exactly
//! one nanosecond per executed instruction, and QEMU derives SysTick from that virtual clock
//! (netduinoplus2: 168 MHz core clock, so 0.168 ticks per instruction). [`Clock::calibrate`]
//! measures the ratio with a loop of known length instead of trusting the board model's
//! clock, so [`Clock::instructions`] stays right on other boards or QEMU versions.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;

/// SysTick reload value: the full 24-bit range.
const RELOAD: u32 = 0x00FF_FFFF;

/// SysTick wraps since [`Clock::start`].
static WRAPS: AtomicU32 = AtomicU32::new(0);

/// Counts a SysTick wrap.
#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// The running SysTick counter plus its calibration.
pub struct Clock {
    _syst: SYST,
    /// SysTick ticks per 2^20 instructions (fixed point), from [`Clock::calibrate`].
    ticks_per_mi: u64,
}

/// Instructions the calibration loop executes: `asm::delay(n)` runs `n + 1` iterations of
/// `subs; bne`, so the difference between `delay(2n)` and `delay(n)` is exactly `2n`.
const CALIB_N: u32 = 1 << 18;

impl Clock {
    /// Starts SysTick on the core clock with its wrap exception enabled.
    pub fn start(mut syst: SYST) -> Clock {
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        let mut clock = Clock {
            _syst: syst,
            ticks_per_mi: 1 << 20,
        };
        clock.calibrate();
        clock
    }

    /// Ticks since [`Clock::start`]; monotonic.
    pub fn now(&self) -> u64 {
        loop {
            let w1 = WRAPS.load(Ordering::SeqCst);
            let val = SYST::get_current();
            let pending = SCB::is_pendst_pending();
            let w2 = WRAPS.load(Ordering::SeqCst);
            if w1 != w2 {
                continue;
            }
            // The counter runs R, R-1, ..., 1, 0 (the wrap exception fires on reaching 0), then
            // reloads R; after `clear_current` it starts at 0. So `val` is `(R + 1 - elapsed)`
            // modulo `R + 1`. A wrap whose exception has not run yet shows as a pending
            // SysTick with `val` at 0 or just reloaded.
            let wraps = u64::from(w1) + u64::from(pending && (val == 0 || val > RELOAD / 2));
            let within = if val == 0 { 0 } else { RELOAD + 1 - val };
            return wraps * (u64::from(RELOAD) + 1) + u64::from(within);
        }
    }

    /// Measures SysTick ticks per executed instruction with a loop of known length.
    fn calibrate(&mut self) {
        let t0 = self.now();
        cortex_m::asm::delay(CALIB_N);
        let t1 = self.now();
        cortex_m::asm::delay(2 * CALIB_N);
        let t2 = self.now();
        let ticks = (t2 - t1).saturating_sub(t1 - t0);
        // ticks per 2 * CALIB_N instructions -> ticks per 2^20 instructions.
        self.ticks_per_mi = (ticks << 20) / (2 * u64::from(CALIB_N));
        if self.ticks_per_mi == 0 {
            self.ticks_per_mi = 1;
        }
    }

    /// SysTick frequency in Hz if one instruction took one nanosecond (what `-icount shift=0`
    /// makes true), i.e. the core clock QEMU's board model uses for SysTick.
    pub fn systick_hz(&self) -> u64 {
        (self.ticks_per_mi * 1_000_000_000) >> 20
    }

    /// Converts a tick interval into executed instructions (valid under `-icount shift=0`).
    pub fn instructions(&self, ticks: u64) -> u64 {
        (ticks << 20) / self.ticks_per_mi
    }
}
