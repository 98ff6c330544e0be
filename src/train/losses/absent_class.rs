//! Absent-class loss (DOS, Jiang et al. 2024): outliers are labelled with an extra class K of a
//! (K+1)-way classifier; the term is the cross-entropy of auxiliary logits `(m, K+1)` to class K.

use crate::error::{Error, Result};
use candle_core::Tensor;

/// mean_aux −log softmax(z)[K] for logits with K+1 columns.
pub fn absent_class_ce(aux_logits: &Tensor) -> Result<Tensor> {
    let (m, k1) = aux_logits.dims2()?;
    if k1 < 3 {
        return Err(Error::BadInput(format!(
            "the absent-class loss needs K+1 ≥ 3 outputs (K ≥ 2 classes plus the absent one), got {k1}"
        )));
    }
    let target = Tensor::full((k1 - 1) as u32, m, aux_logits.device())?;
    Ok(candle_nn::loss::cross_entropy(aux_logits, &target)?)
}
