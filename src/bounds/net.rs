//! A model as explicit host-side f64 operations: the form every bound walks. Built from a
//! [`Model`] (weights copied, BatchNorm in evaluation mode as a diagonal affine map), with an f64
//! forward pass that is checked against the candle model in the tests.

use super::avg_pool::AvgPool;
use super::conv::Conv;
use super::dense::Dense;
use super::diag::Diag;
use super::linear_map::LinearMap;
use super::pad::Pad;
use super::pool_geometry::PoolGeometry;
use crate::error::{Error, Result};
use crate::model::layers::{BatchNorm2d, Conv2d, Layer};
use crate::model::{Classifier, Model};
use candle_core::{DType, Tensor};

/// The linear part of an affine node.
#[derive(Debug, Clone, PartialEq)]
pub enum LinearOp {
    Dense(Dense),
    Conv(Conv),
    Diag(Diag),
    AvgPool(AvgPool),
    Pad(Pad),
}

impl LinearOp {
    /// The operation as a [`LinearMap`].
    pub fn map(&self) -> &dyn LinearMap {
        match self {
            LinearOp::Dense(m) => m,
            LinearOp::Conv(m) => m,
            LinearOp::Diag(m) => m,
            LinearOp::AvgPool(m) => m,
            LinearOp::Pad(m) => m,
        }
    }
}

/// x ↦ A x + b, named after the model layer it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    pub name: String,
    pub op: LinearOp,
    pub bias: Option<Vec<f64>>,
}

impl Affine {
    /// A x + b in f64.
    pub fn forward(&self, x: &[f64]) -> Vec<f64> {
        let mut y = self.op.map().apply(x, false);
        if let Some(b) = &self.bias {
            y.iter_mut().zip(b).for_each(|(y, b)| *y += b);
        }
        y
    }
}

/// One node of the network.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Affine(Affine),
    /// max(x, 0) entrywise.
    Relu,
    /// 2×2 stride-2 max-pool of a `(c, h, w)` input (odd trailing row/column dropped).
    MaxPool2 {
        c: usize,
        h: usize,
        w: usize,
    },
    /// main(x) + shortcut(x); an empty shortcut is the identity.
    Residual {
        main: Vec<Node>,
        shortcut: Vec<Node>,
    },
    /// Channel concatenation of the branches' outputs on the same `(c, h, w)` input (all branches
    /// keep h, w); an empty branch is the identity. Output channels = sum of the branches'
    /// channels, in branch order: on the flattened channel-major layout, the branches' output
    /// vectors one after the other.
    Concat {
        branches: Vec<Vec<Node>>,
    },
    /// Max-pool of a `(c, h, w)` input, kernel (kh, kw), stride (sh, sw), zero-or-more padding
    /// (ph, pw) with −∞ (padding never wins), floor mode; any overlap allowed.
    MaxPool {
        c: usize,
        h: usize,
        w: usize,
        kh: usize,
        kw: usize,
        sh: usize,
        sw: usize,
        ph: usize,
        pw: usize,
    },
}

impl Node {
    /// The window geometry of a max-pool node (`MaxPool2` is kernel 2, stride 2, no padding);
    /// None for other nodes.
    pub fn max_pool_geometry(&self) -> Option<PoolGeometry> {
        match *self {
            Node::MaxPool2 { c, h, w } => Some(PoolGeometry::square(c, h, w, 2, 2, 0)),
            Node::MaxPool {
                c,
                h,
                w,
                kh,
                kw,
                sh,
                sw,
                ph,
                pw,
            } => Some(PoolGeometry {
                c,
                h,
                w,
                kh,
                kw,
                sh,
                sw,
                ph,
                pw,
            }),
            _ => None,
        }
    }

    /// The input indices of every window of a max-pool node (padding left out), output-major;
    /// empty for other nodes and for an invalid geometry (which [`forward_nodes`] and IBP
    /// reject with an error).
    pub fn pool_windows(&self) -> Vec<Vec<usize>> {
        self.max_pool_geometry()
            .map_or_else(Vec::new, |g| g.windows())
    }

    /// Whether the node is a max-pool (either form).
    pub fn is_max_pool(&self) -> bool {
        self.max_pool_geometry().is_some()
    }
}

/// The general max-pool node of a window geometry (the inverse of [`Node::max_pool_geometry`]).
impl From<PoolGeometry> for Node {
    fn from(g: PoolGeometry) -> Node {
        Node::MaxPool {
            c: g.c,
            h: g.h,
            w: g.w,
            kh: g.kh,
            kw: g.kw,
            sh: g.sh,
            sw: g.sw,
            ph: g.ph,
            pw: g.pw,
        }
    }
}

/// How many values one input's forward pass through `nodes` produces: every node's output,
/// branches of residual blocks and concatenations included — what an autograd pass keeps per
/// point, so what sizes the gradient oracle's batches (`lipschitz::empirical::GradOracle`).
pub fn activation_len(nodes: &[Node], mut dim: usize) -> Result<usize> {
    let mut total = 0usize;
    for node in nodes {
        let out = out_dim(std::slice::from_ref(node), dim)?;
        total = total.saturating_add(out);
        match node {
            Node::Residual { main, shortcut } => {
                total = total
                    .saturating_add(activation_len(main, dim)?)
                    .saturating_add(activation_len(shortcut, dim)?);
            }
            Node::Concat { branches } => {
                for b in branches {
                    total = total.saturating_add(activation_len(b, dim)?);
                }
            }
            _ => {}
        }
        dim = out;
    }
    Ok(total)
}

/// The output length of `nodes` fed by vectors of length `dim`, or an error where a node does
/// not fit its input (the shapes a concatenation splits its output by).
pub fn out_dim(nodes: &[Node], mut dim: usize) -> Result<usize> {
    for node in nodes {
        dim = match node {
            Node::Affine(a) => {
                if a.op.map().in_dim() != dim {
                    return Err(Error::Internal(format!(
                        "{}: input length {dim}, expects {}",
                        a.name,
                        a.op.map().in_dim()
                    )));
                }
                a.op.map().out_dim()
            }
            Node::Relu => dim,
            Node::MaxPool2 { .. } | Node::MaxPool { .. } => {
                let g = node
                    .max_pool_geometry()
                    .ok_or_else(|| Error::Internal("max-pool without a geometry".into()))?;
                g.out_hw()?;
                if g.c * g.h * g.w != dim {
                    return Err(Error::Internal(format!(
                        "max-pool: input length {dim}, expects {}",
                        g.c * g.h * g.w
                    )));
                }
                g.out_len()
            }
            Node::Residual { main, shortcut } => {
                let (a, b) = (out_dim(main, dim)?, out_dim(shortcut, dim)?);
                if a != b {
                    return Err(Error::Internal("residual branches differ in length".into()));
                }
                a
            }
            Node::Concat { branches } if branches.is_empty() => {
                return Err(Error::Internal("a concatenation without branches".into()));
            }
            Node::Concat { branches } => branches
                .iter()
                .map(|b| out_dim(b, dim))
                .sum::<Result<usize>>()?,
        };
    }
    Ok(dim)
}

/// The output lengths of a concatenation's branches fed by vectors of length `dim`.
pub fn branch_dims(branches: &[Vec<Node>], dim: usize) -> Result<Vec<usize>> {
    branches.iter().map(|b| out_dim(b, dim)).collect()
}

/// Splits a box at a concatenation's output into its branches' parts.
pub fn split_box(b: &super::Interval, dims: &[usize]) -> Result<Vec<super::Interval>> {
    let lo = split_by(&b.lo, dims)?;
    let hi = split_by(&b.hi, dims)?;
    Ok(lo
        .into_iter()
        .zip(hi)
        .map(|(lo, hi)| super::Interval {
            lo: lo.to_vec(),
            hi: hi.to_vec(),
        })
        .collect())
}

/// Splits a vector at a concatenation's output into its branches' parts.
pub fn split_by<'v, T>(v: &'v [T], dims: &[usize]) -> Result<Vec<&'v [T]>> {
    if dims.iter().sum::<usize>() != v.len() {
        return Err(Error::Internal(format!(
            "concatenation: {} values for branches of lengths {dims:?}",
            v.len()
        )));
    }
    let mut out = Vec::with_capacity(dims.len());
    let mut start = 0;
    for d in dims {
        out.push(&v[start..start + d]);
        start += d;
    }
    Ok(out)
}

/// Indices into a `(c, h, w)` input of the four entries of each 2×2 window, output-major.
pub fn pool_windows(c: usize, h: usize, w: usize) -> Vec<[usize; 4]> {
    let (ho, wo) = (h / 2, w / 2);
    let mut v = Vec::with_capacity(c * ho * wo);
    for ch in 0..c {
        for i in 0..ho {
            for j in 0..wo {
                let base = ch * h * w + 2 * i * w + 2 * j;
                v.push([base, base + 1, base + w, base + w + 1]);
            }
        }
    }
    v
}

/// The network as host operations, input `(c, h, w)` flattened row-major, output the logits.
#[derive(Debug, Clone, PartialEq)]
pub struct Net {
    pub input_shape: [usize; 3],
    pub num_classes: usize,
    pub nodes: Vec<Node>,
}

/// A parameter tensor on the host; a NaN or infinite entry is bad input (every bound would be
/// NaN or meaningless).
fn host(t: &Tensor) -> Result<Vec<f64>> {
    let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    if let Some(x) = v.iter().find(|x| !x.is_finite()) {
        return Err(Error::BadInput(format!(
            "the model has a non-finite parameter ({x}): no bound can be computed"
        )));
    }
    Ok(v)
}

pub(super) fn conv_node(conv: &Conv2d, shape: &mut [usize; 3]) -> Result<Node> {
    let [c, h, w] = *shape;
    let d = conv.weight().dims().to_vec();
    if d.len() != 4 || d[1] != c {
        return Err(Error::Internal(format!(
            "{}: kernel {d:?} does not fit a {c}-channel input",
            conv.name()
        )));
    }
    let (ho, wo) = conv
        .output_hw(h, w)
        .ok_or_else(|| Error::Internal(format!("{}: kernel larger than input", conv.name())))?;
    let op = Conv {
        c_out: d[0],
        c_in: d[1],
        kh: d[2],
        kw: d[3],
        stride: conv.stride(),
        pad: conv.padding(),
        h,
        w,
        ho,
        wo,
        k: host(conv.weight())?,
    };
    *shape = [d[0], ho, wo];
    let bias = match conv.bias() {
        Some(b) => Some(
            host(b)?
                .iter()
                .flat_map(|&v| std::iter::repeat_n(v, ho * wo))
                .collect(),
        ),
        None => None,
    };
    Ok(Node::Affine(Affine {
        name: conv.name().to_string(),
        op: LinearOp::Conv(op),
        bias,
    }))
}

fn bn_node(bn: &BatchNorm2d, shape: &[usize; 3]) -> Result<Node> {
    let [c, h, w] = *shape;
    let (s, t) = bn.eval_scale_shift()?;
    let (s, t) = (host(&s)?, host(&t)?);
    if s.len() != c {
        return Err(Error::Internal(format!(
            "{}: {} channels, input has {c}",
            bn.name(),
            s.len()
        )));
    }
    let hw = h * w;
    Ok(Node::Affine(Affine {
        name: bn.name().to_string(),
        op: LinearOp::Diag(Diag {
            scale: s.iter().flat_map(|&v| std::iter::repeat_n(v, hw)).collect(),
        }),
        bias: Some(t.iter().flat_map(|&v| std::iter::repeat_n(v, hw)).collect()),
    }))
}

/// Appends the nodes of one model layer; `shape` is the current `(c, h, w)` and `flat` the width
/// once the activations are flat.
pub(super) fn lower_layer(
    layer: &Layer,
    shape: &mut [usize; 3],
    flat: &mut Option<usize>,
    nodes: &mut Vec<Node>,
) -> Result<()> {
    match layer {
        Layer::Normalize(n) => {
            let [c, h, w] = *shape;
            if n.mean().len() != c {
                return Err(Error::Internal(
                    "normalisation channels ≠ input channels".into(),
                ));
            }
            let hw = h * w;
            let scale = n
                .std()
                .iter()
                .flat_map(|&s| std::iter::repeat_n(1.0 / s as f64, hw))
                .collect();
            let bias = n
                .mean()
                .iter()
                .zip(n.std())
                .flat_map(|(&m, &s)| std::iter::repeat_n(-(m as f64) / s as f64, hw))
                .collect();
            nodes.push(Node::Affine(Affine {
                name: "normalize".into(),
                op: LinearOp::Diag(Diag { scale }),
                bias: Some(bias),
            }));
        }
        // Already flat after a global average pool (imported graphs flatten its (c, 1, 1)).
        Layer::Flatten => *flat = Some(flat.unwrap_or_else(|| shape.iter().product())),
        Layer::Linear(l) => {
            let inp = flat.unwrap_or_else(|| shape.iter().product());
            if l.in_features() != inp {
                return Err(Error::Internal(format!(
                    "{}: {} inputs, previous layer gives {inp}",
                    l.name(),
                    l.in_features()
                )));
            }
            nodes.push(Node::Affine(Affine {
                name: l.name().to_string(),
                op: LinearOp::Dense(Dense {
                    out: l.out_features(),
                    inp,
                    w: host(l.weight())?,
                }),
                bias: l.bias().map(host).transpose()?,
            }));
            *flat = Some(l.out_features());
        }
        Layer::Conv2d(conv) => nodes.push(conv_node(conv, shape)?),
        Layer::Relu => nodes.push(Node::Relu),
        Layer::MaxPool2 => {
            let [c, h, w] = *shape;
            nodes.push(Node::MaxPool2 { c, h, w });
            *shape = [c, h / 2, w / 2];
        }
        Layer::GlobalAvgPool => {
            let [c, h, w] = *shape;
            nodes.push(Node::Affine(Affine {
                name: "avgpool".into(),
                op: LinearOp::AvgPool(AvgPool::global(c, h, w)),
                bias: None,
            }));
            *flat = Some(c);
        }
        Layer::BatchNorm2d(bn) => nodes.push(bn_node(bn, shape)?),
        Layer::BasicBlock(b) => {
            let in_shape = *shape;
            let mut main = vec![conv_node(b.conv1(), shape)?];
            main.push(bn_node(b.bn1(), shape)?);
            main.push(Node::Relu);
            main.push(conv_node(b.conv2(), shape)?);
            main.push(bn_node(b.bn2(), shape)?);
            let shortcut = match b.shortcut() {
                Some((conv, bn)) => {
                    let mut s2 = in_shape;
                    let c = conv_node(conv, &mut s2)?;
                    if s2 != *shape {
                        return Err(Error::Internal(format!(
                            "{}: shortcut shape mismatch",
                            b.name()
                        )));
                    }
                    vec![c, bn_node(bn, &s2)?]
                }
                None => {
                    if in_shape != *shape {
                        return Err(Error::Internal(format!(
                            "{}: identity shortcut changes shape",
                            b.name()
                        )));
                    }
                    vec![]
                }
            };
            nodes.push(Node::Residual { main, shortcut });
            nodes.push(Node::Relu);
        }
        Layer::Pool(_) | Layer::Pad(_) | Layer::Concat(_) | Layer::Residual(_) => {
            super::net_graph::lower_graph_layer(layer, shape, flat, nodes)?
        }
    }
    Ok(())
}

impl Net {
    /// Copies a model's layers into host operations (evaluation mode).
    pub fn from_model(model: &Model) -> Result<Net> {
        let spec = model.spec();
        let mut shape = spec.input_shape;
        let mut flat: Option<usize> = None;
        let mut nodes = Vec::new();
        for layer in model.layers() {
            lower_layer(layer, &mut shape, &mut flat, &mut nodes)?;
        }
        Ok(Net {
            input_shape: spec.input_shape,
            num_classes: spec.num_classes,
            nodes,
        })
    }

    /// Input dimension c·h·w.
    pub fn input_dim(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// The logits f(x) in f64.
    pub fn forward(&self, x: &[f64]) -> Result<Vec<f64>> {
        if x.len() != self.input_dim() {
            return Err(Error::BadInput(format!(
                "input has {} values, the network expects {}",
                x.len(),
                self.input_dim()
            )));
        }
        forward_nodes(&self.nodes, x.to_vec())
    }
}

/// Runs `nodes` on `x` in f64.
pub fn forward_nodes(nodes: &[Node], mut x: Vec<f64>) -> Result<Vec<f64>> {
    for node in nodes {
        x = match node {
            Node::Affine(a) => {
                if x.len() != a.op.map().in_dim() {
                    return Err(Error::Internal(format!(
                        "{}: input length {}",
                        a.name,
                        x.len()
                    )));
                }
                a.forward(&x)
            }
            Node::Relu => x
                .into_iter()
                .map(|v| super::round::max_nan(v, 0.0))
                .collect(),
            Node::MaxPool2 { .. } | Node::MaxPool { .. } => {
                out_dim(std::slice::from_ref(node), x.len())?;
                node.pool_windows()
                    .iter()
                    .map(|win| {
                        win.iter()
                            .map(|&i| x[i])
                            .fold(f64::NEG_INFINITY, super::round::max_nan)
                    })
                    .collect()
            }
            Node::Residual { main, shortcut } => {
                let a = forward_nodes(main, x.clone())?;
                let b = forward_nodes(shortcut, x)?;
                if a.len() != b.len() {
                    return Err(Error::Internal("residual branches differ in length".into()));
                }
                a.iter().zip(&b).map(|(a, b)| a + b).collect()
            }
            Node::Concat { branches } => {
                out_dim(std::slice::from_ref(node), x.len())?;
                let mut out = Vec::new();
                for b in branches {
                    out.extend(forward_nodes(b, x.clone())?);
                }
                out
            }
        };
    }
    Ok(x)
}
