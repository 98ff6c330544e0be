//! ReLU with a one-op backward: on the CPU, max(x, 0) is a custom op whose gradient is the mask
//! op G ↦ G ⊙ 1{x > 0} (PyTorch's convention: derivative 0 at 0), itself linear in G with the same
//! mask as its own gradient; so first and second order each cost one pass instead of candle's
//! compare/convert/multiply/accumulate chain. Other devices and dtypes use candle's `relu`.

use super::cpu_op::{CpuFloat, dispatch1, dispatch2};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel work unit.
const CHUNK: usize = 1 << 15;

/// max(x, 0) elementwise (NaN stays NaN).
pub fn relu(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(ReluOp)
    } else {
        x.relu()
    }
}

/// G ⊙ 1{x > 0} as a differentiable op in G. x enters detached: the mask is locally constant in x
/// (x-derivative 0 almost everywhere), and a detached operand tells candle so — a tracked operand
/// left without a gradient makes candle's backward panic.
pub fn relu_mask(g: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    g.contiguous()?
        .apply_op2(&x.contiguous()?.detach(), ReluMask)
}

/// y = max(x, 0).
#[derive(Debug, Clone, Copy)]
pub struct ReluOp;

/// (G, x) ↦ G ⊙ 1{x > 0}: the gradient of [`ReluOp`] at x.
#[derive(Debug, Clone, Copy)]
pub struct ReluMask;

/// max(v, 0) in place (`!(v <= 0)` keeps NaN).
pub(crate) fn relu_in_place<T: CpuFloat>(v: &mut [T]) {
    let zero = T::default();
    // A select, not a branch, so that the loop vectorises; the same values (NaN stays NaN).
    for v in v {
        *v = if *v <= zero { zero } else { *v };
    }
}

/// g ⊙ 1{x > 0} in place: g is zeroed where x is not > 0 (≤ 0 or NaN).
pub(crate) fn mask_in_place<T: CpuFloat>(g: &mut [T], x: &[T]) {
    let zero = T::default();
    for (o, &xv) in g.iter_mut().zip(x) {
        if xv.partial_cmp(&zero) != Some(std::cmp::Ordering::Greater) {
            *o = zero;
        }
    }
}

fn relu_kernel<T: CpuFloat>(x: &[T]) -> Vec<T> {
    let mut y = x.to_vec();
    y.par_chunks_mut(CHUNK).for_each(relu_in_place);
    y
}

fn mask_kernel<T: CpuFloat>(g: &[T], x: &[T]) -> candle_core::Result<Vec<T>> {
    if g.len() != x.len() {
        candle_core::bail!(
            "relu mask: gradient has {} entries, input {}",
            g.len(),
            x.len()
        );
    }
    let mut out = g.to_vec();
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, xs)| mask_in_place(o, xs));
    Ok(out)
}

impl CustomOp1 for ReluOp {
    fn name(&self) -> &'static str {
        "relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = dispatch1(s, l, "relu", relu_kernel, relu_kernel)?;
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(relu_mask(grad, x)?))
    }
}

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "relu-mask"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("relu mask: shapes {:?} and {:?}", l1.shape(), l2.shape());
        }
        let out = dispatch2(s1, l1, s2, l2, "relu mask", mask_kernel, mask_kernel)?;
        Ok((out, l1.shape().clone()))
    }

    /// Linear in G with a mask that is locally constant in x: the G-gradient is the same mask,
    /// the x-gradient is 0 almost everywhere (x arrives detached, see [`relu_mask`]).
    fn bwd(
        &self,
        _g: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dg = relu_mask(grad, x)?;
        Ok((Some(dg), None))
    }
}
