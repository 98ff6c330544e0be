//! Per-channel scaling y = x ⊙ s_c as one op (the scale of BatchNorm's normalisation, Ioffe &
//! Szegedy 2015, Alg. 1): its gradient in s is a per-channel sum ([`ChannelSum`]) instead of
//! candle's strided reduction over dims (0, 2, 3) for `broadcast_mul`, and its gradient in x is the
//! same scaling, so gradients of every order stay one pass each. CPU f32/f64; other devices use
//! `broadcast_mul`.

use super::channel_bias::ChannelSum;
use super::cpu_op::{CpuFloat, dims4, dispatch2};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// x ⊙ s broadcast over `(n, ·, h, w)` for `x (n, c, h, w)` and `s (c)`.
pub fn scale_channels(x: &Tensor, s: &Tensor) -> candle_core::Result<Tensor> {
    let cpu_float = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64);
    if cpu_float && x.dtype() == s.dtype() {
        x.contiguous()?.apply_op2(&s.contiguous()?, ChannelScale)
    } else {
        x.broadcast_mul(&s.reshape((1, (), 1, 1))?)
    }
}

/// (x `(n, c, h, w)`, s `(c)`) ↦ x ⊙ s_c.
#[derive(Debug, Clone, Copy)]
pub struct ChannelScale;

fn scale_kernel<T: CpuFloat>(x: &[T], s: &[T], plane: usize) -> Vec<T> {
    let mut out = x.to_vec();
    if plane > 0 && !s.is_empty() {
        out.par_chunks_mut(plane).enumerate().for_each(|(i, p)| {
            let sc = s[i % s.len()];
            p.iter_mut().for_each(|v| *v = *v * sc);
        });
    }
    out
}

impl CustomOp2 for ChannelScale {
    fn name(&self) -> &'static str {
        "channel-scale"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = dims4(l1, "channel scale input")?;
        if l2.shape().dims() != [d[1]] {
            candle_core::bail!("channel scale {:?} for input {d:?}", l2.shape());
        }
        let plane = d[2] * d[3];
        let out = dispatch2(
            s1,
            l1,
            s2,
            l2,
            "channel scale",
            |x, s| Ok(scale_kernel(x, s, plane)),
            |x, s| Ok(scale_kernel(x, s, plane)),
        )?;
        Ok((out, l1.shape().clone()))
    }

    /// Bilinear in (x, s): dx = G ⊙ s_c, ds_c = Σ over channel c of G ⊙ x.
    fn bwd(
        &self,
        x: &Tensor,
        s: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = scale_channels(grad, s)?;
        let ds = grad.mul(x)?.contiguous()?.apply_op1(ChannelSum)?;
        Ok((Some(dx), Some(ds)))
    }
}
