//! 2-d convolution (cross-correlation, as in PyTorch) with square stride and zero padding;
//! computed on the CPU as im2col + GEMM per sample, with its own first- and higher-order backward
//! (see [`conv2d_auto`](super::conv2d_auto)).

use super::conv_gemm::{ConvInputAdjoint, conv2d_auto};
use crate::error::{Error, Result};
use crate::model::init::Init;
use crate::model::params::{ParamKind, ParamStore};
use candle_core::{Tensor, Var};

/// y = W ⋆ x + b; W is `(out, in, kh, kw)`, zero padding `padding` on every side, step `stride`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    name: String,
    weight: Var,
    bias: Option<Var>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// A convolution from existing weights.
    pub fn new(
        name: impl Into<String>,
        weight: Var,
        bias: Option<Var>,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let name = name.into();
        let (out, _, _, _) = weight.dims4().map_err(|_| {
            Error::BadInput(format!(
                "{name}.weight must be 4-d, got {:?}",
                weight.dims()
            ))
        })?;
        if stride == 0 {
            return Err(Error::BadInput(format!("{name}: stride must be > 0")));
        }
        if let Some(b) = &bias
            && b.dims() != [out]
        {
            return Err(Error::BadInput(format!(
                "{name}.bias has shape {:?}, expected [{out}]",
                b.dims()
            )));
        }
        Ok(Self {
            name,
            weight,
            bias,
            stride,
            padding,
        })
    }

    /// Creates `{name}.weight` (and `{name}.bias`) with `nn.Conv2d`'s default initialisation.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        store: &mut ParamStore,
        name: &str,
        inp: usize,
        out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Result<Self> {
        let fan_in = inp * kernel * kernel;
        let w = store.take(
            &format!("{name}.weight"),
            &[out, inp, kernel, kernel],
            Init::KaimingUniformSqrt5 { fan_in },
            ParamKind::Trainable,
        )?;
        let b = if bias {
            Some(store.take(
                &format!("{name}.bias"),
                &[out],
                Init::BiasUniform { fan_in },
                ParamKind::Trainable,
            )?)
        } else {
            None
        };
        Self::new(name, w, b, stride, padding)
    }

    /// The PyTorch-style name prefix (`conv1`, `layer2.0.shortcut.0`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// W, shape `(out, in, kh, kw)`.
    pub fn weight(&self) -> &Tensor {
        self.weight.as_tensor()
    }

    /// b, shape `(out)`, if the layer has a bias.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref().map(|b| b.as_tensor())
    }

    /// Step between windows (same in both directions).
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Zero padding added on each side (same in both directions).
    pub fn padding(&self) -> usize {
        self.padding
    }

    /// `(kh, kw)`.
    pub fn kernel_size(&self) -> (usize, usize) {
        let d = self.weight.dims();
        (d[2], d[3])
    }

    /// Output spatial size for an `h × w` input: ⌊(h + 2p − k)/s⌋ + 1 (None if the kernel does not fit).
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let (kh, kw) = self.kernel_size();
        Some((
            super::window_out(h, kh, self.stride, self.padding)?,
            super::window_out(w, kw, self.stride, self.padding)?,
        ))
    }

    /// W ⋆ x + b for `x` of shape `(n, in, h, w)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv2d_auto(x, self.weight.as_tensor(), self.stride, self.padding)?;
        Ok(match &self.bias {
            Some(b) => super::add_channel_bias(&y, b.as_tensor())?,
            None => y,
        })
    }

    /// Jᵀg for g shaped like the output of an `h × w` input: the transposed convolution of g by
    /// W, differentiable in g and W (the bias does not enter).
    pub fn input_vjp(&self, g: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let op = ConvInputAdjoint {
            stride: self.stride,
            padding: self.padding,
            h,
            w,
        };
        Ok(g.contiguous()?
            .apply_op2(&self.weight.as_tensor().contiguous()?, op)?)
    }
}
