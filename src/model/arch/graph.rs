//! Imported architectures (`oodcert import --onnx`): the layer graph as a series-parallel tree,
//! stored as JSON in the model file's spec and rebuilt here. Parameters are named
//! `{layer name}.weight`, `.bias`, `.running_mean`, `.running_var` as in PyTorch.

use crate::error::{Error, Result};
use crate::model::init::Init;
use crate::model::layers::{
    BatchNorm2d, ConcatBlock, Conv2d, Layer, Linear, PoolKind, ResidualBlock, WindowPool, ZeroPad,
};
use crate::model::params::{ParamKind, ParamStore};
use serde::{Deserialize, Serialize};

/// One layer of an imported graph; `Residual` and `Concat` hold sub-sequences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum GraphLayer {
    /// 2-d convolution, weight `(c_out, c_in, kh, kw)`, equal stride and zero padding on both axes.
    Conv {
        name: String,
        c_in: usize,
        c_out: usize,
        kernel: [usize; 2],
        stride: usize,
        padding: usize,
        bias: bool,
    },
    /// BatchNorm in PyTorch's form (ε = 1e-5; another ε is folded into the running variance).
    BatchNorm {
        name: String,
        channels: usize,
    },
    /// x Wᵀ + b, weight `(out, in)`.
    Linear {
        name: String,
        in_features: usize,
        out_features: usize,
        bias: bool,
    },
    Relu,
    /// `(n, …)` → `(n, ∏…)`.
    Flatten,
    /// Mean over the spatial axes, `(n, c, h, w)` → `(n, c)`.
    GlobalAvgPool,
    /// Max-pooling; 2×2 windows with stride 2 and no padding build the built-ins' `MaxPool2`.
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
    },
    /// Average pooling, zero padding counted in the divisor.
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
    },
    /// Zero padding `[top, left, bottom, right]`.
    Pad {
        pads: [usize; 4],
    },
    /// main(x) + shortcut(x).
    Residual {
        main: Vec<GraphLayer>,
        shortcut: Vec<GraphLayer>,
    },
    /// Channel concatenation of the branches' outputs (an empty branch is the identity).
    Concat {
        branches: Vec<Vec<GraphLayer>>,
    },
}

/// Builds `layers` (after the model's `Normalize`), asking `store` for the parameters in order.
pub(super) fn build(
    graph: &[GraphLayer],
    store: &mut ParamStore,
    layers: &mut Vec<Layer>,
) -> Result<()> {
    if !matches!(graph.last(), Some(GraphLayer::Linear { .. })) {
        return Err(Error::BadInput(
            "an imported graph must end in a Linear (Gemm/MatMul) layer".into(),
        ));
    }
    for g in graph {
        layers.push(build_layer(g, store)?);
    }
    Ok(())
}

fn build_seq(graph: &[GraphLayer], store: &mut ParamStore) -> Result<Vec<Layer>> {
    graph.iter().map(|g| build_layer(g, store)).collect()
}

fn build_layer(g: &GraphLayer, store: &mut ParamStore) -> Result<Layer> {
    Ok(match g {
        GraphLayer::Conv {
            name,
            c_in,
            c_out,
            kernel,
            stride,
            padding,
            bias,
        } => {
            let fan_in = c_in * kernel[0] * kernel[1];
            let w = store.take(
                &format!("{name}.weight"),
                &[*c_out, *c_in, kernel[0], kernel[1]],
                Init::KaimingUniformSqrt5 { fan_in },
                ParamKind::Trainable,
            )?;
            let b = bias
                .then(|| {
                    store.take(
                        &format!("{name}.bias"),
                        &[*c_out],
                        Init::BiasUniform { fan_in },
                        ParamKind::Trainable,
                    )
                })
                .transpose()?;
            Layer::Conv2d(Conv2d::new(name, w, b, *stride, *padding)?)
        }
        GraphLayer::BatchNorm { name, channels } => {
            Layer::BatchNorm2d(BatchNorm2d::build(store, name, *channels)?)
        }
        GraphLayer::Linear {
            name,
            in_features,
            out_features,
            bias,
        } => {
            let fan_in = *in_features;
            let w = store.take(
                &format!("{name}.weight"),
                &[*out_features, *in_features],
                Init::KaimingUniformSqrt5 { fan_in },
                ParamKind::Trainable,
            )?;
            let b = bias
                .then(|| {
                    store.take(
                        &format!("{name}.bias"),
                        &[*out_features],
                        Init::BiasUniform { fan_in },
                        ParamKind::Trainable,
                    )
                })
                .transpose()?;
            Layer::Linear(Linear::new(name, w, b)?)
        }
        GraphLayer::Relu => Layer::Relu,
        GraphLayer::Flatten => Layer::Flatten,
        GraphLayer::GlobalAvgPool => Layer::GlobalAvgPool,
        GraphLayer::MaxPool {
            kernel: [2, 2],
            stride: [2, 2],
            pad: [0, 0],
        } => Layer::MaxPool2,
        GraphLayer::MaxPool {
            kernel,
            stride,
            pad,
        } => Layer::Pool(WindowPool::new(PoolKind::Max, *kernel, *stride, *pad)?),
        GraphLayer::AvgPool {
            kernel,
            stride,
            pad,
        } => Layer::Pool(WindowPool::new(PoolKind::Avg, *kernel, *stride, *pad)?),
        GraphLayer::Pad { pads } => Layer::Pad(ZeroPad { pads: *pads }),
        GraphLayer::Residual { main, shortcut } => Layer::Residual(Box::new(ResidualBlock {
            main: build_seq(main, store)?,
            shortcut: build_seq(shortcut, store)?,
        })),
        GraphLayer::Concat { branches } => Layer::Concat(Box::new(ConcatBlock {
            branches: branches
                .iter()
                .map(|b| build_seq(b, store))
                .collect::<Result<_>>()?,
        })),
    })
}
