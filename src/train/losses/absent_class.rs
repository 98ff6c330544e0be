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

/// DOS's training objective on logits `(n_in + m, K+1)` of an ID batch followed by m outliers
/// (`train_diverse.py` of Jiang et al.): returns (CE of the ID rows over all K+1 outputs against
/// `labels`, β·[`absent_class_ce`] of the outlier rows); the loss is their sum.
pub fn dos_objective(
    logits: &Tensor,
    labels: &Tensor,
    n_in: usize,
    beta: f64,
) -> Result<(Tensor, Tensor)> {
    let (n, _) = logits.dims2()?;
    if n_in == 0 || n_in >= n {
        return Err(Error::BadInput(format!(
            "DOS objective: {n} logit rows must hold n_in = {n_in} ≥ 1 ID rows and at least one outlier"
        )));
    }
    let ce = super::cross_entropy(&logits.narrow(0, 0, n_in)?, labels)?;
    let absent = (absent_class_ce(&logits.narrow(0, n_in, n - n_in)?)? * beta)?;
    Ok((ce, absent))
}
