//! Lowering of the imported-graph layers (`oodcert import --onnx`) to [`Net`](super::net::Net)
//! nodes. Residual blocks become [`Node::Residual`]; average pooling and symmetric zero padding
//! are exact linear maps written as a [`Conv`] whose kernel is diagonal in the channels (average
//! pooling: 1/(k_h·k_w) on each window; padding: a 1×1 identity kernel with padding p), so every
//! existing convolution rule (IBP, CROWN, Jacobian, global norm bounds, the float32 error bound:
//! Σ of k terms times fl(1/k) is within γ_{c·k+1}) applies to them unchanged.

use super::conv::Conv;
use super::net::{Affine, LinearOp, Node, lower_layer};
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
            let (mut s_main, mut f_main, mut main) = (*shape, *flat, Vec::new());
            for l in &r.main {
                lower_layer(l, &mut s_main, &mut f_main, &mut main)?;
            }
            let (mut s_short, mut f_short, mut shortcut) = (*shape, *flat, Vec::new());
            for l in &r.shortcut {
                lower_layer(l, &mut s_short, &mut f_short, &mut shortcut)?;
            }
            if (s_main, f_main) != (s_short, f_short) {
                return Err(Error::Internal(format!(
                    "residual branches give shapes {s_main:?}/{f_main:?} and {s_short:?}/{f_short:?}"
                )));
            }
            nodes.push(Node::Residual { main, shortcut });
            (*shape, *flat) = (s_main, f_main);
        }
        Layer::Pool(p) if p.kind == PoolKind::Avg => {
            nodes.push(avg_pool_node(p, shape)?);
        }
        Layer::Pad(p) => nodes.push(pad_node(p, shape)?),
        Layer::Pool(_) | Layer::Concat(_) => {
            return Err(Error::BadInput(format!(
                "bound propagation does not yet cover the imported `{}` layer (general max-pool \
                 and channel concatenation come with the DAG bound rules of issue 13, part B); \
                 eval and certify (randomized smoothing) run on this model",
                layer.kind()
            )));
        }
        other => {
            return Err(Error::Internal(format!(
                "lower_graph_layer called on `{}`",
                other.kind()
            )));
        }
    }
    Ok(())
}

/// A convolution with kernel value `v` on the diagonal channel pairs and 0 elsewhere.
fn diagonal_conv(
    c: usize,
    [h, w]: [usize; 2],
    k: [usize; 2],
    stride: usize,
    pad: usize,
    v: f64,
) -> Conv {
    let [kh, kw] = k;
    let mut kernel = vec![0.0; c * c * kh * kw];
    for ch in 0..c {
        let at = (ch * c + ch) * kh * kw;
        kernel[at..at + kh * kw].fill(v);
    }
    Conv {
        c_out: c,
        c_in: c,
        kh,
        kw,
        stride,
        pad,
        h,
        w,
        ho: (h + 2 * pad - kh) / stride + 1,
        wo: (w + 2 * pad - kw) / stride + 1,
        k: kernel,
    }
}

fn avg_pool_node(p: &WindowPool, shape: &mut [usize; 3]) -> Result<Node> {
    let [c, h, w] = *shape;
    if p.stride[0] != p.stride[1] || p.pad[0] != p.pad[1] {
        return Err(Error::BadInput(format!(
            "bound propagation covers average pooling with equal strides and padding on both \
             axes, got stride {:?}, padding {:?}",
            p.stride, p.pad
        )));
    }
    let (ho, wo) = p
        .output_hw(h, w)
        .ok_or_else(|| Error::Internal("average pooling window larger than input".into()))?;
    let v = 1.0 / (p.kernel[0] * p.kernel[1]) as f64;
    let conv = diagonal_conv(c, [h, w], p.kernel, p.stride[0], p.pad[0], v);
    debug_assert_eq!((conv.ho, conv.wo), (ho, wo));
    *shape = [c, ho, wo];
    Ok(Node::Affine(Affine {
        name: "avg-pool".into(),
        op: LinearOp::Conv(conv),
        bias: None,
    }))
}

fn pad_node(p: &ZeroPad, shape: &mut [usize; 3]) -> Result<Node> {
    let [c, h, w] = *shape;
    let [t, l, b, r] = p.pads;
    if !(t == l && l == b && b == r) {
        return Err(Error::BadInput(format!(
            "bound propagation covers zero padding equal on all four sides, got \
             [top, left, bottom, right] = {:?}",
            p.pads
        )));
    }
    let conv = diagonal_conv(c, [h, w], [1, 1], 1, t, 1.0);
    *shape = [c, conv.ho, conv.wo];
    Ok(Node::Affine(Affine {
        name: "pad".into(),
        op: LinearOp::Conv(conv),
        bias: None,
    }))
}
