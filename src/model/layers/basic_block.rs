//! The ResNet BasicBlock (He et al. 2016): y = relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)),
//! shortcut = identity, or a 1×1 convolution + BatchNorm when the shape changes.

use super::batch_norm::BatchNorm2d;
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
        let y = super::relu(&self.bn1.forward(&self.conv1.forward(x)?, train)?)?;
        let y = self.bn2.forward(&self.conv2.forward(&y)?, train)?;
        let s = match &self.shortcut {
            Some((conv, bn)) => bn.forward(&conv.forward(x)?, train)?,
            None => x.clone(),
        };
        Ok(super::relu(&(y + s)?)?)
    }
}
