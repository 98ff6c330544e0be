//! Parallel branches on one input whose outputs are concatenated along the channel axis (ONNX
//! `Concat`, axis 1; DenseNet's `torch.cat([x, f(x)], 1)`). An empty branch is the identity.

use super::{Layer, forward_layers};
use crate::error::Result;
use candle_core::Tensor;

/// `[b₁(x), …, b_m(x)]` stacked along channels.
#[derive(Debug, Clone)]
pub struct ConcatBlock {
    pub branches: Vec<Vec<Layer>>,
}

impl ConcatBlock {
    /// Runs every branch on `x` and concatenates the outputs along dimension 1.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let outs = self
            .branches
            .iter()
            .map(|b| forward_layers(b, x, train))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&outs, 1)?)
    }
}
