//! AVX-512 SGEMM micro-kernels for the convolutions, where the system OpenBLAS leaves a third
//! or more of an AVX-512 core unused and the unfolded (im2col) input costs as much again.
//!
//! Two products, each summing a tile of `C` in registers:
//! - [`gemm_rows`]: `C (m x n, row stride ldc) (+)= A (m x k) * B (k x n)`, each row of `A`
//!   read in place from its own pointer and `B` packed ([`packed_len`]): panels of [`NR`]
//!   columns, each panel `k` rows of `NR` contiguous floats, zero-padded past `n`. Tiles of
//!   [`MR_ROWS`] rows. The convolutions' weight gradient uses it with `B` the transposed
//!   output gradient ([`transpose_strip`]) and `A`'s rows the shifted padded input.
//! - [`shifted_tile`]: [`MR`] output channels x [`SHIFT_NR`] consecutive outputs of an
//!   implicit-GEMM convolution, whose `B` rows are one zero-padded input read at a shift per
//!   kernel tap, so nothing is unfolded.
//!
//! Every element of `C` is summed over `k` in increasing order (in blocks of [`KC`] for
//! [`gemm_rows`]), so it gets the same operations in the same order however the columns are
//! cut into calls, and so on any number of threads.
//!
//! [`enabled`] says whether these kernels are used: on x86-64 CPUs with AVX-512F, unless the
//! environment sets `LSOFTMAX_GEMM=openblas` (to compare the two paths in a benchmark).

/// Output channels per [`shifted_tile`] (one broadcast of a weight each per kernel tap).
pub const MR: usize = 8;
/// Consecutive outputs per [`shifted_tile`]: three 16-float vectors.
pub const SHIFT_NR: usize = 48;
/// Rows per tile of [`gemm_rows`]: 24 accumulator registers of the 32.
pub const MR_ROWS: usize = 12;
/// Columns per tile and per packed panel of `B`: two 16-float vectors.
pub const NR: usize = 32;
/// Steps of `k` summed in registers before a [`gemm_rows`] tile is added to `C`: a `KC x NR`
/// block of `B` (16 KiB) stays in the 48 KiB L1 cache while all row tiles use it.
pub const KC: usize = 128;

/// Whether the AVX-512 path is used on this machine (see the module documentation).
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| {
        let wanted = std::env::var("LSOFTMAX_GEMM").map_or(true, |v| v != "openblas");
        wanted && cpu_has_avx512()
    })
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_avx512() -> bool {
    false
}

/// Floats of a packed `k x n` right operand.
pub fn packed_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * k * NR
}

/// `C += A * B` when `accumulate`, else `C = A * B`, with row `i` of `A` the `k` floats at
/// `a_rows[i]` and `B` packed. `C` is `a_rows.len() x n` at `c` with row stride `ldc`.
///
/// # Safety
/// [`enabled`] must be true. Each `a_rows[i]` must be valid for reads of `k` floats; `c` must
/// be valid for reads and writes of the `m x n` block with row stride `ldc`, and no other
/// thread may access that block during the call.
pub unsafe fn gemm_rows(
    a_rows: &[*const f32],
    n: usize,
    k: usize,
    bp: &[f32],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    assert!(enabled(), "the AVX-512 SGEMM needs a CPU with AVX-512F");
    let m = a_rows.len();
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        bp.len() >= packed_len(k, n),
        "packed right operand too short"
    );
    assert!(ldc >= n, "output row stride shorter than a row");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                std::slice::from_raw_parts_mut(c.add(i * ldc), n).fill(0.0);
            }
        }
        return;
    }
    for j in 0..n.div_ceil(NR) {
        let cols = (n - j * NR).min(NR);
        let panel = bp.as_ptr().add(j * k * NR);
        for k0 in (0..k).step_by(KC) {
            let kl = (k - k0).min(KC);
            for i0 in (0..m).step_by(MR_ROWS) {
                let rows = (m - i0).min(MR_ROWS);
                // Rows of the tile past `rows` repeat the last valid row and are not stored.
                let ar: [*const f32; MR_ROWS] =
                    std::array::from_fn(|i| a_rows[i0 + i.min(rows - 1)].add(k0));
                #[cfg(target_arch = "x86_64")]
                avx512::tile(
                    kl,
                    ar,
                    rows,
                    panel.add(k0 * NR),
                    c.add(i0 * ldc + j * NR),
                    ldc,
                    cols,
                    accumulate || k0 > 0,
                );
            }
        }
    }
}

/// One implicit-GEMM tile: for rows `i < rows` (output channels) and the [`SHIFT_NR`] consecutive
/// output positions `l` from `c[i]`,
/// `c[i][l] += sum_t w[i][t] * input[offsets[t] + l]`, the taps `t` summed in order first.
///
/// # Safety
/// [`enabled`] must be true; each `w[i]` must be readable for `offsets.len()` floats; `input`
/// must be readable at `offsets[t] + l` for every `t` and `l < SHIFT_NR`; each `c[i]` for
/// `i < rows` must be readable and writable for `SHIFT_NR` floats, touched by no other
/// thread.
pub unsafe fn shifted_tile(
    w: [*const f32; MR],
    offsets: &[u32],
    input: *const f32,
    rows: usize,
    c: [*mut f32; MR],
) {
    debug_assert!(enabled() && rows <= MR);
    #[cfg(target_arch = "x86_64")]
    avx512::shifted(w, offsets, input, rows, c);
}

/// Transposes a strip into packed rows: `dst[p * NR + i] = src[i * ld + p]` for `i < n` and
/// `p < len`, and zero for `n <= i < NR`.
pub fn transpose_strip(src: &[f32], ld: usize, n: usize, len: usize, dst: &mut [f32]) {
    assert!(
        enabled() && n <= NR,
        "transpose_strip needs AVX-512F and at most NR rows"
    );
    assert!(
        n == 0 || src.len() >= (n - 1) * ld + len,
        "strip out of bounds"
    );
    assert!(dst.len() >= len * NR, "packed rows too short");
    assert!(
        16 * ld <= i32::MAX as usize,
        "row stride too large to gather"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the asserts above bound every unmasked gather lane and every store.
    unsafe {
        avx512::transpose_strip(src.as_ptr(), ld, n, len, dst.as_mut_ptr());
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// One `rows x cols` tile (`rows <= R`, `cols <= NR`) of `C (+)= A * B` over `k` steps.
    /// Only the first `rows` rows are stored.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; each `ar[i]` must be readable for `k` values, `b` for
    /// `k x NR` floats, `c` readable and writable for `rows` rows of `cols` values at stride
    /// `ldc`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile<const R: usize>(
        k: usize,
        ar: [*const f32; R],
        rows: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        for p in 0..k {
            let b0 = _mm512_loadu_ps(b.add(p * NR));
            let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
            for i in 0..R {
                let av = _mm512_set1_ps(*ar[i].add(p));
                lo[i] = _mm512_fmadd_ps(av, b0, lo[i]);
                hi[i] = _mm512_fmadd_ps(av, b1, hi[i]);
            }
        }
        let m0: __mmask16 = mask(cols.min(16));
        let m1: __mmask16 = mask(cols.saturating_sub(16));
        for i in 0..rows {
            let cr = c.add(i * ldc);
            let (mut v0, mut v1) = (lo[i], hi[i]);
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr.add(16)));
            }
            _mm512_mask_storeu_ps(cr, m0, v0);
            _mm512_mask_storeu_ps(cr.add(16), m1, v1);
        }
    }

    /// See [`super::shifted_tile`].
    ///
    /// # Safety
    /// As [`super::shifted_tile`], and the CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn shifted(
        w: [*const f32; MR],
        offsets: &[u32],
        input: *const f32,
        rows: usize,
        c: [*mut f32; MR],
    ) {
        const V: usize = super::SHIFT_NR / 16;
        let mut acc = [[_mm512_setzero_ps(); V]; MR];
        for (t, &off) in offsets.iter().enumerate() {
            let b = input.add(off as usize);
            let bv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(b.add(16 * v)));
            for i in 0..MR {
                let av = _mm512_set1_ps(*w[i].add(t));
                for v in 0..V {
                    acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
                }
            }
        }
        for (row, &ci) in acc.iter().zip(&c).take(rows) {
            for (v, &a) in row.iter().enumerate() {
                let cr = ci.add(16 * v);
                _mm512_storeu_ps(cr, _mm512_add_ps(a, _mm512_loadu_ps(cr)));
            }
        }
    }

    /// See [`super::transpose_strip`].
    ///
    /// # Safety
    /// As the asserts of [`super::transpose_strip`], and the CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose_strip(
        src: *const f32,
        ld: usize,
        n: usize,
        len: usize,
        dst: *mut f32,
    ) {
        let step = _mm512_set1_epi32(ld as i32);
        let lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        let idx = _mm512_mullo_epi32(lanes, step);
        let (m0, m1) = (mask(n.min(16)), mask(n.saturating_sub(16)));
        let upper = if n > 16 { src.add(16 * ld) } else { src };
        for p in 0..len {
            let lo = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m0, idx, src.add(p));
            let hi = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m1, idx, upper.add(p));
            _mm512_storeu_ps(dst.add(p * NR), lo);
            _mm512_storeu_ps(dst.add(p * NR + 16), hi);
        }
    }

    /// The lowest `n` (at most 16) lanes.
    fn mask(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 - 1000.0) / 500.0)
            .collect()
    }

    /// `B = src^T` packed, through [`transpose_strip`] one panel at a time.
    fn pack(src: &[f32], ld: usize, n: usize, k: usize) -> Vec<f32> {
        let mut bp = vec![f32::NAN; packed_len(k, n)];
        for j in 0..n.div_ceil(NR) {
            let rows = (n - j * NR).min(NR);
            transpose_strip(&src[j * NR * ld..], ld, rows, k, &mut bp[j * k * NR..]);
        }
        bp
    }

    #[test]
    fn row_products_match_naive_on_ragged_shapes() {
        if !enabled() {
            eprintln!("no AVX-512F here: the AVX-512 kernels are not used and not tested");
            return;
        }
        for &(m, k, n) in &[
            (1, 1, 1),
            (12, 9, 32),
            (13, 300, 33),
            (64, 576, 100),
            (25, 5, 70),
            (3, 257, 15),
        ] {
            let lda = k + 3;
            let a = values(m * lda, 1);
            // B^T stored with row stride k + 1.
            let bt = values(n * (k + 1), 2);
            let want = |i: usize, j: usize| -> f64 {
                (0..k)
                    .map(|p| a[i * lda + p] as f64 * bt[j * (k + 1) + p] as f64)
                    .sum()
            };
            let bp = pack(&bt, k + 1, n, k);
            let rows: Vec<*const f32> = (0..m).map(|i| a[i * lda..].as_ptr()).collect();
            let ldc = n + 2;
            let mut c = vec![0.5f32; m * ldc];
            // SAFETY: `c` holds m rows of ldc >= n values, owned by this thread; every row
            // pointer has k readable values.
            unsafe { gemm_rows(&rows, n, k, &bp, c.as_mut_ptr(), ldc, true) };
            let mut c2 = vec![f32::NAN; m * n];
            // SAFETY: as above.
            unsafe { gemm_rows(&rows, n, k, &bp, c2.as_mut_ptr(), n, false) };
            for i in 0..m {
                for j in 0..n {
                    let w = want(i, j);
                    let tol = 1e-4 * (1.0 + w.abs()) * (k as f64).sqrt();
                    let got = c[i * ldc + j] as f64;
                    assert!((got - 0.5 - w).abs() < tol, "{m}x{k}x{n} ({i},{j}): {got}");
                    assert!(
                        (c2[i * n + j] as f64 - w).abs() < tol,
                        "overwrite ({i},{j})"
                    );
                }
                // Columns past n are untouched.
                assert_eq!(&c[i * ldc + n..(i + 1) * ldc], &[0.5, 0.5]);
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_how_columns_are_split() {
        if !enabled() {
            return;
        }
        let (m, k, n) = (16, 600, 96);
        let a = values(m * k, 3);
        let bt = values(n * k, 4);
        let rows: Vec<*const f32> = (0..m).map(|i| a[i * k..].as_ptr()).collect();
        let mut whole = vec![0.0f32; m * n];
        let mut split = vec![0.0f32; m * n];
        // SAFETY: both outputs are m x n, owned here; the split writes disjoint column ranges.
        unsafe {
            gemm_rows(
                &rows,
                n,
                k,
                &pack(&bt, k, n, k),
                whole.as_mut_ptr(),
                n,
                false,
            );
            let left = pack(&bt, k, 40, k);
            gemm_rows(&rows, 40, k, &left, split.as_mut_ptr(), n, false);
            let right = pack(&bt[40 * k..], k, 56, k);
            gemm_rows(&rows, 56, k, &right, split.as_mut_ptr().add(40), n, false);
        }
        assert_eq!(whole, split);
    }

    #[test]
    fn shifted_tiles_match_naive() {
        if !enabled() {
            return;
        }
        const ROW: usize = SHIFT_NR + 9;
        let input = values(4000, 5);
        let offsets: Vec<u32> = (0..50).map(|t| (t * 61 + t % 7) as u32).collect();
        let w = values(MR * offsets.len(), 6);
        for rows in [1, 5, MR] {
            let mut c = values(MR * ROW, 7);
            let before = c.clone();
            let wp = std::array::from_fn(|i| w[i.min(rows - 1) * offsets.len()..].as_ptr());
            let cp = std::array::from_fn(|i| c[i.min(rows - 1) * ROW..].as_mut_ptr());
            // SAFETY: every weight row has offsets.len() values, every offset + SHIFT_NR is
            // inside `input`, every output row has SHIFT_NR writable values.
            unsafe { shifted_tile(wp, &offsets, input[3..].as_ptr(), rows, cp) };
            for i in 0..MR {
                for l in 0..ROW {
                    let got = c[i * ROW + l] as f64;
                    if i >= rows || l >= SHIFT_NR {
                        assert_eq!(c[i * ROW + l], before[i * ROW + l], "untouched ({i},{l})");
                        continue;
                    }
                    let dot: f64 = offsets
                        .iter()
                        .enumerate()
                        .map(|(t, &o)| {
                            w[i * offsets.len() + t] as f64 * input[3 + o as usize + l] as f64
                        })
                        .sum();
                    let want = before[i * ROW + l] as f64 + dot;
                    assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "({i},{l})");
                }
            }
        }
    }

    #[test]
    fn transpose_strip_zeroes_missing_rows() {
        if !enabled() {
            return;
        }
        let src = values(5 * 9, 8);
        let mut dst = vec![f32::NAN; 7 * NR];
        transpose_strip(&src, 9, 5, 7, &mut dst);
        for p in 0..7 {
            for i in 0..NR {
                let want = if i < 5 { src[i * 9 + p] } else { 0.0 };
                assert_eq!(dst[p * NR + i], want);
            }
        }
    }
}
