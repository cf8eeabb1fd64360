//! CRC-32 (IEEE 802.3, the zlib / PNG / Ethernet CRC): reflected polynomial `0xEDB88320`,
//! initial value `0xFFFFFFFF`, final XOR `0xFFFFFFFF`. The check value of the ASCII string
//! `"123456789"` is `0xCBF43926`.

/// Reflected generator polynomial of CRC-32/IEEE.
const POLY: u32 = 0xEDB8_8320;

/// The 256-entry byte table, computed at compile time.
const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0usize;
    while n < 256 {
        let mut c = n as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        // `n < 256` by the loop condition and `table` has 256 entries; `get_mut` is not
        // usable in a `const fn` on this MSRV.
        #[allow(clippy::indexing_slicing)]
        {
            table[n] = c;
        }
        n += 1;
    }
    table
}

/// Feeds `bytes` into a running (pre-inverted) CRC state. Start from `0xFFFF_FFFF` and invert
/// the final state to obtain the CRC; [`crc32`] does both.
pub fn crc32_update(mut state: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        let idx = ((state ^ u32::from(b)) & 0xFF) as usize;
        // `idx` is masked to 0..=255 and the table has 256 entries, so `get` always succeeds.
        let t = TABLE.get(idx).copied().unwrap_or(0);
        state = (state >> 8) ^ t;
    }
    state
}

/// CRC-32/IEEE of `bytes` (the same value as zlib's `crc32(0, bytes, len)`).
pub fn crc32(bytes: &[u8]) -> u32 {
    !crc32_update(0xFFFF_FFFF, bytes)
}
