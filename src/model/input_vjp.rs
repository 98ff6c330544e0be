//! The input gradient Jᵀg of a sequential network written out layer by layer with differentiable
//! ops (Linear: g·W, ReLU: the mask op, conv: its input adjoint, max-pool: the unpool, normalise:
//! g/σ, global average pool: g/(h·w) spread over the plane, BatchNorm: its exact input gradient
//! through the batch statistics, residual BasicBlock: main path + shortcut), instead of a full
//! reverse pass. Autograd would also compute every weight gradient and accumulate each one into a
//! zero tensor; the gradient penalty of GReg needs only ∇ₓS, and differentiates it once more, so
//! this halves the first backward and needs no second-order autograd (whose graph keeps every
//! weight gradient's). Layers without a rule here (imported graphs' pooling, padding, concat and
//! general residual blocks) or devices other than the CPU: use autograd.

use super::Model;
use super::layers::{BlockTrace, BnTrace, Layer, max_unpool2, relu_mask};
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};

/// What one layer's input-gradient rule reads from the forward pass.
enum Saved {
    /// The layer's input (every layer but BatchNorm and BasicBlock).
    Input(Tensor),
    /// A BatchNorm pass's statistics.
    BatchNorm(BnTrace),
    /// A BasicBlock pass's inner tensors.
    Block(Box<BlockTrace>),
}

/// One forward pass with what each layer's input gradient needs kept: features, logits, and what
/// [`Self::input_vjp`] needs.
pub struct ForwardTrace {
    /// Per layer, in order (the first is the model input in the model's dtype).
    saved: Vec<Saved>,
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
                        | Layer::GlobalAvgPool
                        | Layer::BatchNorm2d(_)
                        | Layer::BasicBlock(_)
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
        let mut saved = Vec::with_capacity(layers.len());
        for layer in body {
            let (next, s) = match layer {
                Layer::BatchNorm2d(l) => {
                    let (y, t) = l.forward_traced(&h, train)?;
                    (y, Saved::BatchNorm(t))
                }
                Layer::BasicBlock(l) => {
                    let (y, t) = l.forward_traced(&h, train)?;
                    (y, Saved::Block(Box::new(t)))
                }
                _ => (layer.forward(&h, train)?, Saved::Input(h.clone())),
            };
            saved.push(s);
            h = next;
        }
        saved.push(Saved::Input(h.clone()));
        let logits = last.forward(&h, train)?;
        Ok(ForwardTrace {
            saved,
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
        if layers.len() != self.saved.len() || !model.has_explicit_input_vjp() {
            return Err(Error::Internal(
                "input_vjp: the trace does not match a model with explicit rules".into(),
            ));
        }
        let mut g = g.clone();
        for (layer, saved) in layers.iter().zip(&self.saved).rev() {
            g = match (layer, saved) {
                (Layer::BatchNorm2d(_), Saved::BatchNorm(t)) => t.input_vjp(&g)?,
                (Layer::BasicBlock(l), Saved::Block(t)) => t.input_vjp(l, &g)?,
                (_, Saved::Input(input)) => layer_input_vjp(layer, input, &g)?,
                (other, _) => {
                    return Err(Error::Internal(format!(
                        "input_vjp: the trace of a {} layer does not match",
                        other.kind()
                    )));
                }
            };
        }
        Ok(g)
    }
}

/// Jᵀg of a layer whose rule reads only its input.
fn layer_input_vjp(layer: &Layer, input: &Tensor, g: &Tensor) -> Result<Tensor> {
    Ok(match layer {
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
            l.input_vjp(g, h, w)?
        }
        Layer::Relu => relu_mask(g, input)?,
        Layer::MaxPool2 => max_unpool2(g, input)?,
        Layer::GlobalAvgPool => {
            let (n, c, h, w) = input.dims4()?;
            (g / (h * w) as f64)?
                .reshape((n, c, 1, 1))?
                .broadcast_as((n, c, h, w))?
                .contiguous()?
        }
        other => {
            return Err(Error::Internal(format!(
                "input_vjp: no explicit rule for {}",
                other.kind()
            )));
        }
    })
}
