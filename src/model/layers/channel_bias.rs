//! The convolution bias y + b_c as one op: its gradient in b is a per-channel sum ([`ChannelSum`]),
//! which candle would compute as a strided reduction over dims (0, 2, 3) — the slowest part of a
//! LeNet training step before this op existed. CPU f32/f64; other devices use `broadcast_add`.

use super::cpu_op::{CpuFloat, dims4, dispatch1, dispatch2};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// y + b broadcast over `(n, ·, h, w)` for `y (n, c, h, w)` and `b (c)`.
pub fn add_channel_bias(y: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let cpu_float = y.device().is_cpu() && matches!(y.dtype(), DType::F32 | DType::F64);
    if cpu_float && y.dtype() == b.dtype() {
        y.contiguous()?.apply_op2(&b.contiguous()?, AddChannelBias)
    } else {
        y.broadcast_add(&b.reshape((1, (), 1, 1))?)
    }
}

/// (y `(n, c, h, w)`, b `(c)`) ↦ y + b_c.
#[derive(Debug, Clone, Copy)]
pub struct AddChannelBias;

/// `(n, c, h, w)` ↦ `(c)`: the sum over samples and positions of each channel.
#[derive(Debug, Clone, Copy)]
pub struct ChannelSum;

fn add_kernel<T: CpuFloat>(y: &[T], b: &[T], plane: usize) -> Vec<T> {
    let mut out = y.to_vec();
    if plane > 0 && !b.is_empty() {
        out.par_chunks_mut(plane).enumerate().for_each(|(i, p)| {
            let bc = b[i % b.len()];
            p.iter_mut().for_each(|v| *v += bc);
        });
    }
    out
}

/// Per channel, the planes summed in sample order (deterministic for any thread count).
fn sum_kernel<T: CpuFloat>(g: &[T], [n, c, h, w]: [usize; 4]) -> Vec<T> {
    let plane = h * w;
    (0..c)
        .into_par_iter()
        .map(|ci| {
            let mut acc = T::default();
            for b in 0..n {
                for &v in &g[(b * c + ci) * plane..][..plane] {
                    acc += v;
                }
            }
            acc
        })
        .collect()
}

impl CustomOp2 for AddChannelBias {
    fn name(&self) -> &'static str {
        "add-channel-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = dims4(l1, "channel bias input")?;
        if l2.shape().dims() != [d[1]] {
            candle_core::bail!("channel bias {:?} for input {d:?}", l2.shape());
        }
        let plane = d[2] * d[3];
        let out = dispatch2(
            s1,
            l1,
            s2,
            l2,
            "channel bias",
            |y, b| Ok(add_kernel(y, b, plane)),
            |y, b| Ok(add_kernel(y, b, plane)),
        )?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let db = grad.contiguous()?.apply_op1(ChannelSum)?;
        Ok((Some(grad.clone()), Some(db)))
    }
}

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = dims4(l, "channel sum input")?;
        let out = dispatch1(
            s,
            l,
            "channel sum",
            |g| sum_kernel(g, d),
            |g| sum_kernel(g, d),
        )?;
        Ok((out, Shape::from(d[1])))
    }

    /// The adjoint of a channel sum broadcasts each channel's gradient back over its planes.
    fn bwd(&self, g: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, c, _, _) = g.dims4()?;
        Ok(Some(grad.reshape((1, c, 1, 1))?.broadcast_as(g.shape())?))
    }
}
