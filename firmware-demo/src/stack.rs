//! Stack high-water mark by painting: fill the free RAM between the end of the statics and the
//! current stack pointer with a pattern at start-up, and later find the lowest word that no
//! longer holds it.
//!
//! This is the crate's only `unsafe` code: there is no safe way to address memory outside of
//! any Rust object. The painted words lie strictly below the live stack (a margin below the
//! stack pointer of [`paint`]'s own frame) and above every static, so no Rust object is ever
//! aliased; accesses are volatile and word-aligned.
#![allow(unsafe_code)]

use core::ptr::{addr_of, read_volatile, write_volatile};

/// The pattern painted into free RAM.
const PAINT: u32 = 0xC0DE_5AFE;
/// Bytes left unpainted below the stack pointer of [`paint`] (its own callees' frames).
const MARGIN: usize = 256;

extern "C" {
    /// End of the statically allocated RAM (`.data`, `.bss`, `.uninit`), the lowest address
    /// the stack may grow to (defined by cortex-m-rt's `link.x`).
    static _stack_end: u32;
    /// Initial stack pointer, the top of RAM (defined by cortex-m-rt's `link.x`).
    static _stack_start: u32;
}

fn free_start() -> usize {
    // Taking the address of an extern static is safe; it is never read through.
    let end = addr_of!(_stack_end) as usize;
    (end + 3) & !3
}

/// Top of the stack (highest address + 1).
pub fn stack_top() -> usize {
    addr_of!(_stack_start) as usize
}

/// Paints the free RAM below the current stack pointer. Call once, early in `main`.
#[inline(never)]
pub fn paint() {
    let sp = cortex_m::register::msp::read() as usize;
    let end = sp.saturating_sub(MARGIN) & !3;
    let mut p = free_start();
    while p < end {
        // SAFETY: `p` is word-aligned and lies in `[end of .bss, sp - MARGIN)`, RAM that no
        // static and no live stack frame occupies.
        unsafe { write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Bytes of stack used so far: from the top of RAM down to the lowest overwritten word.
pub fn high_water() -> usize {
    let top = stack_top();
    let mut p = free_start();
    while p < top {
        // SAFETY: as in `paint`; words below the stack pointer may be read at any time, and
        // the scan stops at the first word that is not the pattern, which is at or below
        // the deepest stack use.
        if unsafe { read_volatile(p as *const u32) } != PAINT {
            break;
        }
        p += 4;
    }
    top - p
}

/// Bytes of RAM between the end of the statics and the top of RAM (the room for the stack).
pub fn room() -> usize {
    stack_top() - free_start()
}
