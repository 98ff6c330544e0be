//! Outlier Exposure (Hendrycks et al. 2019): cross-entropy of outliers to the uniform posterior,
//! mean_aux [logsumexp(z) − mean_k z_k].

use crate::error::Result;
use candle_core::{D, Tensor};

/// The OE term from auxiliary logits `(m, K)`.
pub fn outlier_exposure(aux_logits: &Tensor) -> Result<Tensor> {
    let lse = aux_logits.log_sum_exp(D::Minus1)?;
    let mean = aux_logits.mean(D::Minus1)?;
    Ok((lse - mean)?.mean_all()?)
}
