//! What our CPU custom ops share: the operands' contiguous f32/f64 slices, dtype dispatch, shapes.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout};
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, Neg, Sub, SubAssign};

/// f32 or f64: the element types our CPU kernels (and the GEMM they call) take.
pub trait CpuFloat:
    Copy
    + Default
    + PartialOrd
    + AddAssign
    + SubAssign
    + DivAssign
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    const ONE: Self;
    /// √x in this type.
    fn sqrt(self) -> Self;
    /// `v` rounded to this type (exact for values read from a tensor of this type).
    fn of_f64(v: f64) -> Self;
}
impl CpuFloat for f32 {
    const ONE: Self = 1.0;
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn of_f64(v: f64) -> Self {
        v as f32
    }
}
impl CpuFloat for f64 {
    const ONE: Self = 1.0;
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn of_f64(v: f64) -> Self {
        v
    }
}

pub(crate) fn dims4(layout: &Layout, what: &str) -> candle_core::Result<[usize; 4]> {
    match layout.shape().dims() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        other => candle_core::bail!("{what} must be 4-d, got {other:?}"),
    }
}

fn slice<'a, T>(data: &'a [T], layout: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// Runs `f32_op` or `f64_op` on the two operands' contiguous slices (both f32 or both f64).
pub(crate) fn dispatch2(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    op: &str,
    f32_op: impl FnOnce(&[f32], &[f32]) -> candle_core::Result<Vec<f32>>,
    f64_op: impl FnOnce(&[f64], &[f64]) -> candle_core::Result<Vec<f64>>,
) -> candle_core::Result<CpuStorage> {
    match (s1, s2) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => Ok(CpuStorage::F32(f32_op(
            slice(a, l1, op)?,
            slice(b, l2, op)?,
        )?)),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => Ok(CpuStorage::F64(f64_op(
            slice(a, l1, op)?,
            slice(b, l2, op)?,
        )?)),
        _ => candle_core::bail!(
            "{op}: f32 or f64 operands of one dtype only, got {:?} and {:?}",
            s1.dtype(),
            s2.dtype()
        ),
    }
}

/// Runs `f32_op` or `f64_op` on the operand's contiguous slice.
pub(crate) fn dispatch1(
    s: &CpuStorage,
    l: &Layout,
    op: &str,
    f32_op: impl FnOnce(&[f32]) -> Vec<f32>,
    f64_op: impl FnOnce(&[f64]) -> Vec<f64>,
) -> candle_core::Result<CpuStorage> {
    match s {
        CpuStorage::F32(a) => Ok(CpuStorage::F32(f32_op(slice(a, l, op)?))),
        CpuStorage::F64(a) => Ok(CpuStorage::F64(f64_op(slice(a, l, op)?))),
        _ => candle_core::bail!("{op}: f32 or f64 only, got {:?}", s.dtype()),
    }
}
