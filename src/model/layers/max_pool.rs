//! 2×2 max-pooling with stride 2 (PyTorch's `MaxPool2d(2)`: odd trailing rows/columns dropped).
//!
//! On the CPU the pooling is a custom op whose gradient routes G to each window's first maximal
//! entry (PyTorch's choice) with [`MaxUnpool2`]; that op is linear in G and its adjoint, the gather
//! [`MaxGather2`], is its gradient (and vice versa), so every order of differentiation costs one
//! pass. Elsewhere `reshape((n, c, h/2, 2, w/2, 2)).max(5).max(3)` is used: exact and twice
//! differentiable in candle, unlike `Tensor::max_pool2d`, whose backward hands a unique maximum
//! only 1/4 of its gradient (shared/spec/candle-notes.md).

use super::cpu_op::{CpuFloat, dims4, dispatch1, dispatch2};
use crate::error::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// max over each non-overlapping 2×2 window of `(n, c, h, w)` → `(n, c, ⌊h/2⌋, ⌊w/2⌋)`.
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = max_pool2_hw(h, w);
    if ho == 0 || wo == 0 {
        return Err(Error::BadInput(format!(
            "2×2 max-pool needs an input of at least 2×2, got {h}×{w}"
        )));
    }
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        return Ok(x.contiguous()?.apply_op1(MaxPool2Op)?);
    }
    let x = if h % 2 == 1 || w % 2 == 1 {
        x.narrow(2, 0, 2 * ho)?.narrow(3, 0, 2 * wo)?.contiguous()?
    } else {
        x.contiguous()?
    };
    Ok(x.reshape((n, c, ho, 2, wo, 2))?.max(5)?.max(3)?)
}

/// Output spatial size of [`max_pool2`] for an `h × w` input.
pub fn max_pool2_hw(h: usize, w: usize) -> (usize, usize) {
    (h / 2, w / 2)
}

/// [`MaxUnpool2`] as a differentiable op in G. x enters detached: the routing is locally constant
/// in x (x-derivative 0 almost everywhere), and a detached operand tells candle so — a tracked
/// operand left without a gradient makes candle's backward panic.
pub fn max_unpool2(g: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    g.contiguous()?
        .apply_op2(&x.contiguous()?.detach(), MaxUnpool2)
}

/// [`MaxGather2`] as a differentiable op in U (x enters detached, as in [`max_unpool2`]).
pub fn max_gather2(u: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    u.contiguous()?
        .apply_op2(&x.contiguous()?.detach(), MaxGather2)
}

/// `x (n, c, h, w)` ↦ its 2×2 window maxima.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2Op;

/// (G `(n, c, h/2, w/2)`, x) ↦ `(n, c, h, w)`: each G entry placed at its window's first maximum
/// of x, zeros elsewhere (the gradient of [`MaxPool2Op`] at x).
#[derive(Debug, Clone, Copy)]
pub struct MaxUnpool2;

/// (U `(n, c, h, w)`, x) ↦ `(n, c, h/2, w/2)`: U read at each window's first maximum of x (the
/// adjoint of [`MaxUnpool2`] in G).
#[derive(Debug, Clone, Copy)]
pub struct MaxGather2;

/// Offsets (within one `h × w` plane) of the first maximal entry of every 2×2 window, row-major
/// over windows; NaN counts as maximal, so it propagates like PyTorch's.
fn argmax_plane<T: CpuFloat>(x: &[T], h: usize, w: usize) -> impl Iterator<Item = usize> + '_ {
    let (ho, wo) = max_pool2_hw(h, w);
    (0..ho * wo).map(move |k| {
        let (oy, ox) = (k / wo, k % wo);
        let base = 2 * oy * w + 2 * ox;
        let mut best = base;
        for off in [base + 1, base + w, base + w + 1] {
            #[allow(clippy::eq_op)]
            let (best_is_nan, off_is_nan) = (x[best] != x[best], x[off] != x[off]);
            if !best_is_nan && (off_is_nan || x[off] > x[best]) {
                best = off;
            }
        }
        best
    })
}

/// Calls `f(plane index, x plane)` with the matching output plane, in parallel over planes.
fn per_plane<T: CpuFloat>(
    x: &[T],
    out_len: usize,
    plane_in: usize,
    plane_out: usize,
    f: impl Fn(&[T], &mut [T], usize) + Sync,
) -> Vec<T> {
    let mut out = vec![T::default(); out_len];
    if plane_in == 0 || plane_out == 0 {
        return out;
    }
    out.par_chunks_mut(plane_out)
        .zip(x.par_chunks(plane_in))
        .enumerate()
        .for_each(|(i, (o, xp))| f(xp, o, i));
    out
}

fn pool_kernel<T: CpuFloat>(x: &[T], [n, c, h, w]: [usize; 4]) -> Vec<T> {
    let (ho, wo) = max_pool2_hw(h, w);
    per_plane(x, n * c * ho * wo, h * w, ho * wo, |xp, o, _| {
        for (d, at) in o.iter_mut().zip(argmax_plane(xp, h, w)) {
            *d = xp[at];
        }
    })
}

fn unpool_kernel<T: CpuFloat>(g: &[T], x: &[T], [n, c, h, w]: [usize; 4]) -> Vec<T> {
    let (ho, wo) = max_pool2_hw(h, w);
    per_plane(x, n * c * h * w, h * w, h * w, |xp, o, i| {
        let gp = &g[i * ho * wo..][..ho * wo];
        for (&gv, at) in gp.iter().zip(argmax_plane(xp, h, w)) {
            o[at] = gv;
        }
    })
}

fn gather_kernel<T: CpuFloat>(u: &[T], x: &[T], [n, c, h, w]: [usize; 4]) -> Vec<T> {
    let (ho, wo) = max_pool2_hw(h, w);
    per_plane(x, n * c * ho * wo, h * w, ho * wo, |xp, o, i| {
        let up = &u[i * h * w..][..h * w];
        for (d, at) in o.iter_mut().zip(argmax_plane(xp, h, w)) {
            *d = up[at];
        }
    })
}

fn pooled(d: [usize; 4]) -> [usize; 4] {
    let (ho, wo) = max_pool2_hw(d[2], d[3]);
    [d[0], d[1], ho, wo]
}

impl CustomOp1 for MaxPool2Op {
    fn name(&self) -> &'static str {
        "max-pool-2x2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = dims4(l, "max-pool input")?;
        let out = dispatch1(
            s,
            l,
            "max-pool",
            |x| pool_kernel(x, d),
            |x| pool_kernel(x, d),
        )?;
        Ok((out, Shape::from(pooled(d).to_vec())))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(max_unpool2(grad, x)?))
    }
}

impl CustomOp2 for MaxUnpool2 {
    fn name(&self) -> &'static str {
        "max-unpool-2x2"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = dims4(l2, "max-unpool input")?;
        if l1.shape().dims() != pooled(d) {
            candle_core::bail!("max-unpool: gradient {:?} for input {d:?}", l1.shape());
        }
        let out = dispatch2(
            s1,
            l1,
            s2,
            l2,
            "max-unpool",
            |g, x| Ok(unpool_kernel(g, x, d)),
            |g, x| Ok(unpool_kernel(g, x, d)),
        )?;
        Ok((out, Shape::from(d.to_vec())))
    }

    /// Linear in G (adjoint: the gather); the routing is locally constant in x (gradient 0 a.e.).
    fn bwd(
        &self,
        _g: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dg = max_gather2(grad, x)?;
        Ok((Some(dg), None))
    }
}

impl CustomOp2 for MaxGather2 {
    fn name(&self) -> &'static str {
        "max-gather-2x2"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = dims4(l2, "max-gather input")?;
        if l1.shape().dims() != d {
            candle_core::bail!("max-gather: {:?} for input {d:?}", l1.shape());
        }
        let out = dispatch2(
            s1,
            l1,
            s2,
            l2,
            "max-gather",
            |u, x| Ok(gather_kernel(u, x, d)),
            |u, x| Ok(gather_kernel(u, x, d)),
        )?;
        Ok((out, Shape::from(pooled(d).to_vec())))
    }

    /// Linear in U (adjoint: the unpool); locally constant in x.
    fn bwd(
        &self,
        _u: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let du = max_unpool2(grad, x)?;
        Ok((Some(du), None))
    }
}
