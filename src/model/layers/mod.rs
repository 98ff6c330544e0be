//! The layer kinds a model is made of, as explicit values: bound propagation and Lipschitz
//! bounds walk a model layer by layer and read each layer's weights through these types.

mod basic_block;
mod batch_norm;
mod channel_bias;
mod channel_scale;
mod concat_block;
mod conv2d;
mod conv_gemm;
pub(crate) mod cpu_op;
pub(crate) mod dense_gemm;
pub(crate) mod gemm;
mod im2col;
mod in_place;
mod inference;
mod linear;
mod max_pool;
mod normalize;
pub(crate) mod packed_dense;
pub(crate) mod relu;
mod residual_block;
mod window_pool;
mod zero_pad;

pub use basic_block::{BasicBlock, BlockTrace};
pub use batch_norm::{BN_EPS, BN_MOMENTUM, BatchNorm2d, BnTrace};
pub use channel_bias::{AddChannelBias, ChannelSum, add_channel_bias};
pub use channel_scale::{ChannelScale, scale_channels};
pub use concat_block::ConcatBlock;
pub use conv_gemm::{Conv2dOp, ConvInputAdjoint, ConvWeightAdjoint, conv2d_auto};
pub use conv2d::Conv2d;
pub use im2col::{ConvGeometry, col2im_sample, im2col_sample};
pub use inference::{DENSE_ROWS, infer_layers};
pub use linear::{Linear, add_bias};
pub use max_pool::{MaxGather2, MaxPool2Op, MaxUnpool2, max_pool2, max_pool2_hw, max_unpool2};
pub use normalize::Normalize;
pub(crate) use normalize::normalise_image;
pub use relu::{ReluMask, ReluOp, relu, relu_mask};
pub use residual_block::ResidualBlock;
pub use window_pool::{PoolKind, WindowPool, window_out};
pub use zero_pad::ZeroPad;

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
    /// Max or average pooling with any kernel, stride and padding (imported graphs).
    Pool(WindowPool),
    /// Zero padding of the spatial axes (imported graphs).
    Pad(ZeroPad),
    /// Parallel branches concatenated along channels (imported graphs).
    Concat(Box<ConcatBlock>),
    /// main(x) + shortcut(x) without an implied ReLU (imported graphs).
    Residual(Box<ResidualBlock>),
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
            Layer::Pool(p) => match p.kind {
                PoolKind::Max => "max-pool",
                PoolKind::Avg => "avg-pool",
            },
            Layer::Pad(_) => "pad",
            Layer::Concat(_) => "concat",
            Layer::Residual(_) => "residual",
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
            Layer::Pool(l) => l.forward(x),
            Layer::Pad(l) => l.forward(x),
            Layer::Concat(l) => l.forward(x, train),
            Layer::Residual(l) => l.forward(x, train),
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
