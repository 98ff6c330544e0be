//! Fully connected layer y = x Wᵀ + b with PyTorch's weight layout `(out, in)`.

use crate::error::{Error, Result};
use crate::model::init::Init;
use crate::model::params::{ParamKind, ParamStore};
use candle_core::{Tensor, Var};

/// y = x Wᵀ + b for `x` of shape `(n, in)`; W is `(out, in)`, b is `(out)`.
#[derive(Debug, Clone)]
pub struct Linear {
    name: String,
    weight: Var,
    bias: Option<Var>,
}

impl Linear {
    /// A linear layer from existing weights (`bias` of shape `(out)` if present).
    pub fn new(name: impl Into<String>, weight: Var, bias: Option<Var>) -> Result<Self> {
        let name = name.into();
        let (out, _) = weight.dims2().map_err(|_| {
            Error::BadInput(format!(
                "{name}.weight must be 2-d, got {:?}",
                weight.dims()
            ))
        })?;
        if let Some(b) = &bias
            && b.dims() != [out]
        {
            return Err(Error::BadInput(format!(
                "{name}.bias has shape {:?}, expected [{out}]",
                b.dims()
            )));
        }
        Ok(Self { name, weight, bias })
    }

    /// Creates `{name}.weight` and `{name}.bias` with `nn.Linear`'s default initialisation.
    pub(crate) fn build(
        store: &mut ParamStore,
        name: &str,
        inp: usize,
        out: usize,
    ) -> Result<Self> {
        let w = store.take(
            &format!("{name}.weight"),
            &[out, inp],
            Init::KaimingUniformSqrt5 { fan_in: inp },
            ParamKind::Trainable,
        )?;
        let b = store.take(
            &format!("{name}.bias"),
            &[out],
            Init::BiasUniform { fan_in: inp },
            ParamKind::Trainable,
        )?;
        Self::new(name, w, Some(b))
    }

    /// The PyTorch-style name prefix (`fc1`, `linear`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// W, shape `(out, in)`.
    pub fn weight(&self) -> &Tensor {
        self.weight.as_tensor()
    }

    /// b, shape `(out)`, if the layer has a bias.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref().map(|b| b.as_tensor())
    }

    /// Number of input features.
    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Number of output features.
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    /// x Wᵀ + b.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight.t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b.as_tensor())?,
            None => y,
        })
    }
}

/// Adds the bias to one output row in place (y += b, one f32 addition per entry, as the tensor
/// path's broadcast add after the GEMM): the loops that run the GEMM themselves use it.
#[inline]
pub fn add_bias(row: &mut [f32], b: &[f32]) {
    for (v, bi) in row.iter_mut().zip(b) {
        *v += bi;
    }
}
