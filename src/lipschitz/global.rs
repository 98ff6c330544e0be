//! Certified global Lipschitz bounds of S = −T·logsumexp(f/T) (theory.md §1–2).
//!
//! S is 1-Lipschitz in the logits for ℓ∞ (‖p‖₁ = 1) and ℓ2 (‖p‖₂ ≤ 1), so Lip_p(S) ≤
//! Lip_{p→∞}(f). ReLU and 2×2/stride-2 max-pool are 1-Lipschitz in ℓ2 and ℓ∞ (a max-pool whose
//! windows overlap: √(most windows per entry) in ℓ2); a residual block is bounded by Lip(main) +
//! Lip(shortcut) (1 for the identity), a concatenation by √(Σ Lip(branch)²) in ℓ2 and the largest
//! branch bound in ℓ∞. Two compositions are reported:
//! - `naive`: the product of every layer's own norm (normalisation and BatchNorm separately,
//!   the last layer in ℓp → ℓp);
//! - `folded`: diagonal maps (normalisation, BatchNorm) folded into the adjacent dense or
//!   convolution layer before taking norms, and the last layer measured ℓp → ℓ∞ (largest row
//!   ℓq norm), which S's 1-Lipschitzness in ℓ∞ of the logits allows.
//!
//! Every factor records the rule that produced it.

use super::operator_norm::{
    NormBudget, conv_l2_upper_with, conv_linf_upper, l2_to_linf_upper, linf_upper, spectral_upper,
};
use crate::bounds::net::{Affine, LinearOp, Net, Node};
use crate::bounds::round::next_up;
use crate::bounds::{Norm, avg_pool::AvgPool, conv::Conv, dense::Dense, diag::Diag};
use crate::error::Result;
use serde::Serialize;

/// One factor of a product bound: which layer, by which rule, what value.
#[derive(Debug, Clone, Serialize)]
pub struct Factor {
    pub layer: String,
    pub rule: String,
    pub value: f64,
}

/// The global bounds of Lip_p(S) with their factors; `value` = min(naive, folded).
#[derive(Debug, Clone, Serialize)]
pub struct GlobalBound {
    pub norm: Norm,
    pub naive: f64,
    pub folded: f64,
    pub value: f64,
    pub naive_factors: Vec<Factor>,
    pub folded_factors: Vec<Factor>,
}

fn mul_up(a: f64, b: f64) -> f64 {
    next_up(a * b)
}

/// A certified ‖A‖_{p→p} of one linear operation with its rule.
pub(crate) fn op_norm(op: &LinearOp, norm: Norm, budget: NormBudget) -> (f64, String) {
    match (op, norm) {
        (LinearOp::Dense(d), Norm::L2) => (
            spectral_upper(d.out, d.inp, &d.w),
            "exact SVD (Gram eigen) + rounding margin".into(),
        ),
        (LinearOp::Dense(d), Norm::Linf) => (
            linf_upper(d.out, d.inp, &d.w),
            "max absolute row sum".into(),
        ),
        (LinearOp::Conv(c), Norm::L2) => conv_l2_upper_with(c, budget),
        (LinearOp::Conv(c), Norm::Linf) => (
            conv_linf_upper(c),
            "max absolute kernel sum per output channel".into(),
        ),
        (LinearOp::Diag(d), _) => (
            next_up(d.scale.iter().fold(0.0f64, |m, v| m.max(v.abs()))),
            "diagonal: max |scale|".into(),
        ),
        (LinearOp::AvgPool(a), Norm::L2) => (
            avg_pool_l2_upper(a),
            "average pool: sqrt(max column sum * max row sum)".into(),
        ),
        (LinearOp::AvgPool(_), Norm::Linf) => {
            (1.0, "average pool: 1 (row sums n_real/divisor <= 1)".into())
        }
        (LinearOp::Pad(_), _) => (1.0, "zero padding: an isometry onto its image".into()),
    }
}

/// ‖A‖₂ ≤ √(‖A‖₁‖A‖∞) (Hölder/Riesz–Thorin; proofs/lipschitz_operator_norms.md) for an average
/// pool with non-negative entries: ‖A‖₁ the largest column sum Σ_{windows ∋ i} 1/n_k, ‖A‖∞ the
/// largest row sum; both computed with rounding and widened (at most fan-out / fan-in terms).
/// Global pooling gives 1/√(hw).
fn avg_pool_l2_upper(a: &AvgPool) -> f64 {
    use crate::bounds::LinearMap;
    use crate::bounds::round::{dot_err, widen_up};
    let col = a.apply_t(&vec![1.0; a.out_dim()], false);
    let row = a.apply(&vec![1.0; a.in_dim()], false);
    let max = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(*x));
    let c = widen_up(max(&col), dot_err(a.fan_out()));
    let r = widen_up(max(&row), dot_err(a.fan_in()));
    next_up(next_up(next_up(c * r).sqrt()))
}

/// The head rule: ‖W‖_{p→∞} for the last layer (S is 1-Lipschitz in ℓ∞ of the logits).
pub(crate) fn head_norm(op: &LinearOp, norm: Norm, budget: NormBudget) -> (f64, String) {
    match (op, norm) {
        (LinearOp::Dense(d), Norm::L2) => (
            l2_to_linf_upper(d.out, d.inp, &d.w),
            "head l2->linf: max row l2 norm".into(),
        ),
        _ => op_norm(op, norm, budget),
    }
}

/// One op of a folded segment: its name, the computed op Â and `rel`, a bound on the relative
/// rounding of its entries: the exact composition A satisfies |A − Â| ≤ rel·|Â| entrywise
/// (0 when nothing was folded into it).
pub(crate) struct Folded {
    pub name: String,
    pub op: LinearOp,
    pub rel: f64,
}

/// |A − Â| ≤ rel·|Â| after `n` roundings of each entry: Â = A·Π(1+δ), |δ| ≤ u = ε/2, so
/// |A − Â| ≤ ((1+u)ⁿ − 1)/(1−u)ⁿ·|Â| ≤ 2nu(1 + 2nu)|Â| ≤ 2nε|Â| while nu ≤ ½.
fn fold_rel(n: u32) -> f64 {
    2.0 * f64::from(n) * f64::EPSILON
}

/// Folds consecutive affine nodes: a diagonal map before or after a dense/conv layer is
/// absorbed into it (per channel for convolutions), so one norm covers the composition. Each
/// product of entries is rounded to nearest, so the computed op is not the exact composition:
/// every consumer adds [`fold_slack`] (proofs/lipschitz_operator_norms.md, "Folding").
pub(crate) fn fold(affines: &[&Affine]) -> Vec<Folded> {
    let mut out: Vec<(String, LinearOp, u32)> = Vec::new();
    // A diagonal not yet absorbed, with the roundings of its entries so far.
    let mut pending: Option<(String, Vec<f64>, u32)> = None;
    for a in affines {
        match &a.op {
            LinearOp::Diag(d) => {
                // After a dense/conv core: absorb as a row scaling when possible.
                if pending.is_none()
                    && let Some((name, last, n)) = out.last_mut()
                    && let Some(folded) = scale_rows(last, &d.scale)
                {
                    *last = folded;
                    *name = format!("{name}+{}", a.name);
                    *n += 1;
                    continue;
                }
                pending = Some(match pending.take() {
                    Some((n, s, r)) => (
                        format!("{n}+{}", a.name),
                        s.iter().zip(&d.scale).map(|(x, y)| x * y).collect(),
                        r + 1,
                    ),
                    None => (a.name.clone(), d.scale.clone(), 0),
                });
            }
            core => {
                let mut op = core.clone();
                let mut name = a.name.clone();
                let mut rounds = 0;
                if let Some((n, s, r)) = pending.take() {
                    match scale_cols(&op, &s) {
                        Some(folded) => {
                            op = folded;
                            name = format!("{n}+{name}");
                            rounds = r + 1;
                        }
                        None => out.push((n, LinearOp::Diag(Diag { scale: s }), r)),
                    }
                }
                out.push((name, op, rounds));
            }
        }
    }
    if let Some((n, s, r)) = pending {
        out.push((n, LinearOp::Diag(Diag { scale: s }), r));
    }
    out.into_iter()
        .map(|(name, op, n)| Folded {
            name,
            op,
            rel: fold_rel(n),
        })
        .collect()
}

/// An additive slack covering the fold's rounding in every norm the bounds take of a folded op
/// or of any restriction of it (ℓ2, ℓ∞, ℓ2→ℓ∞, row dual norms): with E = A − Â, each of these
/// norms of E is at most Σ|E_ij| ≤ rel·Σ|Â_ij| over the unrolled matrix (a convolution's kernel
/// entry appears in at most h_out·w_out rows), so ‖A‖ ≤ ‖Â‖ + fold_slack(Â, rel).
pub(crate) fn fold_slack(op: &LinearOp, rel: f64) -> f64 {
    use crate::bounds::round::{dot_err, widen_up};
    if rel == 0.0 {
        return 0.0;
    }
    let abs_sum = |v: &[f64]| widen_up(v.iter().map(|x| x.abs()).sum::<f64>(), dot_err(v.len()));
    let total = match op {
        LinearOp::Dense(d) => abs_sum(&d.w),
        LinearOp::Conv(c) => next_up(abs_sum(&c.k) * (c.ho * c.wo) as f64),
        LinearOp::Diag(d) => abs_sum(&d.scale),
        // Never produced by a fold (only dense, conv and diagonal ops are scaled).
        _ => f64::INFINITY,
    };
    next_up(next_up(rel * total))
}

/// diag(s)·A for dense/conv A (conv: s must be constant on each output channel).
fn scale_rows(op: &LinearOp, s: &[f64]) -> Option<LinearOp> {
    match op {
        LinearOp::Dense(d) if s.len() == d.out => {
            let w = (0..d.out)
                .flat_map(|i| d.row(i).iter().map(move |v| v * s[i]))
                .collect();
            Some(LinearOp::Dense(Dense { w, ..d.clone() }))
        }
        LinearOp::Conv(c) if s.len() == c.c_out * c.ho * c.wo => {
            let hw = c.ho * c.wo;
            let per: Vec<f64> = (0..c.c_out).map(|o| s[o * hw]).collect();
            if (0..s.len()).any(|i| s[i] != per[i / hw]) {
                return None;
            }
            let blk = c.c_in * c.kh * c.kw;
            let k =
                c.k.iter()
                    .enumerate()
                    .map(|(i, v)| v * per[i / blk])
                    .collect();
            Some(LinearOp::Conv(Conv { k, ..c.clone() }))
        }
        _ => None,
    }
}

/// A·diag(s) for dense/conv A (conv: s must be constant on each input channel).
fn scale_cols(op: &LinearOp, s: &[f64]) -> Option<LinearOp> {
    match op {
        LinearOp::Dense(d) if s.len() == d.inp => {
            let w =
                d.w.iter()
                    .enumerate()
                    .map(|(i, v)| v * s[i % d.inp])
                    .collect();
            Some(LinearOp::Dense(Dense { w, ..d.clone() }))
        }
        LinearOp::Conv(c) if s.len() == c.c_in * c.h * c.w => {
            let hw = c.h * c.w;
            let per: Vec<f64> = (0..c.c_in).map(|ch| s[ch * hw]).collect();
            if (0..s.len()).any(|i| s[i] != per[i / hw]) {
                return None;
            }
            let kk = c.kh * c.kw;
            let k =
                c.k.iter()
                    .enumerate()
                    .map(|(i, v)| v * per[(i / kk) % c.c_in])
                    .collect();
            Some(LinearOp::Conv(Conv { k, ..c.clone() }))
        }
        _ => None,
    }
}

/// Product bound over `nodes`; `head` marks the list that ends in the network's last layer.
fn product(
    nodes: &[Node],
    norm: Norm,
    budget: NormBudget,
    folded: bool,
    head: bool,
    prefix: &str,
    factors: &mut Vec<Factor>,
) -> f64 {
    let mut total = 1.0;
    let mut i = 0;
    while i < nodes.len() {
        match &nodes[i] {
            Node::Affine(_) => {
                let mut seg = Vec::new();
                while let Some(Node::Affine(a)) = nodes.get(i) {
                    seg.push(a);
                    i += 1;
                }
                let ends_net = head && i == nodes.len();
                let ops: Vec<Folded> = if folded {
                    fold(&seg)
                } else {
                    seg.iter()
                        .map(|a| Folded {
                            name: a.name.clone(),
                            op: a.op.clone(),
                            rel: 0.0,
                        })
                        .collect()
                };
                let n_ops = ops.len();
                for (j, Folded { name, op, rel }) in ops.iter().enumerate() {
                    let (v, rule) = if folded && ends_net && j + 1 == n_ops {
                        head_norm(op, norm, budget)
                    } else {
                        op_norm(op, norm, budget)
                    };
                    let slack = fold_slack(op, *rel);
                    let v = if slack > 0.0 { next_up(v + slack) } else { v };
                    factors.push(Factor {
                        layer: format!("{prefix}{name}"),
                        rule,
                        value: v,
                    });
                    total = mul_up(total, v);
                }
                continue;
            }
            Node::Relu => {}
            Node::MaxPool2 { .. } => factors.push(Factor {
                layer: format!("{prefix}maxpool2"),
                rule: "2x2 stride-2 max-pool: 1-Lipschitz in l2 and linf".into(),
                value: 1.0,
            }),
            Node::MaxPool { .. } => {
                // Σ_k (max_Wk x − max_Wk y)² ≤ Σ_k Σ_{i∈Wk} (x_i − y_i)² ≤ m‖x − y‖², m the
                // most windows an entry is in; ℓ∞: each output moves by ≤ ‖x − y‖∞.
                let m = nodes[i].max_pool_geometry().map_or(1, |g| g.max_cover());
                let (v, rule) = match norm {
                    Norm::Linf => (1.0, "max-pool: 1-Lipschitz in linf".to_string()),
                    Norm::L2 if m <= 1 => (1.0, "max-pool without overlap: 1".to_string()),
                    Norm::L2 => (
                        next_up(next_up((m as f64).sqrt())),
                        format!("overlapping max-pool: sqrt(max windows per entry = {m})"),
                    ),
                };
                factors.push(Factor {
                    layer: format!("{prefix}maxpool"),
                    rule,
                    value: v,
                });
                total = mul_up(total, v);
            }
            Node::Concat { branches } => {
                // x ↦ [B₁x; …; B_nx]: ‖·‖₂ ≤ √(Σ Lip(B_b)²), ‖·‖∞ ≤ max Lip(B_b); an empty
                // branch is the identity (1).
                let mut sub = Vec::new();
                let lips: Vec<f64> = branches
                    .iter()
                    .enumerate()
                    .map(|(b, nodes)| {
                        if nodes.is_empty() {
                            1.0
                        } else {
                            product(
                                nodes,
                                norm,
                                budget,
                                folded,
                                false,
                                &format!("{prefix}concat.{b}."),
                                &mut sub,
                            )
                        }
                    })
                    .collect();
                let (v, rule) = match norm {
                    Norm::Linf => (
                        lips.iter().fold(0.0f64, |m, l| m.max(*l)),
                        "concatenation: max of the branches' bounds (linf)",
                    ),
                    Norm::L2 => {
                        let sq = lips.iter().fold(0.0f64, |s, l| next_up(s + next_up(l * l)));
                        (
                            next_up(next_up(sq.sqrt())),
                            "concatenation: sqrt of the sum of squared branch bounds (l2)",
                        )
                    }
                };
                factors.extend(sub);
                factors.push(Factor {
                    layer: format!("{prefix}concat"),
                    rule: rule.into(),
                    value: v,
                });
                total = mul_up(total, v);
            }
            Node::Residual { main, shortcut } => {
                let mut sub = Vec::new();
                let m = product(
                    main,
                    norm,
                    budget,
                    folded,
                    false,
                    &format!("{prefix}residual.main."),
                    &mut sub,
                );
                let s = if shortcut.is_empty() {
                    1.0
                } else {
                    product(
                        shortcut,
                        norm,
                        budget,
                        folded,
                        false,
                        &format!("{prefix}residual.shortcut."),
                        &mut sub,
                    )
                };
                let v = next_up(m + s);
                factors.extend(sub);
                factors.push(Factor {
                    layer: format!("{prefix}residual"),
                    rule: if shortcut.is_empty() {
                        "residual: Lip(main) + 1".into()
                    } else {
                        "residual: Lip(main) + Lip(shortcut)".into()
                    },
                    value: v,
                });
                total = mul_up(total, v);
            }
        }
        i += 1;
    }
    total
}

/// Certified upper bounds of Lip_p(S) over the whole input space, for any temperature.
/// Memoised per network (`local_product::net_id`: equal structure and weights) and norm: the
/// local product caps itself by it.
pub fn global_bound(net: &Net, norm: Norm) -> Result<GlobalBound> {
    type Memo = std::sync::Mutex<std::collections::HashMap<(usize, bool), GlobalBound>>;
    static MEMO: std::sync::OnceLock<Memo> = std::sync::OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    let key = (super::local_product::net_id(net), norm == Norm::L2);
    if let Some(g) = memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(g);
    }
    let g = global_bound_with(net, norm, NormBudget::default())?;
    if let Ok(mut m) = memo.lock() {
        m.insert(key, g.clone());
    }
    Ok(g)
}

/// [`global_bound`] with a work budget for the convolution norms.
pub fn global_bound_with(net: &Net, norm: Norm, budget: NormBudget) -> Result<GlobalBound> {
    // Every node must fit its input (pool geometries, branch lengths) before norms are taken.
    crate::bounds::net::out_dim(&net.nodes, net.input_dim())?;
    let mut nf = Vec::new();
    let naive = product(&net.nodes, norm, budget, false, true, "", &mut nf);
    nf.push(Factor {
        layer: "energy".into(),
        rule: "S is 1-Lipschitz in the logits (l2 and linf)".into(),
        value: 1.0,
    });
    let mut ff = Vec::new();
    let folded = product(&net.nodes, norm, budget, true, true, "", &mut ff);
    ff.push(Factor {
        layer: "energy".into(),
        rule: "S is 1-Lipschitz in linf of the logits".into(),
        value: 1.0,
    });
    Ok(GlobalBound {
        norm,
        naive,
        folded,
        value: naive.min(folded),
        naive_factors: nf,
        folded_factors: ff,
    })
}

#[cfg(test)]
mod fold_tests {
    //! The fold's rounding is covered by `fold_slack` (proofs/lipschitz_operator_norms.md,
    //! "Folding"): the exact error of each folded entry is recovered with FMA and summed over
    //! the unrolled matrix; the slack must cover it.
    use super::*;
    use crate::lipschitz::operator_norm::unroll_conv;

    /// Exact error of fl(a·b) as the pair (rounded, error), error = a·b − fl(a·b) exactly.
    fn two_prod(a: f64, b: f64) -> (f64, f64) {
        let p = a * b;
        (p, a.mul_add(b, -p))
    }

    fn affine(name: &str, op: LinearOp) -> Affine {
        Affine {
            name: name.into(),
            op,
            bias: None,
        }
    }

    /// Values whose products round (no power-of-two scales).
    fn vals(n: usize, seed: f64) -> Vec<f64> {
        (0..n)
            .map(|i| ((i as f64 + seed) * 0.618_033_988_7).sin() * 1.37 + 0.011)
            .collect()
    }

    #[test]
    fn fold_slack_covers_the_exact_rounding_of_folded_entries() {
        let (m, n) = (7, 9);
        let w = vals(m * n, 0.3);
        let s1 = vals(n, 1.7);
        let s2 = vals(n, 2.9);
        let r = vals(m, 4.1);
        // s1, s2 before the dense layer (product rounded, then each entry), r after it (rounded
        // again): every entry of the result carries three roundings.
        let nodes = [
            affine("d1", LinearOp::Diag(Diag { scale: s1.clone() })),
            affine("d2", LinearOp::Diag(Diag { scale: s2.clone() })),
            affine(
                "fc",
                LinearOp::Dense(Dense {
                    out: m,
                    inp: n,
                    w: w.clone(),
                }),
            ),
            affine("d3", LinearOp::Diag(Diag { scale: r.clone() })),
        ];
        let refs: Vec<&Affine> = nodes.iter().collect();
        let f = fold(&refs);
        assert_eq!(f.len(), 1);
        let LinearOp::Dense(d) = &f[0].op else {
            panic!("not dense")
        };
        // Σ|A − Â| of the exact composition, each product's error tracked exactly (the errors of
        // products of errors are ≤ 1e-30 relative and dominated by the factor 1.01 below).
        let mut err = 0.0;
        let mut nonzero = 0;
        for i in 0..m {
            for j in 0..n {
                let (p, e1) = two_prod(s1[j], s2[j]);
                let (q, e2) = two_prod(w[i * n + j], p);
                let (a_hat, e3) = two_prod(q, r[i]);
                assert_eq!(a_hat, d.w[i * n + j]);
                // exact = ((w·(p + e1)) ·r) = (q + e2 + w·e1)·r = a_hat + e3 + (e2 + w·e1)·r
                let e = e3 + (e2 + w[i * n + j] * e1) * r[i];
                nonzero += usize::from(e != 0.0);
                err += e.abs();
            }
        }
        assert!(nonzero > m * n / 2, "the test must exercise rounding");
        let slack = fold_slack(&f[0].op, f[0].rel);
        assert!(slack >= 1.01 * err, "slack {slack:e} < exact error {err:e}");
        // Not vacuous: within a small multiple of the worst case 3u·Σ|Â|.
        let abs: f64 = d.w.iter().map(|x| x.abs()).sum();
        assert!(slack <= 20.0 * f64::EPSILON * abs, "{slack:e}");
    }

    #[test]
    fn fold_slack_covers_a_convolution_with_per_channel_scales() {
        let mut c = Conv {
            c_out: 2,
            c_in: 3,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
            h: 4,
            w: 5,
            ho: 4,
            wo: 5,
            k: vals(54, 0.9),
        };
        let per = vals(3, 7.3);
        let s: Vec<f64> = (0..3 * 20).map(|i| per[i / 20]).collect();
        let nodes = [
            affine("norm", LinearOp::Diag(Diag { scale: s })),
            affine("conv", LinearOp::Conv(c.clone())),
        ];
        let refs: Vec<&Affine> = nodes.iter().collect();
        let f = fold(&refs);
        assert_eq!(f.len(), 1);
        // The exact kernel error, unrolled: Σ|E| over the matrix.
        let kk = 9;
        c.k = (0..54)
            .map(|i| two_prod(c.k[i], per[(i / kk) % 3]).1)
            .collect();
        let err: f64 = unroll_conv(&c).iter().map(|x| x.abs()).sum();
        assert!(err > 0.0, "the test must exercise rounding");
        let slack = fold_slack(&f[0].op, f[0].rel);
        assert!(slack >= 1.01 * err, "slack {slack:e} < exact error {err:e}");
    }

    #[test]
    fn nothing_folded_needs_no_slack() {
        let nodes = [affine(
            "fc",
            LinearOp::Dense(Dense {
                out: 2,
                inp: 2,
                w: vals(4, 0.1),
            }),
        )];
        let refs: Vec<&Affine> = nodes.iter().collect();
        let f = fold(&refs);
        assert_eq!(f[0].rel, 0.0);
        assert_eq!(fold_slack(&f[0].op, f[0].rel), 0.0);
    }
}
