//! Input normalisation `(x - mean[c]) / std[c]`, the first layer of every model (pixels in [0,1]).

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// (x − μ_c) / σ_c in place over one image's consecutive channel planes of `plane` values: the
/// subtraction and the division each rounded once, as [`Normalize::forward`]'s broadcast ops
/// round them (the CPU evaluation forward and the dense Monte Carlo loop both use it).
pub(crate) fn normalise_image<T>(image: &mut [T], plane: usize, mean: &[T], std: &[T])
where
    T: Copy + std::ops::Sub<Output = T> + std::ops::Div<Output = T>,
{
    for ((p, &m), &s) in image.chunks_mut(plane.max(1)).zip(mean).zip(std) {
        for v in p {
            *v = (*v - m) / s;
        }
    }
}

/// Per-channel affine normalisation of `(n, c, h, w)` inputs: y = (x − μ_c) / σ_c.
#[derive(Debug, Clone)]
pub struct Normalize {
    mean: Vec<f32>,
    std: Vec<f32>,
    mean_t: Tensor,
    std_t: Tensor,
}

impl Normalize {
    /// A normalisation layer with one mean and one (positive) std per channel.
    pub fn new(mean: &[f32], std: &[f32], dtype: DType, device: &Device) -> Result<Self> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(Error::BadInput(format!(
                "normalisation needs one mean and one std per channel, got {} and {}",
                mean.len(),
                std.len()
            )));
        }
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::BadInput(
                "normalisation std must be finite and > 0".into(),
            ));
        }
        let c = mean.len();
        let mean_t = Tensor::from_slice(mean, (1, c, 1, 1), device)?.to_dtype(dtype)?;
        let std_t = Tensor::from_slice(std, (1, c, 1, 1), device)?.to_dtype(dtype)?;
        Ok(Self {
            mean: mean.to_vec(),
            std: std.to_vec(),
            mean_t,
            std_t,
        })
    }

    /// Per-channel means μ_c.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Per-channel standard deviations σ_c.
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// `(x − μ) / σ`, broadcast over `(n, c, h, w)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_sub(&self.mean_t)?.broadcast_div(&self.std_t)?)
    }
}
