//! Matrix multiplication on strided row-major slices, through ndarray's BLAS backend
//! (OpenBLAS via blas-src).
//!
//! The trainer parallelises over batch chunks with rayon and runs each BLAS call on one thread,
//! so the two thread pools never compete for the cores and results do not depend on the
//! number of threads (see [`use_single_threaded_blas`]).

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

extern "C" {
    fn openblas_set_num_threads(num_threads: std::os::raw::c_int);
}

/// Makes OpenBLAS run every call on the calling thread. Called once at start-up by the
/// trainer; parallelism comes from rayon over independent batch chunks instead.
pub fn use_single_threaded_blas() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: openblas_set_num_threads only stores an integer setting inside OpenBLAS; calling
    // it before any BLAS work (guarded by `Once`) cannot race with a running BLAS call.
    ONCE.call_once(|| unsafe { openblas_set_num_threads(1) });
}

/// A read-only matrix operand: `rows x cols` stored row-major with row stride `ld`, optionally
/// used transposed.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    /// Backing storage.
    pub data: &'a [f32],
    /// Rows as stored.
    pub rows: usize,
    /// Columns as stored.
    pub cols: usize,
    /// Row stride as stored (>= cols).
    pub ld: usize,
    /// Use the transpose of the stored matrix.
    pub trans: bool,
}

impl<'a> Mat<'a> {
    /// A dense row-major matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            ld: cols,
            trans: false,
        }
    }

    /// A row-major matrix whose rows are `ld` apart.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            ld,
            trans: false,
        }
    }

    /// The same matrix, transposed.
    pub fn t(self) -> Self {
        Self {
            trans: !self.trans,
            ..self
        }
    }

    fn view(&self) -> ArrayView2<'a, f32> {
        let len = if self.rows == 0 {
            0
        } else {
            (self.rows - 1) * self.ld + self.cols
        };
        let v = ArrayView2::from_shape(
            (self.rows, self.cols).strides((self.ld, 1)),
            &self.data[..len],
        )
        .expect("matrix operand does not fit its storage");
        if self.trans {
            v.reversed_axes()
        } else {
            v
        }
    }
}

/// `c = alpha * a * b + beta * c`, where `c` is `a.rows' x b.cols'` stored row-major with row
/// stride `ldc`.
pub fn gemm(alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32], ldc: usize) {
    let av = a.view();
    let bv = b.view();
    let (m, n) = (av.nrows(), bv.ncols());
    assert_eq!(av.ncols(), bv.nrows(), "gemm inner dimensions differ");
    let len = if m == 0 { 0 } else { (m - 1) * ldc + n };
    let mut cv = ArrayViewMut2::from_shape((m, n).strides((ldc, 1)), &mut c[..len])
        .expect("gemm output does not fit its storage");
    general_mat_mul(alpha, &av, &bv, beta, &mut cv);
}

/// Like [`gemm`], but writes through a raw pointer so that parallel tasks can each fill their
/// own columns of one shared output matrix (a column block of a row-major matrix is not a
/// contiguous slice, so it cannot be handed out as `&mut [f32]`).
///
/// # Safety
/// `c` must point to a row-major `m x n` block with row stride `ldc` (`m`, `n` the product's
/// shape) that is valid for reads and writes, and no other thread may access those elements
/// during the call.
pub unsafe fn gemm_raw(alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32, c: *mut f32, ldc: usize) {
    let (m, k) = if a.trans {
        (a.cols, a.rows)
    } else {
        (a.rows, a.cols)
    };
    let (kb, n) = if b.trans {
        (b.cols, b.rows)
    } else {
        (b.rows, b.cols)
    };
    assert_eq!(k, kb, "gemm inner dimensions differ");
    assert!(
        a.data.len()
            >= if a.rows == 0 {
                0
            } else {
                (a.rows - 1) * a.ld + a.cols
            }
    );
    assert!(
        b.data.len()
            >= if b.rows == 0 {
                0
            } else {
                (b.rows - 1) * b.ld + b.cols
            }
    );
    if m == 0 || n == 0 {
        return;
    }
    let tr = |t: bool| {
        if t {
            cblas_sys::CblasTrans
        } else {
            cblas_sys::CblasNoTrans
        }
    };
    let int = |v: usize| i32::try_from(v).expect("matrix too large for BLAS");
    cblas_sys::cblas_sgemm(
        cblas_sys::CblasRowMajor,
        tr(a.trans),
        tr(b.trans),
        int(m),
        int(n),
        int(k),
        alpha,
        a.data.as_ptr(),
        int(a.ld.max(1)),
        b.data.as_ptr(),
        int(b.ld.max(1)),
        beta,
        c,
        int(ldc.max(1)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn strided_and_transposed_products_match_naive() {
        let (m, k, n) = (17, 23, 29);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let want = naive(&a, &b, m, k, n);
        // Plain.
        let mut c = vec![0.0; m * n];
        gemm(1.0, Mat::new(&a, m, k), Mat::new(&b, k, n), 0.0, &mut c, n);
        assert_eq!(c, want);
        // Transposed operands stored explicitly.
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut c2 = vec![0.0; m * n];
        gemm(
            1.0,
            Mat::new(&at, k, m).t(),
            Mat::new(&bt, n, k).t(),
            0.0,
            &mut c2,
            n,
        );
        assert_eq!(c2, want);
        // Strided output, accumulating.
        let ldc = n + 5;
        let mut c3 = vec![1.0; m * ldc];
        gemm(
            1.0,
            Mat::new(&a, m, k),
            Mat::new(&b, k, n),
            1.0,
            &mut c3,
            ldc,
        );
        for i in 0..m {
            for j in 0..n {
                assert_eq!(c3[i * ldc + j], want[i * n + j] + 1.0);
            }
        }
    }
}
