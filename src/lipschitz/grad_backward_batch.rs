//! [`grad_backward`] for many gradient boxes through the same network at once (FastLip's backward
//! step, Weng et al. 2018): through a dense layer the boxes' centres, radii and magnitudes become
//! three GEMMs with W and |W| instead of three matrix–vector passes per box, so W is read once per
//! layer rather than once per box (the pattern-Gram expansion pulls back dozens of columns per
//! branch-and-bound domain).
//!
//! Rounding, as in `linear_map::interval_image` (whose rule this is, row by row): every entry of
//! C·W, R·|W| and M·|W| is a sum of `fan_out` products in some order (GEMM blocking and FMA change
//! the order and the number of roundings, not the number of terms), so each is within
//! γ_fan_out·(M·|W|) of its exact value, and the slack dot_err(fan_out + 1)·mag covers the three
//! errors together as it does for the sequential passes.

use crate::bounds::linear_map::adjoint_image;
use crate::bounds::net::LinearOp;
use crate::bounds::round::{ABS_FLOOR, dot_err, lift, next_down, next_up, off_the_subnormals};
use crate::bounds::{Interval, Node, ibp::Trace, relu};
use crate::error::{Error, Result};
use crate::lipschitz::local::grad_backward;
use crate::model::layers::gemm::{Mat, gemm_into};

/// `grad_backward(nodes, traces, g)` for every `g` in `gs` (boxes of one length), each a valid
/// enclosure of {Jᵀg} as the single-box rule gives (not the same bits: the sums run in another
/// order). Dense layers are batched; other affine maps go box by box, and networks with nodes
/// other than affine maps and ReLUs go through [`grad_backward`] box by box.
pub fn grad_backward_many(
    nodes: &[Node],
    traces: &[Trace],
    gs: Vec<Interval>,
) -> Result<Vec<Interval>> {
    if nodes.len() != traces.len() {
        return Err(Error::Internal("trace does not match the network".into()));
    }
    let batched = nodes
        .iter()
        .all(|n| matches!(n, Node::Affine(_) | Node::Relu));
    if !batched || gs.len() < 2 {
        return gs
            .into_iter()
            .map(|g| grad_backward(nodes, traces, g))
            .collect();
    }
    let mut gs = gs;
    for (node, trace) in nodes.iter().zip(traces).rev() {
        gs = match node {
            Node::Affine(a) => match &a.op {
                LinearOp::Dense(d) => dense_adjoint_many(d, &gs)?,
                // Diagonal maps (normalisation), pads, pools, convolutions: box by box.
                op => gs
                    .iter()
                    .map(|g| adjoint_image(op.map(), g))
                    .collect::<Result<_>>()?,
            },
            Node::Relu => gs
                .iter()
                .map(|g| relu::grad_back(trace.input(), g))
                .collect(),
            _ => unreachable!("checked above: affine and ReLU nodes only"),
        };
    }
    Ok(gs)
}

/// {Wᵀg : g ∈ box} ⊆ the returned box, for every box (the adjoint image of
/// `linear_map::adjoint_image`, by GEMMs over the boxes' rows).
fn dense_adjoint_many(d: &crate::bounds::dense::Dense, gs: &[Interval]) -> Result<Vec<Interval>> {
    let (m, out, inp) = (gs.len(), d.out, d.inp);
    if let Some(g) = gs.iter().find(|g| g.len() != out) {
        return Err(Error::Internal(format!(
            "adjoint image: vector of length {}, map expects {out}",
            g.len()
        )));
    }
    let (mut c, mut r, mut mag_in) = (
        Vec::with_capacity(m * out),
        Vec::with_capacity(m * out),
        Vec::with_capacity(m * out),
    );
    for g in gs {
        let (gc, gr) = g.center_radius();
        for (&ci, &ri) in gc.iter().zip(&gr) {
            let (ci, ri) = off_the_subnormals(ci, ri);
            mag_in.push(lift(next_up(ci.abs() + ri)));
            c.push(ci);
            r.push(ri);
        }
    }
    let wabs: Vec<f64> = d.w.iter().map(|w| w.abs()).collect();
    let w = Mat::row_major(&d.w, out, inp);
    let wa = Mat::row_major(&wabs, out, inp);
    let product = |lhs: &[f64], rhs| -> Result<Vec<f64>> {
        let mut dst = vec![0.0; m * inp];
        gemm_into(&mut dst, Mat::row_major(lhs, m, out), rhs, false, false)?;
        Ok(dst)
    };
    let yc = product(&c, w)?;
    let yr = product(&r, wa)?;
    let mag = product(&mag_in, wa)?;
    let e = dot_err(out + 1);
    Ok((0..m)
        .map(|b| {
            let row = b * inp..(b + 1) * inp;
            let (yc, yr, mag) = (&yc[row.clone()], &yr[row.clone()], &mag[row]);
            let mut lo = Vec::with_capacity(inp);
            let mut hi = Vec::with_capacity(inp);
            for i in 0..inp {
                let slack = e * mag[i] + ABS_FLOOR;
                lo.push(next_down(yc[i] - yr[i] - slack));
                hi.push(next_up(yc[i] + yr[i] + slack));
            }
            Interval { lo, hi }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::dense::Dense;
    use crate::bounds::ibp::ibp;
    use crate::bounds::net::Affine;
    use rand::{Rng, SeedableRng};

    fn dense(out: usize, inp: usize, r: &mut rand_chacha::ChaCha8Rng) -> Node {
        Node::Affine(Affine {
            name: "fc".into(),
            op: LinearOp::Dense(Dense {
                out,
                inp,
                w: (0..out * inp).map(|_| r.random_range(-1.0..1.0)).collect(),
            }),
            bias: Some((0..out).map(|_| r.random_range(-0.5..0.5)).collect()),
        })
    }

    /// On random dense ReLU chains behind a diagonal normalisation (boxes with stable and unstable neurons), every batched box
    /// contains the sequential rule's box up to the two orders' rounding (the slack), is no wider
    /// than it by more than that, and contains Jᵀg for gradients g and ReLU derivatives sampled
    /// in their sets; a batch of one and mismatched lengths take the checked paths.
    #[test]
    fn batched_boxes_match_the_sequential_rule_and_contain_sampled_products() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for seed in 0..6 {
            let (n, h1, h2, k) = (9 + seed, 14, 11, 5);
            // A diagonal normalisation first (box by box), then dense layers (batched).
            let diag = Node::Affine(Affine {
                name: "normalize".into(),
                op: LinearOp::Diag(crate::bounds::diag::Diag {
                    scale: (0..n).map(|_| r.random_range(0.5..4.0)).collect(),
                }),
                bias: Some(vec![-0.4; n]),
            });
            let nodes = vec![
                diag,
                dense(h1, n, &mut r),
                Node::Relu,
                dense(h2, h1, &mut r),
                Node::Relu,
                dense(k, h2, &mut r),
            ];
            let x0: Vec<f64> = (0..n).map(|_| r.random_range(0.0..1.0)).collect();
            let eps = 0.05 * (seed + 1) as f64;
            let input = Interval {
                lo: x0.iter().map(|v| v - eps).collect(),
                hi: x0.iter().map(|v| v + eps).collect(),
            };
            let (traces, _) = ibp(&nodes, input).unwrap();
            let gs: Vec<Interval> = (0..7)
                .map(|b| {
                    let c: Vec<f64> = (0..k).map(|_| r.random_range(-1.0..1.0)).collect();
                    let w = if b % 2 == 0 { 0.0 } else { 0.3 };
                    Interval {
                        lo: c.iter().map(|v| v - w).collect(),
                        hi: c.iter().map(|v| v + w).collect(),
                    }
                })
                .collect();
            let many = grad_backward_many(&nodes, &traces, gs.clone()).unwrap();
            for (g, got) in gs.iter().zip(&many) {
                let want = grad_backward(&nodes, &traces, g.clone()).unwrap();
                for i in 0..n {
                    let tol = 1e-12 * (1.0 + want.hi[i].abs() + want.lo[i].abs());
                    assert!(got.lo[i] <= want.lo[i] + tol && got.hi[i] >= want.hi[i] - tol);
                    assert!(got.lo[i] >= want.lo[i] - tol && got.hi[i] <= want.hi[i] + tol);
                }
                // Sampled members: g in its box, ReLU derivatives in their sets.
                for _ in 0..200 {
                    let mut v: Vec<f64> =
                        (0..k).map(|j| r.random_range(g.lo[j]..=g.hi[j])).collect();
                    for (node, t) in nodes.iter().zip(&traces).rev() {
                        v = match node {
                            Node::Affine(a) => a.op.map().apply_t(&v, false),
                            _ => {
                                let pre = t.input();
                                (0..v.len())
                                    .map(|i| {
                                        let (dl, dh) = relu::derivative_set(pre.lo[i], pre.hi[i]);
                                        v[i] * r.random_range(dl..=dh)
                                    })
                                    .collect()
                            }
                        };
                    }
                    for (i, vi) in v.iter().enumerate() {
                        assert!(got.lo[i] <= *vi && *vi <= got.hi[i], "seed {seed} {i}");
                    }
                }
            }
            let one = grad_backward_many(&nodes, &traces, gs[..1].to_vec()).unwrap();
            assert_eq!(
                one[0],
                grad_backward(&nodes, &traces, gs[0].clone()).unwrap()
            );
            let bad = vec![Interval::point(&[1.0; 3]), Interval::point(&[1.0; 3])];
            assert!(grad_backward_many(&nodes, &traces, bad).is_err());
        }
    }
}
