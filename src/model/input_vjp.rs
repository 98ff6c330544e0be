//! The input gradient Jᵀg of a sequential network written out layer by layer with differentiable
//! ops (Linear: g·W, ReLU: the mask op, conv: its input adjoint, max-pool: the unpool, normalise:
//! g/σ), instead of a full reverse pass. Autograd would also compute every weight gradient and
//! accumulate each one into a zero tensor; the gradient penalty of GReg needs only ∇ₓS, and
//! differentiates it once more, so this halves the first backward. Layers without a rule here
//! (BatchNorm, residual blocks, global pooling) or devices other than the CPU: use autograd.

use super::Model;
use super::layers::{ConvInputAdjoint, Layer, max_unpool2, relu_mask};
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};

/// One forward pass with each layer's input kept: features, logits, and what [`Self::input_vjp`]
/// needs.
pub struct ForwardTrace {
    /// The input of each layer, in order (the first is the model input in the model's dtype).
    inputs: Vec<Tensor>,
    /// Penultimate features `(n, d)`.
    pub features: Tensor,
    /// Logits `(n, K)`.
    pub logits: Tensor,
}

impl Model {
    /// Whether every layer has an explicit input-gradient rule ([`ForwardTrace::input_vjp`]).
    pub fn has_explicit_input_vjp(&self) -> bool {
        self.device().is_cpu()
            && matches!(self.dtype(), DType::F32 | DType::F64)
            && self.layers().iter().all(|l| {
                matches!(
                    l,
                    Layer::Normalize(_)
                        | Layer::Flatten
                        | Layer::Linear(_)
                        | Layer::Conv2d(_)
                        | Layer::Relu
                        | Layer::MaxPool2
                )
            })
    }

    /// [`Classifier::forward_t`], keeping every layer's input.
    pub fn forward_traced(&self, x: &Tensor, train: bool) -> Result<ForwardTrace> {
        let layers = self.layers();
        let Some((last, body)) = layers.split_last() else {
            return Err(Error::Internal("a model without layers".into()));
        };
        self.check_input(x)?;
        let mut h = if x.dtype() == self.dtype() {
            x.clone()
        } else {
            x.to_dtype(self.dtype())?
        };
        let mut inputs = Vec::with_capacity(layers.len());
        for layer in body {
            inputs.push(h.clone());
            h = layer.forward(&h, train)?;
        }
        inputs.push(h.clone());
        let logits = last.forward(&h, train)?;
        Ok(ForwardTrace {
            inputs,
            features: h,
            logits,
        })
    }
}

impl ForwardTrace {
    /// Jᵀg for g `(n, K)` shaped like the logits: the gradient of ⟨logits, g⟩ with respect to the
    /// model input, as a tensor that is itself differentiable (in the weights, in g). Requires
    /// [`Model::has_explicit_input_vjp`].
    pub fn input_vjp(&self, model: &Model, g: &Tensor) -> Result<Tensor> {
        let layers = model.layers();
        if layers.len() != self.inputs.len() || !model.has_explicit_input_vjp() {
            return Err(Error::Internal(
                "input_vjp: the trace does not match a model with explicit rules".into(),
            ));
        }
        let mut g = g.clone();
        for (layer, input) in layers.iter().zip(&self.inputs).rev() {
            g = match layer {
                Layer::Normalize(l) => {
                    let c = l.std().len();
                    let std = Tensor::from_vec(l.std().to_vec(), (1, c, 1, 1), g.device())?
                        .to_dtype(g.dtype())?;
                    g.broadcast_div(&std)?
                }
                Layer::Flatten => g.reshape(input.shape())?,
                Layer::Linear(l) => g.matmul(l.weight())?,
                Layer::Conv2d(l) => {
                    let (_, _, h, w) = input.dims4()?;
                    let op = ConvInputAdjoint {
                        stride: l.stride(),
                        padding: l.padding(),
                        h,
                        w,
                    };
                    g.contiguous()?.apply_op2(&l.weight().contiguous()?, op)?
                }
                Layer::Relu => relu_mask(&g, input)?,
                Layer::MaxPool2 => max_unpool2(&g, input)?,
                other => {
                    return Err(Error::Internal(format!(
                        "input_vjp: no explicit rule for {}",
                        other.kind()
                    )));
                }
            };
        }
        Ok(g)
    }
}
