//! The ResNet BasicBlock (He et al. 2016): y = relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)),
//! shortcut = identity, or a 1×1 convolution + BatchNorm when the shape changes.

use super::batch_norm::{BatchNorm2d, BnTrace};
use super::conv2d::Conv2d;
use crate::error::Result;
use crate::model::params::ParamStore;
use candle_core::Tensor;

/// A residual BasicBlock with two 3×3 convolutions.
#[derive(Debug, Clone)]
pub struct BasicBlock {
    name: String,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    shortcut: Option<(Conv2d, BatchNorm2d)>,
}

impl BasicBlock {
    /// A block from its parts; `shortcut` is `None` for the identity.
    pub fn new(
        name: impl Into<String>,
        conv1: Conv2d,
        bn1: BatchNorm2d,
        conv2: Conv2d,
        bn2: BatchNorm2d,
        shortcut: Option<(Conv2d, BatchNorm2d)>,
    ) -> Self {
        Self {
            name: name.into(),
            conv1,
            bn1,
            conv2,
            bn2,
            shortcut,
        }
    }

    /// Creates `{name}.conv1`, `.bn1`, `.conv2`, `.bn2` and, when `stride ≠ 1` or the width
    /// changes, `.shortcut.0` (1×1 conv) and `.shortcut.1` (BatchNorm) — kuangliu/pytorch-cifar.
    pub(crate) fn build(
        store: &mut ParamStore,
        name: &str,
        inp: usize,
        out: usize,
        stride: usize,
    ) -> Result<Self> {
        let conv1 = Conv2d::build(
            store,
            &format!("{name}.conv1"),
            inp,
            out,
            3,
            stride,
            1,
            false,
        )?;
        let bn1 = BatchNorm2d::build(store, &format!("{name}.bn1"), out)?;
        let conv2 = Conv2d::build(store, &format!("{name}.conv2"), out, out, 3, 1, 1, false)?;
        let bn2 = BatchNorm2d::build(store, &format!("{name}.bn2"), out)?;
        let shortcut = if stride != 1 || inp != out {
            let c = Conv2d::build(
                store,
                &format!("{name}.shortcut.0"),
                inp,
                out,
                1,
                stride,
                0,
                false,
            )?;
            let b = BatchNorm2d::build(store, &format!("{name}.shortcut.1"), out)?;
            Some((c, b))
        } else {
            None
        };
        Ok(Self::new(name, conv1, bn1, conv2, bn2, shortcut))
    }

    /// The PyTorch-style name prefix (`layer2.0`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// First 3×3 convolution (carries the block's stride).
    pub fn conv1(&self) -> &Conv2d {
        &self.conv1
    }

    /// BatchNorm after `conv1`.
    pub fn bn1(&self) -> &BatchNorm2d {
        &self.bn1
    }

    /// Second 3×3 convolution (stride 1).
    pub fn conv2(&self) -> &Conv2d {
        &self.conv2
    }

    /// BatchNorm after `conv2`.
    pub fn bn2(&self) -> &BatchNorm2d {
        &self.bn2
    }

    /// The projection shortcut (1×1 conv, BatchNorm), or `None` for the identity.
    pub fn shortcut(&self) -> Option<&(Conv2d, BatchNorm2d)> {
        self.shortcut.as_ref()
    }

    /// relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)).
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.forward_traced(x, train)?.0)
    }

    /// [`Self::forward`] (the same ops), also returning what its input gradient needs
    /// ([`BlockTrace::input_vjp`]).
    pub fn forward_traced(&self, x: &Tensor, train: bool) -> Result<(Tensor, BlockTrace)> {
        let (pre1, bn1) = self.bn1.forward_traced(&self.conv1.forward(x)?, train)?;
        let mid = super::relu(&pre1)?;
        let (y, bn2) = self.bn2.forward_traced(&self.conv2.forward(&mid)?, train)?;
        let (s, shortcut) = match &self.shortcut {
            Some((conv, bn)) => {
                let (s, t) = bn.forward_traced(&conv.forward(x)?, train)?;
                (s, Some(t))
            }
            None => (x.clone(), None),
        };
        let sum = (y + s)?;
        let out = super::relu(&sum)?;
        let (_, _, h, w) = x.dims4()?;
        let (_, _, mh, mw) = mid.dims4()?;
        let trace = BlockTrace {
            in_hw: (h, w),
            mid_hw: (mh, mw),
            pre1,
            bn1,
            bn2,
            shortcut,
            sum,
        };
        Ok((out, trace))
    }
}

/// What the input gradient of one BasicBlock pass reads: the pre-activations of its two ReLUs
/// (their masks), its BatchNorms' traces and the spatial sizes its convolutions were applied to.
#[derive(Debug, Clone)]
pub struct BlockTrace {
    in_hw: (usize, usize),
    mid_hw: (usize, usize),
    /// bn1's output (the inner ReLU's input).
    pre1: Tensor,
    bn1: BnTrace,
    bn2: BnTrace,
    /// The projection shortcut's BatchNorm; `None` for the identity.
    shortcut: Option<BnTrace>,
    /// main + shortcut (the outer ReLU's input).
    sum: Tensor,
}

impl BlockTrace {
    /// Jᵀg of the block for g shaped like its output: the outer ReLU's mask, then the main path
    /// (bn2, conv2, inner ReLU, bn1, conv1) and the shortcut (identity, or BatchNorm and the 1×1
    /// convolution) back to the block input, summed. Differentiable in g and in the weights.
    pub fn input_vjp(&self, block: &BasicBlock, g: &Tensor) -> Result<Tensor> {
        let (h, w) = self.in_hw;
        let (mh, mw) = self.mid_hw;
        let g = super::relu_mask(g, &self.sum)?;
        let main = self.bn2.input_vjp(&g)?;
        let main = block.conv2.input_vjp(&main, mh, mw)?;
        let main = super::relu_mask(&main, &self.pre1)?;
        let main = self.bn1.input_vjp(&main)?;
        let main = block.conv1.input_vjp(&main, h, w)?;
        let short = match (&block.shortcut, &self.shortcut) {
            (Some((conv, _)), Some(t)) => conv.input_vjp(&t.input_vjp(&g)?, h, w)?,
            (None, None) => g,
            _ => {
                return Err(crate::error::Error::Internal(format!(
                    "{}: the trace's shortcut does not match the block's",
                    block.name
                )));
            }
        };
        Ok((main + short)?)
    }
}
