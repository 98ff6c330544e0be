//! General 2-d pooling over k_h×k_w windows with strides (s_h, s_w) and padding (p_h, p_w), floor
//! mode (ONNX `MaxPool`/`AveragePool`, PyTorch `MaxPool2d`/`AvgPool2d` with `ceil_mode=False`):
//! out[i, j] = max / mean of x_pad[s_h·i + a, s_w·j + b] over 0 ≤ a < k_h, 0 ≤ b < k_w.
//! Max-pooling pads with −∞ (a padded entry never wins); average pooling pads with zeros and
//! divides by k_h·k_w (`count_include_pad`). Built from candle's pad/narrow/reshape/stack and a
//! max/mean reduction, every one differentiable to any order, so input gradients and GReg's
//! double backpropagation flow through it (the reshape-and-reduce route of
//! shared/spec/candle-notes.md, not `Tensor::max_pool2d`).

use crate::error::{Error, Result};
use candle_core::{D, Tensor};

/// Max or mean over each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// A pooling layer with explicit window geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPool {
    pub kind: PoolKind,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Padding added on both sides of each spatial axis.
    pub pad: [usize; 2],
}

/// How many positions a window of size `k` takes with stride `s` along an axis of `n` padded by
/// `p` on both sides: ⌊(n + 2p − k)/s⌋ + 1, or `None` when the window does not fit, the stride
/// is 0 or the padded size overflows (pools, convolutions and the model file's shape check).
pub fn window_out(n: usize, k: usize, s: usize, p: usize) -> Option<usize> {
    let padded = n.checked_add(p.checked_mul(2)?)?;
    (s > 0 && padded >= k).then(|| (padded - k) / s + 1)
}

impl WindowPool {
    /// Checks the geometry: kernel and stride > 0, padding < kernel (as ONNX and PyTorch require).
    pub fn new(
        kind: PoolKind,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
    ) -> Result<Self> {
        if kernel.contains(&0) || stride.contains(&0) {
            return Err(Error::BadInput(format!(
                "pooling kernel {kernel:?} and stride {stride:?} must be > 0"
            )));
        }
        if pad[0] >= kernel[0] || pad[1] >= kernel[1] {
            return Err(Error::BadInput(format!(
                "pooling padding {pad:?} must be smaller than the kernel {kernel:?}"
            )));
        }
        Ok(Self {
            kind,
            kernel,
            stride,
            pad,
        })
    }

    /// Output size ⌊(h + 2p − k)/s⌋ + 1 per axis, or `None` when the window does not fit.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let out = |n: usize, i: usize| window_out(n, self.kernel[i], self.stride[i], self.pad[i]);
        Some((out(h, 0)?, out(w, 1)?))
    }

    /// Pools `(n, c, h, w)` → `(n, c, h_out, w_out)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (ho, wo) = self.output_hw(h, w).ok_or_else(|| {
            Error::BadInput(format!(
                "pooling window {:?} (padding {:?}) larger than the {h}×{w} input",
                self.kernel, self.pad
            ))
        })?;
        let fill = match self.kind {
            PoolKind::Max => f64::NEG_INFINITY,
            PoolKind::Avg => 0.0,
        };
        let [sh, sw] = self.stride;
        // Pad by p on both sides, plus s − 1 trailing rows/columns so that every window offset
        // can take s·h_out rows (the extra ones are dropped by the stride reshape below).
        let xp = pad_axis(x, 2, self.pad[0], self.pad[0] + sh - 1, fill)?;
        let xp = pad_axis(&xp, 3, self.pad[1], self.pad[1] + sw - 1, fill)?;
        let mut taps = Vec::with_capacity(self.kernel[0] * self.kernel[1]);
        for a in 0..self.kernel[0] {
            let rows = xp
                .narrow(2, a, sh * ho)?
                .reshape((n, c, ho, sh, xp.dim(3)?))?
                .narrow(3, 0, 1)?
                .squeeze(3)?;
            for b in 0..self.kernel[1] {
                let t = rows
                    .narrow(3, b, sw * wo)?
                    .reshape((n, c, ho, wo, sw))?
                    .narrow(4, 0, 1)?
                    .squeeze(4)?;
                taps.push(t);
            }
        }
        let stacked = Tensor::stack(&taps, 4)?;
        Ok(match self.kind {
            PoolKind::Max => stacked.max(D::Minus1)?,
            PoolKind::Avg => stacked.mean(D::Minus1)?,
        })
    }
}

/// `x` with `before` and `after` entries of value `fill` added along `dim`.
fn pad_axis(x: &Tensor, dim: usize, before: usize, after: usize, fill: f64) -> Result<Tensor> {
    if before == 0 && after == 0 {
        return Ok(x.clone());
    }
    let block = |len: usize| -> Result<Tensor> {
        let mut shape = x.dims().to_vec();
        shape[dim] = len;
        Ok(Tensor::full(fill, shape, x.device())?.to_dtype(x.dtype())?)
    };
    let mut parts = Vec::with_capacity(3);
    if before > 0 {
        parts.push(block(before)?);
    }
    parts.push(x.clone());
    if after > 0 {
        parts.push(block(after)?);
    }
    Ok(Tensor::cat(&parts, dim)?)
}
