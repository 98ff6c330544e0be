//! In-place CPU kernels for the evaluation-mode forward pass without autograd
//! ([`super::inference`]): BatchNorm's eval affine map (Ioffe & Szegedy 2015, eq. of Alg. 1 with
//! the running statistics), ReLU, a convolution's channel bias and the residual sum (He et al.
//! 2016, eq. 1), each optionally followed by ReLU, overwriting a buffer the caller owns instead of allocating one per op.
//! Every entry gets the same float operations in the same order as the candle ops they replace
//! (`BatchNorm2d::forward(x, false)`, [`super::relu`], `add_channel_bias`, `y + s`), so results
//! are bit-identical.

use super::cpu_op::CpuFloat;
use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Tensor};
use rayon::prelude::*;

/// Elements per parallel work unit when a plane is small.
const CHUNK: usize = 1 << 15;

/// y = ((x − μ_c) / sd_c) · γ_c + β_c per channel c of `(n, c, h, w)`, sd_c = fl(√fl(σ²_c + ε))
/// computed by candle as before, then max(y, 0) when `relu`; the per-channel values are held in
/// f64 (exact copies of the tensor's f32 or f64 values).
#[derive(Debug, Clone)]
pub struct BnEvalInPlace {
    mean: Vec<f64>,
    sd: Vec<f64>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    relu: bool,
}

fn host(t: &Tensor) -> candle_core::Result<Vec<f64>> {
    t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
}

impl BnEvalInPlace {
    /// The eval map of a BatchNorm with running statistics `mean`, `var`, affine `gamma`, `beta`
    /// (all `(c)`, the dtype of the activations) and `eps`.
    pub fn new(
        mean: &Tensor,
        var: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f64,
        relu: bool,
    ) -> candle_core::Result<Self> {
        // The same candle ops as `BatchNorm2d::forward` in eval mode, so sd is the same value.
        let sd = (var.detach() + eps)?.sqrt()?;
        Ok(Self {
            mean: host(mean)?,
            sd: host(&sd)?,
            gamma: host(gamma)?,
            beta: host(beta)?,
            relu,
        })
    }

    fn run<T: CpuFloat>(&self, v: &mut [T], l: &Layout) -> candle_core::Result<()> {
        let v = contiguous_mut(v, l, "batchnorm eval")?;
        let [_, c, h, w] = match l.shape().dims() {
            &[n, c, h, w] => [n, c, h, w],
            d => candle_core::bail!("batchnorm eval: input must be 4-d, got {d:?}"),
        };
        if c != self.mean.len() {
            candle_core::bail!(
                "batchnorm eval: {c} channels, {} statistics",
                self.mean.len()
            );
        }
        let plane = h * w;
        if plane == 0 || c == 0 {
            return Ok(());
        }
        let zero = T::default();
        v.par_chunks_mut(plane).enumerate().for_each(|(i, p)| {
            let k = i % c;
            let (m, sd) = (T::of_f64(self.mean[k]), T::of_f64(self.sd[k]));
            let (g, b) = (T::of_f64(self.gamma[k]), T::of_f64(self.beta[k]));
            // Two branch-free loops (they vectorise); `y <= 0` is false for NaN, which stays.
            if self.relu {
                for x in p.iter_mut() {
                    let y = (*x - m) / sd * g + b;
                    *x = if y <= zero { zero } else { y };
                }
            } else {
                for x in p.iter_mut() {
                    *x = (*x - m) / sd * g + b;
                }
            }
        });
        Ok(())
    }
}

/// The contiguous part of an in-place operand (an error for strided layouts).
fn contiguous_mut<'a, T>(v: &'a mut [T], l: &Layout, op: &str) -> candle_core::Result<&'a mut [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => candle_core::bail!("{op}: in-place operand must be contiguous"),
    }
}

impl InplaceOp1 for BnEvalInPlace {
    fn name(&self) -> &'static str {
        "batchnorm-eval-in-place"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        match s {
            CpuStorage::F32(v) => self.run(v, l),
            CpuStorage::F64(v) => self.run(v, l),
            _ => candle_core::bail!("batchnorm eval: f32 or f64 only"),
        }
    }
}

/// max(x, 0) in place (`!(x <= 0)` keeps NaN, as [`super::relu`]).
#[derive(Debug, Clone, Copy)]
pub struct ReluInPlace;

fn relu_run<T: CpuFloat>(v: &mut [T], l: &Layout) -> candle_core::Result<()> {
    let v = contiguous_mut(v, l, "relu")?;
    v.par_chunks_mut(CHUNK).for_each(super::relu::relu_in_place);
    Ok(())
}

impl InplaceOp1 for ReluInPlace {
    fn name(&self) -> &'static str {
        "relu-in-place"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        match s {
            CpuStorage::F32(v) => relu_run(v, l),
            CpuStorage::F64(v) => relu_run(v, l),
            _ => candle_core::bail!("relu: f32 or f64 only"),
        }
    }
}

/// y ← y + s (same shape), then max(·, 0) when `relu`: the residual sum of a BasicBlock.
#[derive(Debug, Clone, Copy)]
pub struct AddInPlace {
    pub relu: bool,
}

fn add_run<T: CpuFloat>(
    y: &mut [T],
    ly: &Layout,
    s: &[T],
    ls: &Layout,
    relu: bool,
) -> candle_core::Result<()> {
    if ly.shape() != ls.shape() {
        candle_core::bail!("residual sum: shapes {:?} and {:?}", ly.shape(), ls.shape());
    }
    let y = contiguous_mut(y, ly, "residual sum")?;
    let s = match ls.contiguous_offsets() {
        Some((a, b)) => &s[a..b],
        None => candle_core::bail!("residual sum: the shortcut must be contiguous"),
    };
    let zero = T::default();
    y.par_chunks_mut(CHUNK)
        .zip(s.par_chunks(CHUNK))
        .for_each(|(y, s)| {
            if relu {
                for (y, &s) in y.iter_mut().zip(s) {
                    let v = *y + s;
                    *y = if v <= zero { zero } else { v };
                }
            } else {
                for (y, &s) in y.iter_mut().zip(s) {
                    *y += s;
                }
            }
        });
    Ok(())
}

impl InplaceOp2 for AddInPlace {
    fn name(&self) -> &'static str {
        "add-in-place"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        match (s1, s2) {
            (CpuStorage::F32(y), CpuStorage::F32(s)) => add_run(y, l1, s, l2, self.relu),
            (CpuStorage::F64(y), CpuStorage::F64(s)) => add_run(y, l1, s, l2, self.relu),
            _ => candle_core::bail!("residual sum: f32 or f64 operands of one dtype only"),
        }
    }
}

/// y ← y + b_c per channel c of `(n, c, h, w)` (b of shape `(c)`), then max(·, 0) when `relu`:
/// a convolution's bias, as `add_channel_bias` computes it, on the convolution's own output.
#[derive(Debug, Clone, Copy)]
pub struct ChannelBiasInPlace {
    pub relu: bool,
}

fn channel_bias_run<T: CpuFloat>(
    y: &mut [T],
    ly: &Layout,
    b: &[T],
    lb: &Layout,
    relu: bool,
) -> candle_core::Result<()> {
    let plane = match ly.shape().dims() {
        &[_, c, h, w] if lb.shape().dims() == [c] => h * w,
        d => candle_core::bail!(
            "channel bias: (n, c, h, w) and (c) expected, got {d:?} and {:?}",
            lb.shape().dims()
        ),
    };
    let y = contiguous_mut(y, ly, "channel bias")?;
    let b = match lb.contiguous_offsets() {
        Some((s, e)) => &b[s..e],
        None => candle_core::bail!("channel bias: the bias must be contiguous"),
    };
    if plane == 0 || b.is_empty() {
        return Ok(());
    }
    let zero = T::default();
    y.par_chunks_mut(plane).enumerate().for_each(|(i, p)| {
        let bc = b[i % b.len()];
        if relu {
            for v in p.iter_mut() {
                let s = *v + bc;
                *v = if s <= zero { zero } else { s };
            }
        } else {
            p.iter_mut().for_each(|v| *v += bc);
        }
    });
    Ok(())
}

impl InplaceOp2 for ChannelBiasInPlace {
    fn name(&self) -> &'static str {
        "channel-bias-in-place"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        match (s1, s2) {
            (CpuStorage::F32(y), CpuStorage::F32(b)) => channel_bias_run(y, l1, b, l2, self.relu),
            (CpuStorage::F64(y), CpuStorage::F64(b)) => channel_bias_run(y, l1, b, l2, self.relu),
            _ => candle_core::bail!("channel bias: f32 or f64 operands of one dtype only"),
        }
    }
}
