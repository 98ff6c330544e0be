//! Imported architectures (`oodcert import --onnx`): the layer graph as a series-parallel tree,
//! stored as JSON in the model file's spec and rebuilt here. Parameters are named
//! `{layer name}.weight`, `.bias`, `.running_mean`, `.running_var` as in PyTorch.

use crate::error::{Error, Result};
use crate::model::init::Init;
use crate::model::layers::{
    BatchNorm2d, ConcatBlock, Conv2d, Layer, Linear, PoolKind, ResidualBlock, WindowPool, ZeroPad,
    window_out,
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

/// The shape of one sample between layers: `(c, h, w)` or a flat vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Spatial([usize; 3]),
    Flat(usize),
}

impl Shape {
    fn elements(self) -> Option<usize> {
        match self {
            Shape::Spatial([c, h, w]) => c.checked_mul(h)?.checked_mul(w),
            Shape::Flat(n) => Some(n),
        }
    }
}

/// The largest activation one sample may have at any layer (2²⁶ values, 256 MB in f32): far
/// above the architectures oodcert runs (ResNet-18 at 32×32: 65 536), far below what would
/// exhaust memory in a batch.
pub const MAX_ACTIVATION: usize = 1 << 26;

/// The output shape of `layers` on one `input` sample, checking that every layer fits the
/// shape before it (channels, features, windows, branch shapes) and that no activation exceeds
/// [`MAX_ACTIVATION`]: a model file whose layers do not fit together is a clear error at load,
/// not a crash inside a convolution.
pub fn output_shape(layers: &[GraphLayer], input: Shape) -> Result<Shape> {
    let mut x = input;
    for g in layers {
        x = layer_shape(g, x)?;
        if x.elements().is_none_or(|n| n == 0 || n > MAX_ACTIVATION) {
            return Err(Error::BadInput(format!(
                "model layers: {} gives an activation of shape {x:?}, not between 1 and {MAX_ACTIVATION} values per sample",
                label(g)
            )));
        }
    }
    Ok(x)
}

fn label(g: &GraphLayer) -> String {
    match g {
        GraphLayer::Conv { name, .. }
        | GraphLayer::BatchNorm { name, .. }
        | GraphLayer::Linear { name, .. } => format!("layer {name}"),
        other => format!("a {} layer", op_name(other)),
    }
}

fn op_name(g: &GraphLayer) -> &'static str {
    match g {
        GraphLayer::Conv { .. } => "conv",
        GraphLayer::BatchNorm { .. } => "batch-norm",
        GraphLayer::Linear { .. } => "linear",
        GraphLayer::Relu => "relu",
        GraphLayer::Flatten => "flatten",
        GraphLayer::GlobalAvgPool => "global-avg-pool",
        GraphLayer::MaxPool { .. } => "max-pool",
        GraphLayer::AvgPool { .. } => "avg-pool",
        GraphLayer::Pad { .. } => "pad",
        GraphLayer::Residual { .. } => "residual",
        GraphLayer::Concat { .. } => "concat",
    }
}

fn layer_shape(g: &GraphLayer, x: Shape) -> Result<Shape> {
    let misfit = |what: String| {
        Err(Error::BadInput(format!(
            "model layers do not fit together: {} {what} (input {x:?}); the model file is damaged or was not written by oodcert",
            label(g)
        )))
    };
    let spatial = match x {
        Shape::Spatial(s) => Some(s),
        Shape::Flat(_) => None,
    };
    match (g, spatial) {
        (
            GraphLayer::Conv {
                c_in,
                c_out,
                kernel,
                stride,
                padding,
                ..
            },
            Some([c, h, w]),
        ) => {
            if c != *c_in {
                return misfit(format!("expects {c_in} channels"));
            }
            match (
                window_out(h, kernel[0], *stride, *padding),
                window_out(w, kernel[1], *stride, *padding),
            ) {
                (Some(ho), Some(wo)) if *c_out > 0 && !kernel.contains(&0) => {
                    Ok(Shape::Spatial([*c_out, ho, wo]))
                }
                _ => misfit(format!(
                    "(kernel {kernel:?}, stride {stride}, padding {padding}) does not fit"
                )),
            }
        }
        (GraphLayer::BatchNorm { channels, .. }, Some([c, _, _])) => {
            if c == *channels {
                Ok(x)
            } else {
                misfit(format!("expects {channels} channels"))
            }
        }
        (
            GraphLayer::Linear {
                in_features,
                out_features,
                ..
            },
            None,
        ) => {
            if x == Shape::Flat(*in_features) && *out_features > 0 {
                Ok(Shape::Flat(*out_features))
            } else {
                misfit(format!("expects {in_features} features"))
            }
        }
        (GraphLayer::Relu, _) => Ok(x),
        (GraphLayer::Flatten, _) => match x.elements() {
            Some(n) => Ok(Shape::Flat(n)),
            None => misfit("overflows".into()),
        },
        (GraphLayer::GlobalAvgPool, Some([c, _, _])) => Ok(Shape::Flat(c)),
        (
            GraphLayer::MaxPool {
                kernel,
                stride,
                pad,
            }
            | GraphLayer::AvgPool {
                kernel,
                stride,
                pad,
            },
            Some([c, h, w]),
        ) => match WindowPool::new(PoolKind::Max, *kernel, *stride, *pad)
            .ok()
            .and_then(|p| p.output_hw(h, w))
        {
            // The pool's own checks (kernel and stride > 0, padding < kernel) and output size.
            Some((ho, wo)) => Ok(Shape::Spatial([c, ho, wo])),
            None => misfit(format!(
                "(kernel {kernel:?}, stride {stride:?}, padding {pad:?}) does not fit"
            )),
        },
        (GraphLayer::Pad { pads }, Some([c, h, w])) => {
            let grow = |n: usize, a: usize, b: usize| n.checked_add(a)?.checked_add(b);
            match (grow(h, pads[0], pads[2]), grow(w, pads[1], pads[3])) {
                (Some(h), Some(w)) => Ok(Shape::Spatial([c, h, w])),
                _ => misfit(format!("padding {pads:?} overflows")),
            }
        }
        (GraphLayer::Residual { main, shortcut }, _) => {
            let (m, s) = (output_shape(main, x)?, output_shape(shortcut, x)?);
            if m == s {
                Ok(m)
            } else {
                misfit(format!("adds a {m:?} main branch to a {s:?} shortcut"))
            }
        }
        (GraphLayer::Concat { branches }, Some([_, h, w])) => {
            let mut channels = 0usize;
            for b in branches {
                match output_shape(b, x)? {
                    Shape::Spatial([c, bh, bw]) if (bh, bw) == (h, w) => {
                        channels = channels.saturating_add(c);
                    }
                    other => {
                        return misfit(format!(
                            "concatenates a {other:?} branch (each branch must keep {h}×{w})"
                        ));
                    }
                }
            }
            Ok(Shape::Spatial([channels, h, w]))
        }
        (_, None) => misfit("needs a (c, h, w) input".into()),
        (GraphLayer::Linear { in_features, .. }, Some(_)) => misfit(format!(
            "expects {in_features} flat features (flatten first)"
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> GraphLayer {
        GraphLayer::Conv {
            name: name.into(),
            c_in,
            c_out,
            kernel: [k, k],
            stride,
            padding,
            bias: true,
        }
    }

    fn linear(name: &str, i: usize, o: usize) -> GraphLayer {
        GraphLayer::Linear {
            name: name.into(),
            in_features: i,
            out_features: o,
            bias: true,
        }
    }

    fn pool(k: usize, s: usize) -> GraphLayer {
        GraphLayer::MaxPool {
            kernel: [k, k],
            stride: [s, s],
            pad: [0, 0],
        }
    }

    /// A LeNet-shaped graph with a residual and a concatenation: the shapes follow PyTorch's.
    fn net() -> Vec<GraphLayer> {
        vec![
            conv("c1", 1, 6, 5, 1, 0),
            GraphLayer::Relu,
            pool(2, 2),
            GraphLayer::Residual {
                main: vec![
                    conv("r", 6, 6, 3, 1, 1),
                    GraphLayer::BatchNorm {
                        name: "bn".into(),
                        channels: 6,
                    },
                ],
                shortcut: vec![],
            },
            GraphLayer::Concat {
                branches: vec![vec![], vec![conv("b", 6, 4, 1, 1, 0)]],
            },
            GraphLayer::Pad { pads: [1, 0, 1, 0] },
            GraphLayer::Flatten,
            linear("fc", 10 * 14 * 12, 10),
        ]
    }

    #[test]
    fn shapes_follow_the_layers() {
        let x = Shape::Spatial([1, 28, 28]);
        assert_eq!(output_shape(&net(), x).unwrap(), Shape::Flat(10));
        let gap = [
            conv("c", 1, 8, 3, 2, 1),
            GraphLayer::GlobalAvgPool,
            linear("fc", 8, 3),
        ];
        assert_eq!(output_shape(&gap, x).unwrap(), Shape::Flat(3));
    }

    /// Each way a damaged layer list can misfit is an error naming the layer, never a shape
    /// computed with an overflow or an activation too large to allocate.
    #[test]
    fn misfits_are_errors_naming_the_layer() {
        let x = Shape::Spatial([1, 28, 28]);
        let cases: Vec<(Vec<GraphLayer>, &str)> = vec![
            (
                vec![conv("c1", 3, 6, 5, 1, 0)],
                "layer c1 expects 3 channels",
            ),
            (
                vec![
                    conv("c1", 1, 6, 5, 1, 1000),
                    GraphLayer::Flatten,
                    linear("fc", 338, 10),
                ],
                "layer fc expects 338 features",
            ),
            (vec![conv("c1", 1, 2, 5, 1, 100_000)], "not between 1 and"),
            (vec![conv("c1", 1, 2, 5, 1, 1 << 63)], "does not fit"),
            (vec![conv("c1", 1, 2, 5, 0, 0)], "does not fit"),
            (vec![conv("c1", 1, 2, 29, 1, 0)], "does not fit"),
            (vec![pool(2, 0)], "max-pool layer"),
            (
                vec![GraphLayer::Flatten, pool(2, 2)],
                "needs a (c, h, w) input",
            ),
            (vec![linear("fc", 784, 10)], "flatten first"),
            (
                vec![GraphLayer::Residual {
                    main: vec![conv("r", 1, 2, 3, 1, 1)],
                    shortcut: vec![],
                }],
                "main branch to a",
            ),
            (
                vec![GraphLayer::Concat {
                    branches: vec![vec![], vec![pool(2, 2)]],
                }],
                "each branch must keep 28×28",
            ),
            (
                vec![GraphLayer::Pad {
                    pads: [usize::MAX, 0, 1, 0],
                }],
                "overflows",
            ),
            (
                vec![GraphLayer::BatchNorm {
                    name: "bn".into(),
                    channels: 3,
                }],
                "layer bn expects 3 channels",
            ),
        ];
        for (layers, needle) in cases {
            let e = output_shape(&layers, x).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}
