//! The network as seen by the RecurJac recursion ([`super::jacobian_recursion`]): one [`Op`] per
//! node with the Clarke derivative set of each nonlinearity on the traced pre-activation boxes —
//! ReLU derivatives in {0}, {1} or [0, 1], max-pool windows routed to the entries that can be
//! maximal — and residual blocks as two branches that add at the join. Also the exact
//! backward box steps of the local nodes and the sparse forward products the recursion uses.
//! Proof: proofs/lipschitz_recurjac.md.

use crate::bounds::ibp::Trace;
use crate::bounds::net::{LinearOp, Node, out_dim};
use crate::bounds::{Interval, max_pool, relu};
use crate::error::{Error, Result};

/// Why RecurJac does not apply to `net` (`None` when it does): the last node must be affine (the
/// logits); ReLU, max-pool, residual and concatenation nodes are supported anywhere before it.
pub fn unsupported(net: &crate::bounds::Net) -> Option<String> {
    match net.nodes.last() {
        Some(Node::Affine(_)) => None,
        Some(_) => Some("a network whose last node is not affine".into()),
        None => Some("an empty network".into()),
    }
}

/// One node of the recursion; `id` indexes the per-recursion slots (boxes and rounding weights).
pub(crate) enum Op<'a> {
    /// y ↦ A y + b; slot `id` holds h = |A|ᵀM with M ≥ |gradient at the output|.
    Affine { op: &'a LinearOp, id: usize },
    /// ReLU with derivative box [dl, du] per entry; slot `id` holds the gradient box at its output.
    Relu {
        dl: Vec<f64>,
        du: Vec<f64>,
        id: usize,
    },
    /// Max-pool (any windows): per window, the input entries that can be maximal on the box; slot `id`
    /// holds the gradient box at its output.
    Pool {
        cand: Vec<Vec<usize>>,
        in_dim: usize,
        id: usize,
    },
    /// main(y) + shortcut(y); slot `id` holds M ≥ |gradient at the join| (rounding of the sum).
    Residual {
        main: Vec<Op<'a>>,
        shortcut: Vec<Op<'a>>,
        id: usize,
    },
    /// [B₁(y); …; B_n(y)] with the branches' output lengths `dims` (no slot of its own).
    Concat {
        branches: Vec<Vec<Op<'a>>>,
        dims: Vec<usize>,
    },
}

/// The ops of `nodes` fed by vectors of length `dim`, with their traced input boxes; returns the
/// ops and the output length. `next` counts the slots.
pub(crate) fn plan<'a>(
    nodes: &'a [Node],
    traces: &[Trace],
    mut dim: usize,
    next: &mut usize,
) -> Result<(Vec<Op<'a>>, usize)> {
    if nodes.len() != traces.len() {
        return Err(Error::Internal(
            "RecurJac: trace does not match the network".into(),
        ));
    }
    let bad = |what: &str| Error::Internal(format!("RecurJac: {what} does not fit its input"));
    let mut ops = Vec::with_capacity(nodes.len());
    for (node, trace) in nodes.iter().zip(traces) {
        let id = *next;
        *next += 1;
        let z = trace.input();
        if z.len() != dim {
            return Err(bad("a traced box"));
        }
        ops.push(match (node, trace) {
            (Node::Affine(a), _) => {
                if a.op.map().in_dim() != dim {
                    return Err(bad(&a.name));
                }
                dim = a.op.map().out_dim();
                Op::Affine { op: &a.op, id }
            }
            (Node::Relu, _) => {
                let (dl, du) = (0..dim)
                    .map(|j| relu::derivative_set(z.lo[j], z.hi[j]))
                    .unzip();
                Op::Relu { dl, du, id }
            }
            (Node::MaxPool2 { .. } | Node::MaxPool { .. }, _) => {
                if out_dim(std::slice::from_ref(node), dim).is_err() {
                    return Err(bad("a max-pool"));
                }
                let cand: Vec<Vec<usize>> = node
                    .pool_windows()
                    .iter()
                    .map(|win| max_pool::candidates(z, win))
                    .collect();
                if cand.iter().any(|cs| cs.is_empty()) {
                    return Err(Error::Internal("RecurJac: a NaN max-pool box".into()));
                }
                let in_dim = dim;
                dim = cand.len();
                Op::Pool { cand, in_dim, id }
            }
            (Node::Concat { branches }, Trace::Concat { branches: tb, .. })
                if tb.len() == branches.len() =>
            {
                let mut ops = Vec::with_capacity(branches.len());
                let mut dims = Vec::with_capacity(branches.len());
                for (b, t) in branches.iter().zip(tb) {
                    let (o, d) = plan(b, t, dim, next)?;
                    ops.push(o);
                    dims.push(d);
                }
                dim = dims.iter().sum();
                Op::Concat {
                    branches: ops,
                    dims,
                }
            }
            (
                Node::Residual { main, shortcut },
                Trace::Residual {
                    main: tm,
                    shortcut: ts,
                    ..
                },
            ) => {
                let (main, dm) = plan(main, tm, dim, next)?;
                let (shortcut, ds) = plan(shortcut, ts, dim, next)?;
                if dm != ds {
                    return Err(bad("a residual branch"));
                }
                dim = dm;
                Op::Residual { main, shortcut, id }
            }
            (Node::Residual { .. } | Node::Concat { .. }, _) => {
                return Err(Error::Internal(
                    "residual or concatenation node without its branch traces".into(),
                ));
            }
        });
    }
    Ok((ops, dim))
}

/// Multiply-adds of one dense forward pass through `ops`: an upper estimate of the cost of one
/// push (pushes skip the zero entries of the direction).
pub(crate) fn forward_work(ops: &[Op]) -> f64 {
    ops.iter()
        .map(|op| match op {
            Op::Affine { op, .. } => {
                let m = op.map();
                m.out_dim() as f64 * m.fan_in() as f64
            }
            Op::Relu { dl, .. } => dl.len() as f64,
            Op::Pool { in_dim, .. } => *in_dim as f64,
            Op::Residual { main, shortcut, .. } => forward_work(main) + forward_work(shortcut),
            Op::Concat { branches, .. } => branches.iter().map(|b| forward_work(b)).sum(),
        })
        .sum()
}

/// {d ⊙ a : d ∈ [dl, du] ⊆ [0, 1], a ∈ box} (exact).
pub(crate) fn scale_box(dl: &[f64], du: &[f64], a: &Interval) -> Interval {
    let f = |d0: f64, d1: f64, v: f64, lo: bool| {
        if lo {
            (d0 * v).min(d1 * v)
        } else {
            (d0 * v).max(d1 * v)
        }
    };
    Interval {
        lo: (0..a.len())
            .map(|i| f(dl[i], du[i], a.lo[i], true))
            .collect(),
        hi: (0..a.len())
            .map(|i| f(dl[i], du[i], a.hi[i], false))
            .collect(),
    }
}

/// {Pᵀa : P a Clarke Jacobian of the pool on the box, a ∈ box} ⊆ the returned box (exact, the
/// FastLip rule of `max_pool::grad_back`): a unique candidate receives a_k, several receive
/// λ·a_k with λ ∈ [0, 1], the others 0; overlapping windows add (rounded outward).
pub(crate) fn pool_back(cand: &[Vec<usize>], in_dim: usize, a: &Interval) -> Interval {
    max_pool::route_back(cand, in_dim, a)
}

/// A·c touching only the non-zero entries of c for dense and convolution maps (the order of
/// a sum does not change its rounding bound: each output is still a sum of ≤ fan-in products).
pub(crate) fn apply_sparse(op: &LinearOp, c: &[f64]) -> Vec<f64> {
    match op {
        LinearOp::Dense(d) => {
            let mut v = vec![0.0; d.out];
            for (i, &ci) in c.iter().enumerate().take(d.inp) {
                if ci != 0.0 {
                    for (o, vo) in v.iter_mut().enumerate() {
                        *vo += d.w[o * d.inp + i] * ci;
                    }
                }
            }
            v
        }
        LinearOp::Conv(k) => {
            let (hw, ohw) = (k.h * k.w, k.ho * k.wo);
            let mut v = vec![0.0; k.c_out * ohw];
            let (s, p) = (k.stride, k.pad);
            for (idx, &ci) in c.iter().enumerate().take(k.c_in * hw) {
                if ci == 0.0 {
                    continue;
                }
                let (ch, y, x) = (idx / hw, idx % hw / k.w, idx % k.w);
                // Output (i, j) reads input (i·s + a − p, j·s + b − p).
                for a in 0..k.kh {
                    let Some(i) = out_index(y + p, a, s, k.ho) else {
                        continue;
                    };
                    for b in 0..k.kw {
                        let Some(j) = out_index(x + p, b, s, k.wo) else {
                            continue;
                        };
                        for o in 0..k.c_out {
                            v[o * ohw + i * k.wo + j] += k.at(o, ch, a, b) * ci;
                        }
                    }
                }
            }
            v
        }
        _ => op.map().apply(c, false),
    }
}

/// The output index i with i·s + a = y_padded, if any and < n.
fn out_index(y_padded: usize, a: usize, s: usize, n: usize) -> Option<usize> {
    let t = y_padded.checked_sub(a)?;
    (t % s == 0 && t / s < n).then_some(t / s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::LinearMap;
    use crate::bounds::conv::Conv;

    #[test]
    fn sparse_conv_matches_the_dense_product() {
        for (stride, pad, h) in [(1, 0, 5), (1, 1, 4), (2, 1, 5), (2, 0, 6)] {
            let (kh, c_in, c_out) = (3, 2, 3);
            let ho = (h + 2 * pad - kh) / stride + 1;
            let k: Vec<f64> = (0..c_out * c_in * kh * kh)
                .map(|i| ((i * 7919) % 13) as f64 - 6.0)
                .collect();
            let conv = Conv {
                c_out,
                c_in,
                kh,
                kw: kh,
                stride,
                pad,
                h,
                w: h,
                ho,
                wo: ho,
                k,
            };
            let x: Vec<f64> = (0..c_in * h * h)
                .map(|i| {
                    if i % 3 == 0 {
                        0.0
                    } else {
                        (i % 5) as f64 - 2.0
                    }
                })
                .collect();
            let dense = conv.apply(&x, false);
            let sparse = apply_sparse(&LinearOp::Conv(conv), &x);
            assert_eq!(dense.len(), sparse.len());
            for (a, b) in dense.iter().zip(&sparse) {
                assert!(
                    (a - b).abs() <= 1e-12,
                    "stride {stride} pad {pad}: {a} vs {b}"
                );
            }
        }
    }
}
