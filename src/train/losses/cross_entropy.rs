//! Cross-entropy of logits `(n, K)` against class indices `(n,)`, mean over the batch.

use crate::error::Result;
use candle_core::Tensor;

/// mean_i −log softmax(z_i)[y_i] (log-softmax is computed stably; second order is supported).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(logits, labels)?)
}
