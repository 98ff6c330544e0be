//! 2×2 max-pooling with stride 2, written as reshape + max so that candle's backward is right.
//!
//! candle's `Tensor::max_pool2d` backward hands a unique maximum only 1/4 of its gradient
//! (shared/spec/candle-notes.md); `reshape((n, c, h/2, 2, w/2, 2)).max(5).max(3)` is exact and
//! works to second order. Odd trailing rows/columns are dropped, as PyTorch's `MaxPool2d(2)` does.

use crate::error::{Error, Result};
use candle_core::Tensor;

/// max over each non-overlapping 2×2 window of `(n, c, h, w)` → `(n, c, ⌊h/2⌋, ⌊w/2⌋)`.
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / 2, w / 2);
    if ho == 0 || wo == 0 {
        return Err(Error::BadInput(format!(
            "2×2 max-pool needs an input of at least 2×2, got {h}×{w}"
        )));
    }
    let x = if h % 2 == 1 || w % 2 == 1 {
        x.narrow(2, 0, 2 * ho)?.narrow(3, 0, 2 * wo)?.contiguous()?
    } else {
        x.contiguous()?
    };
    Ok(x.reshape((n, c, ho, 2, wo, 2))?.max(5)?.max(3)?)
}

/// Output spatial size of [`max_pool2`] for an `h × w` input.
pub fn max_pool2_hw(h: usize, w: usize) -> (usize, usize) {
    (h / 2, w / 2)
}
