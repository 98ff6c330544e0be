//! Exact bounds of an affine chain over an ℓ_p ball (Hölder): for y = Rx + t and x ∈ B_p(x₀, ε),
//! y_j ∈ y_j(x₀) ± ε‖R_j‖_q, q the dual exponent. Used for the chain of affine nodes before a
//! network's first nonlinearity, at any width: the cost is one pass over the weights, and the ℓ2
//! ball never enters as its bounding cube (IBP's ±ε per pixel).
//!
//! The chain must be of the form D_post·A·D_pre (any number of diagonal maps — input
//! normalisation, BatchNorm — around at most one dense, convolution or average-pool map A), so
//! ‖R_j‖_q = |d_post,j|·‖A_j ⊙ d_pre‖_q: for q = 2 the square root of (A∘A)(d_pre²), for q = 1
//! |A|·|d_pre|. All those terms are non-negative, so the computed value is within a relative
//! γ_{n+m+8} of the exact one and [`widen_up`] with [`dot_err`] covers it; the value at the centre
//! comes from IBP on the point box (rounded outward). Proof: proofs/lipschitz_crown.md.

use super::ball::{Ball, Norm};
use super::conv::Conv;
use super::dense::Dense;
use super::interval::Interval;
use super::linear_map::{LinearMap, affine_image};
use super::net::{LinearOp, Node};
use super::round::{ABS_FLOOR, dot_err, next_down, next_up, widen_up};
use crate::error::Result;

/// The box of the output of `nodes` (all affine, of the form above) over the ball, or `None`
/// when the chain has another form (a nonlinearity, or two non-diagonal maps).
pub fn affine_chain_box(nodes: &[Node], ball: &Ball) -> Result<Option<Interval>> {
    let n_in = ball.center.len();
    let mut pre = vec![1.0; n_in];
    let mut general: Option<&LinearOp> = None;
    let mut post: Option<Vec<f64>> = None;
    let mut roundings = 0usize;
    for node in nodes {
        let Node::Affine(a) = node else {
            return Ok(None);
        };
        match (&a.op, general) {
            (LinearOp::Diag(d), None) if d.scale.len() == pre.len() => {
                pre.iter_mut().zip(&d.scale).for_each(|(p, s)| *p *= s);
            }
            (LinearOp::Diag(d), Some(g)) if d.scale.len() == g.map().out_dim() => {
                let p = post.get_or_insert_with(|| vec![1.0; d.scale.len()]);
                p.iter_mut().zip(&d.scale).for_each(|(p, s)| *p *= s);
            }
            (op, None) if !matches!(op, LinearOp::Diag(_)) && op.map().in_dim() == pre.len() => {
                general = Some(op);
            }
            _ => return Ok(None),
        }
        roundings += 1;
    }
    if nodes.is_empty() {
        return Ok(None);
    }
    // ‖R_j‖_q up to the (exact) factor ε.
    let (norms, terms) = match general {
        None => (pre.iter().map(|d| d.abs()).collect::<Vec<f64>>(), 1),
        Some(op) => (row_norms(op, &pre, ball.norm), op.map().fan_in()),
    };
    let rel = dot_err(terms + 2 * roundings + 8);
    let centre = ibp_point(nodes, &ball.center)?;
    let mut lo = Vec::with_capacity(norms.len());
    let mut hi = Vec::with_capacity(norms.len());
    for (j, nrm) in norms.iter().enumerate() {
        let scale = post.as_ref().map_or(1.0, |p| p[j].abs());
        let r = widen_up(ball.eps * nrm * scale, rel);
        lo.push(next_down(centre.lo[j] - r - ABS_FLOOR));
        hi.push(next_up(centre.hi[j] + r + ABS_FLOOR));
    }
    Ok(Some(Interval { lo, hi }))
}

/// An enclosure of the chain's value at one point (IBP on the degenerate box).
fn ibp_point(nodes: &[Node], x: &[f64]) -> Result<Interval> {
    let mut cur = Interval::point(x);
    for node in nodes {
        if let Node::Affine(a) = node {
            cur = affine_image(a.op.map(), a.bias.as_deref(), &cur)?;
        }
    }
    Ok(cur)
}

/// Per output row j, ‖A_j ⊙ d‖_q (q = 2: the square root of Σ_k A_jk² d_k²; q = 1: Σ_k |A_jk d_k|),
/// computed from non-negative terms only (the squared maps have
/// non-negative entries and act on d² ≥ 0).
fn row_norms(op: &LinearOp, d: &[f64], norm: Norm) -> Vec<f64> {
    match norm {
        Norm::Linf => {
            let ad: Vec<f64> = d.iter().map(|v| v.abs()).collect();
            op.map().apply(&ad, true)
        }
        Norm::L2 => {
            let d2: Vec<f64> = d.iter().map(|v| v * v).collect();
            let sq = match op {
                LinearOp::Dense(m) => Dense {
                    w: m.w.iter().map(|v| v * v).collect(),
                    ..m.clone()
                }
                .apply(&d2, false),
                LinearOp::Conv(m) => Conv {
                    k: m.k.iter().map(|v| v * v).collect(),
                    ..m.clone()
                }
                .apply(&d2, false),
                LinearOp::AvgPool(m) => {
                    // Row k is 1/n_k on its window: Σ d_i²/n_k² = (window mean of d²)/n_k.
                    let mean = op.map().apply(&d2, true);
                    mean.iter()
                        .enumerate()
                        .map(|(k, v)| v * m.coef(k))
                        .collect()
                }
                // A 0/1 map that copies: squaring changes nothing.
                LinearOp::Pad(m) => m.apply(&d2, false),
                LinearOp::Diag(m) => m.scale.iter().zip(&d2).map(|(s, v)| s * s * v).collect(),
            };
            sq.iter().map(|v| v.sqrt()).collect()
        }
    }
}
