//! The layer kinds a model is made of, as explicit values: bound propagation and Lipschitz
//! bounds walk a model layer by layer and read each layer's weights through these types.

mod basic_block;
mod batch_norm;
mod channel_bias;
mod channel_scale;
mod conv2d;
mod conv_gemm;
pub(crate) mod cpu_op;
pub(crate) mod gemm;
mod im2col;
mod in_place;
mod inference;
mod linear;
mod max_pool;
mod normalize;
pub(crate) mod relu;

pub use basic_block::BasicBlock;
pub use batch_norm::{BN_EPS, BN_MOMENTUM, BatchNorm2d};
pub use channel_bias::{AddChannelBias, ChannelSum, add_channel_bias};
pub use channel_scale::{ChannelScale, scale_channels};
pub use conv_gemm::{Conv2dOp, ConvInputAdjoint, ConvWeightAdjoint, conv2d_auto};
pub use conv2d::Conv2d;
pub use im2col::{ConvGeometry, col2im_sample, im2col_sample};
pub use inference::infer_layers;
pub use linear::Linear;
pub use max_pool::{MaxGather2, MaxPool2Op, MaxUnpool2, max_pool2, max_pool2_hw, max_unpool2};
pub use normalize::Normalize;
pub use relu::{ReluMask, ReluOp, relu, relu_mask};

use crate::error::Result;
use candle_core::Tensor;

/// One layer of a sequential network (a residual block counts as one layer).
#[derive(Debug, Clone)]
pub enum Layer {
    /// `(x − μ_c)/σ_c` per channel; always the first layer.
    Normalize(Normalize),
    /// `(n, c, h, w)` → `(n, c·h·w)`, row-major as PyTorch's `flatten(1)`.
    Flatten,
    /// x Wᵀ + b.
    Linear(Linear),
    /// 2-d convolution.
    Conv2d(Conv2d),
    /// max(x, 0) elementwise.
    Relu,
    /// 2×2 max-pool, stride 2 (see [`max_pool2`]).
    MaxPool2,
    /// Mean over the spatial dimensions: `(n, c, h, w)` → `(n, c)` (includes the flatten).
    GlobalAvgPool,
    /// BatchNorm over channels.
    BatchNorm2d(BatchNorm2d),
    /// A ResNet BasicBlock (boxed: it holds five layers).
    BasicBlock(Box<BasicBlock>),
}

impl Layer {
    /// Short kind name for logs and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Normalize(_) => "normalize",
            Layer::Flatten => "flatten",
            Layer::Linear(_) => "linear",
            Layer::Conv2d(_) => "conv2d",
            Layer::Relu => "relu",
            Layer::MaxPool2 => "maxpool2",
            Layer::GlobalAvgPool => "global-avg-pool",
            Layer::BatchNorm2d(_) => "batchnorm2d",
            Layer::BasicBlock(_) => "basic-block",
        }
    }

    /// Applies the layer; `train` selects batch statistics in BatchNorm.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Layer::Normalize(l) => l.forward(x),
            Layer::Flatten => Ok(x.flatten_from(1)?),
            Layer::Linear(l) => l.forward(x),
            Layer::Conv2d(l) => l.forward(x),
            Layer::Relu => Ok(relu(x)?),
            Layer::MaxPool2 => max_pool2(x),
            Layer::GlobalAvgPool => Ok(x.mean((2, 3))?),
            Layer::BatchNorm2d(l) => l.forward(x, train),
            Layer::BasicBlock(l) => l.forward(x, train),
        }
    }
}

/// Applies `layers` in order.
pub fn forward_layers(layers: &[Layer], x: &Tensor, train: bool) -> Result<Tensor> {
    let mut h = x.clone();
    for layer in layers {
        h = layer.forward(&h, train)?;
    }
    Ok(h)
}
