//! A general residual connection y = main(x) + shortcut(x) (He et al. 2016, eq. 1; ONNX `Add` of
//! two computed tensors); an empty shortcut is the identity. Unlike [`super::BasicBlock`] no ReLU
//! is implied after the sum: an imported graph states its own.

use super::{Layer, forward_layers};
use crate::error::Result;
use candle_core::Tensor;

/// main(x) + shortcut(x).
#[derive(Debug, Clone)]
pub struct ResidualBlock {
    pub main: Vec<Layer>,
    pub shortcut: Vec<Layer>,
}

impl ResidualBlock {
    /// main(x) + shortcut(x).
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let a = forward_layers(&self.main, x, train)?;
        let b = forward_layers(&self.shortcut, x, train)?;
        Ok((a + b)?)
    }
}
