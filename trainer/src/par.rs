//! Helpers for parallel loops over disjoint parts of one buffer.

/// A raw pointer that may be shared across rayon tasks which write provably disjoint regions.
#[derive(Clone, Copy)]
pub struct SharedMut(*mut f32, usize);

// SAFETY: `SharedMut` is only used through `slice`, whose callers guarantee that concurrently
// used regions never overlap; the pointee is `f32`, which is `Send`.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// Wraps a buffer that parallel tasks will write in disjoint regions.
    pub fn new(buf: &mut [f32]) -> Self {
        Self(buf.as_mut_ptr(), buf.len())
    }

    /// The region `[start, start + len)`.
    ///
    /// # Safety
    /// No two slices alive at the same time may overlap, and the buffer passed to [`new`]
    /// must outlive them and not be accessed otherwise meanwhile.
    ///
    /// [`new`]: Self::new
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.1, "region out of bounds");
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// Splits `n` batch items into chunks for parallel work: each chunk covers about `target_cols`
/// columns of `per_item` values, and there are at least two chunks when `n >= 2`, so both cores
/// have work. The split depends only on the sizes, never on the thread count, which keeps
/// results independent of the machine's parallelism.
pub fn batch_chunks(n: usize, per_item: usize, target_cols: usize) -> Vec<(usize, usize)> {
    if n == 0 {
        return Vec::new();
    }
    let mut size = target_cols.div_ceil(per_item.max(1)).max(1);
    if n >= 2 {
        size = size.min(n.div_ceil(2));
    }
    (0..n)
        .step_by(size)
        .map(|s| (s, (s + size).min(n)))
        .collect()
}
