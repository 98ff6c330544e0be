//! The split constraints of the first ReLU layer as halfspaces of the input: before any ReLU the
//! pre-activation is exactly affine, zⱼ(x) = aⱼᵀ(x − x₀) + cⱼ, so a split sⱼzⱼ ≥ 0 cuts the
//! ball, and every CROWN bound of the domain may be concretised over the cut ball
//! ([`crate::bounds::ball_cuts`]; β-CROWN's split constraints, Wang et al. 2021, on the input).
//! Proof: proofs/lipschitz_bab.md, "Split cuts".

use super::domain::{ACTIVE, FREE, INACTIVE, Problem};
use crate::bounds::ball_cuts::Cut;
use crate::bounds::ibp::Trace;
use crate::bounds::linear_map::affine_image;
use crate::bounds::{Interval, Node};
use crate::error::Result;
use crate::lipschitz::local::grad_backward;

/// The first top-level ReLU node when every node before it is affine (None otherwise).
pub fn first_relu(nodes: &[Node]) -> Option<usize> {
    let i = nodes.iter().position(|n| matches!(n, Node::Relu))?;
    nodes[..i]
        .iter()
        .all(|n| matches!(n, Node::Affine(_)))
        .then_some(i)
}

/// The cuts of the split neurons of the first ReLU node (`traces`: the domain's node-input boxes
/// up to at least that node; the prefix is affine, so they do not enter the rows).
pub(crate) fn first_layer_cuts(
    p: &Problem,
    splits: &[Vec<i8>],
    traces: &[Trace],
) -> Result<Vec<Cut>> {
    let nodes = &p.net.nodes;
    let Some(i0) = first_relu(nodes) else {
        return Ok(Vec::new());
    };
    let s = &splits[i0];
    if s.iter().all(|&st| st == FREE) || traces.len() < i0 {
        return Ok(Vec::new());
    }
    let mut x0 = Interval::point(&p.ball.center);
    for node in &nodes[..i0] {
        if let Node::Affine(a) = node {
            x0 = affine_image(a.op.map(), a.bias.as_deref(), &x0)?;
        }
    }
    let mut out = Vec::new();
    for (j, &st) in s.iter().enumerate() {
        if st != ACTIVE && st != INACTIVE {
            continue;
        }
        let cached = p.row_cache.get((i0, j));
        let a = match cached {
            Some(r) => r,
            None => {
                let mut e = vec![0.0; s.len()];
                e[j] = 1.0;
                let r = grad_backward(&nodes[..i0], &traces[..i0], Interval::point(&e))?;
                p.row_cache.insert((i0, j), r.clone());
                r
            }
        };
        out.push(Cut {
            a,
            c: (x0.lo[j], x0.hi[j]),
            s: if st == ACTIVE { 1.0 } else { -1.0 },
        });
    }
    Ok(out)
}
