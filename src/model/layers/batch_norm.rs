//! BatchNorm over channels of `(n, c, h, w)` (Ioffe & Szegedy 2015), PyTorch semantics:
//! training normalises with the biased batch variance and updates the running statistics with
//! momentum 0.1 and the unbiased variance; evaluation is the fixed affine map
//! y = γ (x − μ_run) / √(σ²_run + ε) + β.

use super::channel_bias::{ChannelSum, add_channel_bias};
use super::channel_scale::scale_channels;
use crate::error::{Error, Result};
use crate::model::init::Init;
use crate::model::params::{ParamKind, ParamStore};
use candle_core::{DType, Tensor, Var};

/// PyTorch's default ε.
pub const BN_EPS: f64 = 1e-5;
/// PyTorch's default momentum for the running statistics.
pub const BN_MOMENTUM: f64 = 0.1;

/// `nn.BatchNorm2d(c)`: affine γ, β and running mean/variance buffers.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    name: String,
    weight: Var,
    bias: Var,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm2d {
    /// A BatchNorm layer from existing tensors (all of shape `(c)`).
    pub fn new(
        name: impl Into<String>,
        weight: Var,
        bias: Var,
        running_mean: Var,
        running_var: Var,
    ) -> Result<Self> {
        let name = name.into();
        let c = weight.dims();
        if c.len() != 1 || bias.dims() != c || running_mean.dims() != c || running_var.dims() != c {
            return Err(Error::BadInput(format!(
                "{name}: BatchNorm tensors must all have shape [c], got {:?} {:?} {:?} {:?}",
                weight.dims(),
                bias.dims(),
                running_mean.dims(),
                running_var.dims()
            )));
        }
        Ok(Self {
            name,
            weight,
            bias,
            running_mean,
            running_var,
            eps: BN_EPS,
            momentum: BN_MOMENTUM,
        })
    }

    /// Creates `{name}.weight` (γ = 1), `.bias` (β = 0), `.running_mean` (0), `.running_var` (1).
    pub(crate) fn build(store: &mut ParamStore, name: &str, c: usize) -> Result<Self> {
        let mut t = |suffix: &str, v: f64, kind| {
            store.take(&format!("{name}.{suffix}"), &[c], Init::Constant(v), kind)
        };
        let w = t("weight", 1.0, ParamKind::Trainable)?;
        let b = t("bias", 0.0, ParamKind::Trainable)?;
        let rm = t("running_mean", 0.0, ParamKind::Buffer)?;
        let rv = t("running_var", 1.0, ParamKind::Buffer)?;
        Self::new(name, w, b, rm, rv)
    }

    /// The PyTorch-style name prefix (`bn1`, `layer1.0.bn2`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// γ, shape `(c)`.
    pub fn weight(&self) -> &Tensor {
        self.weight.as_tensor()
    }

    /// β, shape `(c)`.
    pub fn bias(&self) -> &Tensor {
        self.bias.as_tensor()
    }

    /// Running mean μ_run, shape `(c)`.
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// Running variance σ²_run, shape `(c)`.
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// ε added to the variance.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Momentum of the running-statistics update.
    pub fn momentum(&self) -> f64 {
        self.momentum
    }

    /// Evaluation mode as a diagonal affine map y = s ⊙ x + t per channel:
    /// s = γ / √(σ²_run + ε), t = β − s μ_run (each of shape `(c)`).
    pub fn eval_scale_shift(&self) -> Result<(Tensor, Tensor)> {
        let s = self
            .weight
            .as_tensor()
            .div(&(self.running_var.as_tensor() + self.eps)?.sqrt()?)?;
        let t = self
            .bias
            .as_tensor()
            .sub(&s.mul(self.running_mean.as_tensor())?)?;
        Ok((s, t))
    }

    /// Normalises `(n, c, h, w)`; in training mode with batch statistics (and updates the running
    /// statistics, detached), otherwise with the running statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.forward_traced(x, train)?.0)
    }

    /// [`Self::forward`], also returning what its input gradient needs ([`BnTrace::input_vjp`]).
    pub fn forward_traced(&self, x: &Tensor, train: bool) -> Result<(Tensor, BnTrace)> {
        let (n, c, h, w) = x.dims4()?;
        if c != self.weight.dims()[0] {
            return Err(Error::BadInput(format!(
                "{}: input has {c} channels, BatchNorm has {}",
                self.name,
                self.weight.dims()[0]
            )));
        }
        if !train {
            let gamma = self.weight.as_tensor().reshape((1, c, 1, 1))?;
            let beta = self.bias.as_tensor().reshape((1, c, 1, 1))?;
            let mean = self.running_mean.as_tensor().reshape((1, c, 1, 1))?;
            let var = self.running_var.as_tensor().reshape((1, c, 1, 1))?;
            let xhat = x
                .broadcast_sub(&mean)?
                .broadcast_div(&(var + self.eps)?.sqrt()?)?;
            let y = xhat.broadcast_mul(&gamma)?.broadcast_add(&beta)?;
            let trace = BnTrace::Eval {
                gamma: self.weight.as_tensor().clone(),
                running_var: self.running_var.as_tensor().clone(),
                eps: self.eps,
            };
            return Ok((y, trace));
        }
        let count = n * h * w;
        if count < 2 {
            return Err(Error::BadInput(format!(
                "{}: BatchNorm in training mode needs more than one value per channel \
                 (batch {n}, {h}×{w})",
                self.name
            )));
        }
        // Per-channel sums and affine maps as single ops (their gradients are per-channel sums
        // too, not candle's strided reductions): y = (x − μ)·(γ/√(σ² + ε)) + β.
        let inv_count = 1.0 / count as f64;
        let mean = (channel_sum(x)? * inv_count)?;
        let centred = add_channel_bias(x, &mean.neg()?)?;
        let var = (channel_sum(&centred.sqr()?)? * inv_count)?;
        let scale = self.weight.as_tensor().div(&(&var + self.eps)?.sqrt()?)?;
        let y = add_channel_bias(&scale_channels(&centred, &scale)?, self.bias.as_tensor())?;

        let m = self.momentum;
        let batch_mean = mean.detach();
        let unbiased = (var.detach() * (count as f64 / (count as f64 - 1.0)))?;
        let new_mean = ((self.running_mean.as_detached_tensor() * (1.0 - m))? + (batch_mean * m)?)?;
        let new_var = ((self.running_var.as_detached_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)?;
        let trace = BnTrace::Train {
            scale,
            centred,
            var,
            eps: self.eps,
            inv_count,
        };
        Ok((y, trace))
    }
}

/// What the input gradient of one BatchNorm forward pass reads. Every tensor is the forward
/// pass's own (not detached), so the input gradient is differentiable in the weights of this and
/// earlier layers, as autograd's is.
#[derive(Debug, Clone)]
pub enum BnTrace {
    /// Evaluation mode: the fixed affine map with scale γ/√(σ²_run + ε).
    Eval {
        gamma: Tensor,
        running_var: Tensor,
        eps: f64,
    },
    /// Training mode: the batch statistics the pass normalised with.
    Train {
        /// s = γ/√(σ²_B + ε), `(c)`.
        scale: Tensor,
        /// x − μ_B, `(n, c, h, w)`.
        centred: Tensor,
        /// σ²_B (biased), `(c)`.
        var: Tensor,
        eps: f64,
        /// 1/(n·h·w).
        inv_count: f64,
    },
}

impl BnTrace {
    /// Jᵀg of the BatchNorm map for g shaped like its output. Evaluation mode: s ⊙ g with
    /// s = γ/√(σ²_run + ε). Training mode, through the batch mean and variance as well (Ioffe &
    /// Szegedy 2015, §3): s ⊙ (g − mean_c g − (x − μ_B) ⊙ mean_c(g ⊙ (x − μ_B)) / (σ²_B + ε)),
    /// the means over the samples and positions of each channel.
    pub fn input_vjp(&self, g: &Tensor) -> Result<Tensor> {
        match self {
            BnTrace::Eval {
                gamma,
                running_var,
                eps,
            } => {
                let scale = gamma.div(&(running_var + *eps)?.sqrt()?)?;
                Ok(scale_channels(g, &scale)?)
            }
            BnTrace::Train {
                scale,
                centred,
                var,
                eps,
                inv_count,
            } => {
                let mean_g = (channel_sum(g)? * *inv_count)?;
                let mean_gc = (channel_sum(&g.mul(centred)?)? * *inv_count)?;
                let coef = mean_gc.div(&(var + *eps)?)?;
                let inner =
                    add_channel_bias(g, &mean_g.neg()?)?.sub(&scale_channels(centred, &coef)?)?;
                Ok(scale_channels(&inner, scale)?)
            }
        }
    }
}

/// Σ over samples and positions per channel of `(n, c, h, w)`: [`ChannelSum`] on the CPU.
fn channel_sum(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(ChannelSum)
    } else {
        x.sum((0, 2, 3))
    }
}
