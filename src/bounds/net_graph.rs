//! Lowering of the imported-graph layers (`oodcert import --onnx`) to [`Net`](super::net::Net)
//! nodes: residual blocks to [`Node::Residual`], channel-concat blocks to [`Node::Concat`],
//! general max-pooling to [`Node::MaxPool`], average pooling (zero padding counted) to
//! [`LinearOp::AvgPool`] and zero padding to [`LinearOp::Pad`] — each the same map as the model
//! layer (checked by the f64 forward and float32-bound tests of tests/onnx_import.rs and
//! tests/f32_detector.rs).

use super::avg_pool::AvgPool;
use super::net::{Affine, LinearOp, Node, lower_layer};
use super::pad::Pad;
use super::pool_geometry::PoolGeometry;
use crate::error::{Error, Result};
use crate::model::layers::{Layer, PoolKind, WindowPool, ZeroPad};

/// Appends the nodes of a [`Layer::Pool`], [`Layer::Pad`], [`Layer::Concat`] or
/// [`Layer::Residual`].
pub(super) fn lower_graph_layer(
    layer: &Layer,
    shape: &mut [usize; 3],
    flat: &mut Option<usize>,
    nodes: &mut Vec<Node>,
) -> Result<()> {
    match layer {
        Layer::Residual(r) => {
            let (main, s_main, f_main) = lower_branch(&r.main, *shape, *flat)?;
            let (shortcut, s_short, f_short) = lower_branch(&r.shortcut, *shape, *flat)?;
            if dims(s_main, f_main) != dims(s_short, f_short) {
                return Err(Error::Internal(format!(
                    "residual branches give shapes {s_main:?}/{f_main:?} and {s_short:?}/{f_short:?}"
                )));
            }
            nodes.push(Node::Residual { main, shortcut });
            (*shape, *flat) = (s_main, f_main);
        }
        Layer::Concat(c) => {
            let mut branches = Vec::with_capacity(c.branches.len());
            let mut outs = Vec::with_capacity(c.branches.len());
            for b in &c.branches {
                let (nodes, s, f) = lower_branch(b, *shape, *flat)?;
                branches.push(nodes);
                outs.push((s, f));
            }
            let (s0, f0) = outs[0];
            if f0.is_some() || outs.iter().any(|o| o.1.is_some()) {
                // Flat vectors: the concatenation has the summed length.
                let total = outs.iter().map(|&(s, f)| dims(s, f)).sum();
                (*shape, *flat) = (s0, Some(total));
            } else {
                if outs.iter().any(|(s, _)| s[1..] != s0[1..]) {
                    return Err(Error::Internal(format!(
                        "concat branches give spatial shapes {outs:?}"
                    )));
                }
                let c = outs.iter().map(|(s, _)| s[0]).sum();
                (*shape, *flat) = ([c, s0[1], s0[2]], None);
            }
            nodes.push(Node::Concat { branches });
        }
        Layer::Pool(p) => nodes.push(pool_node(p, shape)?),
        Layer::Pad(p) => nodes.push(pad_node(p, shape)),
        other => {
            return Err(Error::Internal(format!(
                "lower_graph_layer called on `{}`",
                other.kind()
            )));
        }
    }
    Ok(())
}

/// The nodes of one branch fed by the current activations, and the shape after it.
fn lower_branch(
    layers: &[Layer],
    mut shape: [usize; 3],
    mut flat: Option<usize>,
) -> Result<(Vec<Node>, [usize; 3], Option<usize>)> {
    let mut nodes = Vec::new();
    for l in layers {
        lower_layer(l, &mut shape, &mut flat, &mut nodes)?;
    }
    Ok((nodes, shape, flat))
}

/// The length of the activations.
fn dims(shape: [usize; 3], flat: Option<usize>) -> usize {
    flat.unwrap_or_else(|| shape.iter().product())
}

fn pool_node(p: &WindowPool, shape: &mut [usize; 3]) -> Result<Node> {
    let [c, h, w] = *shape;
    let geo = PoolGeometry {
        c,
        h,
        w,
        kh: p.kernel[0],
        kw: p.kernel[1],
        sh: p.stride[0],
        sw: p.stride[1],
        ph: p.pad[0],
        pw: p.pad[1],
    };
    let (ho, wo) = geo.out_hw()?;
    *shape = [c, ho, wo];
    Ok(match p.kind {
        PoolKind::Max => Node::from(geo),
        // The model layer pads with zeros and divides by the kernel area.
        PoolKind::Avg => Node::Affine(Affine {
            name: "avg-pool".into(),
            op: LinearOp::AvgPool(AvgPool::new(geo, true)?),
            bias: None,
        }),
    })
}

fn pad_node(p: &ZeroPad, shape: &mut [usize; 3]) -> Node {
    let [c, h, w] = *shape;
    let [top, left, bottom, right] = p.pads;
    let pad = Pad {
        c,
        h,
        w,
        top,
        bottom,
        left,
        right,
    };
    let (ho, wo) = pad.out_hw();
    *shape = [c, ho, wo];
    Node::Affine(Affine {
        name: "pad".into(),
        op: LinearOp::Pad(pad),
        bias: None,
    })
}
