//! Zero padding of the spatial axes (ONNX `Pad`, mode `constant`, value 0): a linear map, so its
//! gradient is the crop back to the input window, and every higher derivative follows from
//! candle's `pad_with_zeros`/`narrow` pair.

use crate::error::Result;
use candle_core::Tensor;

/// Adds `top`, `left`, `bottom`, `right` rows/columns of zeros to `(n, c, h, w)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroPad {
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

impl ZeroPad {
    /// Output spatial size.
    pub fn output_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let [t, l, b, r] = self.pads;
        (h + t + b, w + l + r)
    }

    /// `(n, c, h, w)` → `(n, c, h + top + bottom, w + left + right)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [t, l, b, r] = self.pads;
        Ok(x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?)
    }
}
