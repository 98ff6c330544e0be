//! Row-major GEMM on strided views (the `gemm` crate's kernel behind a bounds-checked call):
//! what the CPU convolutions and the closed-form dense training step share.

use super::cpu_op::CpuFloat;

/// A strided read-only matrix: entry (r, c) is `data[r·rs + c·cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// The values of a dense row-major matrix (row stride = columns), else `None`.
    pub(crate) fn as_slice(&self) -> Option<&'a [T]> {
        (self.cs == 1 && self.rs == self.cols && self.data.len() >= self.rows * self.cols)
            .then(|| &self.data[..self.rows * self.cols])
    }

    /// A row-major `rows × cols` matrix.
    pub(crate) fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (a view: no copy).
    pub(crate) fn t(self) -> Self {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Whether every entry lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst (m × n, row-major) = [dst +] lhs · rhs`, on rayon's threads when `parallel` (else on the
/// caller's: the convolutions parallelise over samples themselves); the bounds of every operand are
/// checked before the unchecked kernel runs. The threads split the output, never the inner
/// dimension, so the result does not depend on their number.
pub(crate) fn gemm_into<T: CpuFloat>(
    dst: &mut [T],
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    accumulate: bool,
    parallel: bool,
) -> candle_core::Result<()> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k || dst.len() != m * n || !lhs.in_bounds() || !rhs.in_bounds() {
        candle_core::bail!(
            "gemm: shapes do not match ({m}×{k} · {}×{n} into {})",
            rhs.rows,
            dst.len()
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst.fill(T::default());
        }
        return Ok(());
    }
    // SAFETY: every index the kernel touches was checked above: dst is m×n row-major, lhs and rhs
    // are in bounds for their strides; the three buffers do not overlap (one is &mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            if parallel {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            },
        );
    }
    Ok(())
}
