//! Pairwise max-pool candidates at the first layer (the exact pairwise comparison of two affine
//! functions over a norm ball, Hölder's equality case; proofs/lipschitz_pool_pairs.md): when
//! the network starts with affine maps, an optional ReLU and a max-pool, window entry i can be
//! an argmax of the pre-activations z = Mx + b somewhere on the ball only if, for every j in its
//! window, (z_i − z_j)(x₀) + ε‖m_i − m_j‖_q ≥ 0 (q the dual norm). Individual boxes test
//! hi_i ≥ lo_j, i.e. ε(‖m_i‖_q + ‖m_j‖_q) in place of ε‖m_i − m_j‖_q, which is never smaller.

use super::global::fold;
use super::masked_norm::conv_row;
use crate::bounds::net::{Affine, LinearOp, Net, Node};
use crate::bounds::{Ball, Norm};

/// Candidate lists of the first max-pool's windows (each a subset of the window, in window
/// order), for the pool at node index `node`.
#[derive(Debug, Clone)]
pub struct PoolPairs {
    pub node: usize,
    pub cands: Vec<Vec<usize>>,
}

/// A relative slack that covers every rounding of the test (the rows' fold rounding ≤ 2ε
/// relative, z(x₀)'s forward pass relative to its magnitude and the dot products: ≤ 10⁻¹²
/// relative for these sizes).
const SLACK: f64 = 1e-9;
/// The most affine nodes before the pool, and the largest fan-in / fan-out of one, for which
/// [`SLACK`] covers the test's rounding.
const MAX_DEPTH: usize = 10;
const MAX_FAN: usize = 100_000;
/// Multiply-adds beyond which the test is skipped (`None`).
const MAX_WORK: f64 = 2e9;

/// The pairwise candidates of the first max-pool when the network starts with affine nodes
/// (folded into one dense or convolution map), an optional ReLU and a max-pool; `None`
/// otherwise. With the pixel box the test is still sound (the box only shrinks the ball).
pub fn pool_pairs(net: &Net, ball: &Ball) -> Option<PoolPairs> {
    let nodes = &net.nodes;
    let mut seg: Vec<&Affine> = Vec::new();
    let mut i = 0;
    while let Some(Node::Affine(a)) = nodes.get(i) {
        seg.push(a);
        i += 1;
    }
    // The rounding argument (proof, "Rounding") assumes at most MAX_DEPTH affine nodes of
    // fan-in and fan-out at most MAX_FAN.
    if seg.is_empty()
        || seg.len() > MAX_DEPTH
        || seg.iter().any(|a| {
            let m = a.op.map();
            m.fan_in() > MAX_FAN || m.fan_out() > MAX_FAN
        })
    {
        return None;
    }
    if matches!(nodes.get(i), Some(Node::Relu)) {
        i += 1;
    }
    let pool = nodes.get(i).filter(|n| n.is_max_pool())?;
    let folded = fold(&seg);
    let x0 = &ball.center;
    let in_dim = seg[0].op.map().in_dim();
    if x0.len() != in_dim || x0.iter().any(|v| !v.is_finite()) {
        return None;
    }
    // z(x₀) through the unfolded nodes (biases included), and beside it the magnitude
    // |A_L|⋯(|A_1||x₀| + |b_1|)⋯ + |b_L| that bounds every intermediate sum's size, so the
    // forward pass's rounding is covered whatever the intermediate values (proof, "Rounding").
    let mut z = x0.clone();
    let mut zmag: Vec<f64> = x0.iter().map(|v| v.abs()).collect();
    for a in &seg {
        z = a.op.map().apply(&z, false);
        zmag = a.op.map().apply(&zmag, true);
        if let Some(b) = &a.bias {
            z.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            zmag.iter_mut().zip(b).for_each(|(v, b)| *v += b.abs());
        }
    }
    if z.iter().chain(&zmag).any(|v| !v.is_finite()) {
        return None;
    }
    let n_in = x0.len();
    // Work guard: every ordered pair of a window costs a dense difference of two rows, and rows
    // pulled back through unfolded ops a full adjoint pass each.
    let wins = pool.pool_windows();
    let pairs: f64 = wins.iter().map(|w| (w.len() * w.len()) as f64).sum();
    let entries: usize = wins.iter().map(Vec::len).sum();
    let pass: f64 = if folded.len() == 1 {
        0.0
    } else {
        2.0 * seg
            .iter()
            .map(|a| (a.op.map().out_dim() * a.op.map().fan_in().max(1)) as f64)
            .sum::<f64>()
    };
    if pairs * n_in as f64 + entries as f64 * pass > MAX_WORK {
        return None;
    }
    // Row r of the composed map and a magnitude row ≥ |its entries| that bounds the rounding of
    // computing it: from the folded op when the fold gives one dense or conv op (the magnitude
    // is |row|: each entry is a few products, no sums), else e_r pulled back through every op
    // (Aᵀ applied in reverse order) beside |A_1|ᵀ⋯|A_L|ᵀe_r, which bounds every partial sum of
    // the pullback, so its rounding, whatever cancels (proof, "Rounding").
    let row = |r: usize| -> Option<(Vec<f64>, Vec<f64>)> {
        let mut v = vec![0.0; n_in];
        let vmag = match folded.as_slice() {
            [f] if matches!(f.op, LinearOp::Dense(_) | LinearOp::Conv(_)) => {
                match &f.op {
                    LinearOp::Dense(d) => v.copy_from_slice(d.row(r)),
                    LinearOp::Conv(c) => conv_row(c, r, |j, a| v[j] += a),
                    _ => return None,
                }
                v.iter().map(|x| x.abs()).collect()
            }
            _ => {
                let mut e = vec![0.0; z.len()];
                *e.get_mut(r)? = 1.0;
                let mut m = e.clone();
                for a in seg.iter().rev() {
                    e = a.op.map().apply_t(&e, false);
                    m = a.op.map().apply_t(&m, true);
                }
                v = e;
                m
            }
        };
        (v.len() == n_in && vmag.len() == n_in && vmag.iter().all(|x| x.is_finite()))
            .then_some((v, vmag))
    };
    let dual = |v: &[f64]| match ball.norm {
        Norm::L2 => v.iter().map(|x| x * x).sum::<f64>().sqrt(),
        Norm::Linf => v.iter().map(|x| x.abs()).sum::<f64>(),
    };
    let abs_dot = |v: &[f64]| v.iter().zip(x0).map(|(a, b)| (a * b).abs()).sum::<f64>();
    let eps = ball.eps;
    let mut cands = Vec::new();
    for win in wins {
        let (rows, rmags): (Vec<Vec<f64>>, Vec<Vec<f64>>) = win
            .iter()
            .map(|&i| row(i))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .unzip();
        let mags: Vec<f64> = rows
            .iter()
            .zip(&rmags)
            .map(|(r, m)| dual(r) * eps + abs_dot(r) + dual(m) * eps)
            .collect();
        let keep: Vec<usize> = (0..win.len())
            .filter(|&a| {
                (0..win.len()).all(|b| {
                    if a == b {
                        return true;
                    }
                    let diff: Vec<f64> = rows[a].iter().zip(&rows[b]).map(|(p, q)| p - q).collect();
                    let (za, zb) = (z[win[a]], z[win[b]]);
                    let fwd = zmag[win[a]] + zmag[win[b]];
                    let slack = SLACK * (1.0 + za.abs() + zb.abs() + mags[a] + mags[b] + fwd);
                    let v = (za - zb) + eps * dual(&diff) + slack;
                    // NaN keeps the entry.
                    v.partial_cmp(&0.0) != Some(std::cmp::Ordering::Less)
                })
            })
            .map(|a| win[a])
            .collect();
        cands.push(keep);
    }
    Some(PoolPairs { node: i, cands })
}

/// The smaller of the gradient zonotope and the diagonally scaled product, both with the first
/// pool's pairwise candidates (the local bounds that use the ball itself, not only its boxes);
/// `None` when neither applies. `traces` and `logits` are
/// `local::pre_bounds` of the same ball; `cutoff`, a sound bound already known (the zonotope's ℓ2
/// radius is skipped when it cannot be below it).
pub fn ball_local_bound(
    net: &Net,
    ball: &Ball,
    traces: &[crate::bounds::ibp::Trace],
    logits: &crate::bounds::Interval,
    temperature: f64,
    cutoff: f64,
) -> Option<f64> {
    let t0 = std::time::Instant::now();
    let pairs = pool_pairs(net, ball);
    let neg_p = super::local::neg_softmax_box(logits, temperature);
    let zono = super::gradient_zonotope::gradient_zonotope(
        net,
        traces,
        &neg_p,
        ball.norm,
        pairs.as_ref(),
        cutoff,
    );
    // The scaled product on the pairwise-narrowed live sets (ℓ2 chains only).
    let scaled = pairs
        .as_ref()
        .and_then(|p| super::scaled_product::scaled_product_with(net, traces, ball.norm, Some(p)));
    if std::env::var_os("OODCERT_PROBE_PRODUCT").is_some() {
        let multi = pairs
            .as_ref()
            .map(|p| p.cands.iter().filter(|c| c.len() > 1).count());
        eprintln!(
            "probe ball bound: windows with > 1 pairwise candidate {multi:?}, gradient zonotope {zono:?}, pairwise scaled product {scaled:?} ({:.2} s)",
            t0.elapsed().as_secs_f64()
        );
    }
    match (zono, scaled) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
