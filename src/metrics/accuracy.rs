//! Classification accuracy on the in-distribution test set (argmax of the logits vs labels).

use crate::error::{Error, Result};

/// Index of the largest logit (the first one on a tie, as `torch.argmax`/`np.argmax`).
///
/// Assumes a non-empty, NaN-free row (checked by [`id_accuracy`]).
fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (k, &z) in row.iter().enumerate().skip(1) {
        if z > row[best] {
            best = k;
        }
    }
    best
}

/// Share of samples whose argmax logit equals the label. `logits` is row-major
/// [labels.len(), num_classes]. Errors on a shape mismatch, an empty set, a NaN logit or a
/// label outside 0..num_classes (including the unlabelled marker -1).
pub fn id_accuracy<T: Copy + Into<f64>>(
    logits: &[T],
    num_classes: usize,
    labels: &[i64],
) -> Result<f64> {
    if num_classes == 0 || labels.is_empty() {
        return Err(Error::BadInput(format!(
            "accuracy: need at least one sample and one class (got {} samples, {num_classes} classes)",
            labels.len()
        )));
    }
    if labels.len().checked_mul(num_classes) != Some(logits.len()) {
        return Err(Error::BadInput(format!(
            "accuracy: {} logits do not form {} rows of {num_classes} classes",
            logits.len(),
            labels.len()
        )));
    }
    let mut row = vec![0.0f64; num_classes];
    let mut correct = 0usize;
    for (i, (chunk, &label)) in logits.chunks_exact(num_classes).zip(labels).enumerate() {
        let class = usize::try_from(label)
            .ok()
            .filter(|&c| c < num_classes)
            .ok_or_else(|| {
                Error::BadInput(format!(
                    "accuracy: sample #{i} has label {label}, not a class in 0..{num_classes}"
                ))
            })?;
        for (r, &z) in row.iter_mut().zip(chunk) {
            *r = z.into();
        }
        if row.iter().any(|z| z.is_nan()) {
            return Err(Error::BadInput(format!(
                "accuracy: sample #{i} has a NaN logit"
            )));
        }
        if argmax(&row) == class {
            correct += 1;
        }
    }
    Ok(correct as f64 / labels.len() as f64)
}
