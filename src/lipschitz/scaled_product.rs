//! Diagonally scaled masked product of ‖∇ₓS‖₂ on a ball (the D-scaling of the structured
//! singular value's upper bound, Doyle 1982, applied to ReLU / max-pool derivative sets;
//! proofs/lipschitz_scaled_product.md): on a chain J = A_L G_{L−1} A_{L−1} ⋯ G_1 A_1 whose gates
//! G_k (ReLU, ReLU + 2×2 max-pool) satisfy S_k G_k = G_k S'_k for a positive scaling S_k per
//! gate output (S'_k repeats it over the window), ‖J‖_{2→∞} ≤ ‖A_L S⁻¹_{L−1}‖_{2→∞} ·
//! ∏ ‖S'_k M A_k M S⁻¹_{k−1}‖₂ with the masks of the masked product. Scalings are positive reals
//! exp(·) chosen by a gradient search on Σ log ‖·‖; any positive scaling is sound, and each scaled
//! entry's rounding is covered by a (4ε + 2·rel)·‖R̂‖_F slack per factor, rel the rounding of the
//! folded layers (the proof's "Floating point"; proofs/lipschitz_operator_norms.md, "Folding").

use super::cholesky_certificate::{spectral_from_gram_by_cholesky, spectral_upper_by_cholesky};
use super::global::fold;
use super::masked_norm::{CHOLESKY_GRAM_SIDE, MASKED_MAX_NNZ, conv_row, sparse_gram};
use super::pool_pairs::PoolPairs;
use crate::bounds::ibp::Trace;
use crate::bounds::net::{Affine, LinearOp, Net, Node};
use crate::bounds::round::{dot_err, next_up, widen_up};
use crate::bounds::{Norm, max_pool};
use rayon::prelude::*;

/// Gradient steps of the scaling search, power iterations per factor and step, and the step
/// size η_t = ETA0·DECAY^t (a heuristic: soundness does not depend on the scalings).
const OPT_STEPS: usize = 200;
const POWER_STEPS: usize = 6;
const ETA0: f64 = 0.5;
const DECAY: f64 = 0.985;
/// |log s| ≤ this.
const MAX_LOG: f64 = 20.0;

/// A gate between two affine layers: for every output, the inputs that can carry its gradient on
/// the ball (ReLU not dead, and a max-pool candidate).
struct Gate {
    live: Vec<Vec<usize>>,
}

/// One affine layer and the gate after it (none after the last).
struct Stage {
    /// The segment's folded ops (usually one).
    ops: Vec<LinearOp>,
    /// Per op: the fold's relative entry rounding (`global::Folded::rel`).
    rel: Vec<f64>,
    gate: Option<Gate>,
}

/// A ReLU (at node `r`, optional) followed by a 2×2 max-pool (node `p`, optional) as a [`Gate`];
/// a window's live entries are also narrowed to `pairs`' candidates when `pairs` is the
/// pairwise test of this pool (proofs/lipschitz_pool_pairs.md, Claim 2).
fn gate(
    nodes: &[Node],
    traces: &[Trace],
    r: Option<usize>,
    p: Option<usize>,
    pairs: Option<&PoolPairs>,
) -> Option<Gate> {
    let dim = traces[r.or(p)?].input().len();
    let alive = |i: usize| {
        r.is_none_or(|r| {
            let u = traces[r].input().hi[i];
            u >= 0.0 || u.is_nan()
        })
    };
    match p {
        None => Some(Gate {
            live: (0..dim)
                .map(|i| if alive(i) { vec![i] } else { vec![] })
                .collect(),
        }),
        Some(p) => {
            if !matches!(nodes[p], Node::MaxPool2 { .. }) {
                return None;
            }
            let pb = traces[p].input();
            let kept = pairs.filter(|q| q.node == p).map(|q| &q.cands);
            let wins = nodes[p].pool_windows();
            if kept.is_some_and(|k| k.len() != wins.len()) {
                return None;
            }
            let live = wins
                .iter()
                .enumerate()
                .map(|(w, win)| {
                    max_pool::candidates(pb, win)
                        .into_iter()
                        .filter(|&i| alive(i) && kept.is_none_or(|k| k[w].contains(&i)))
                        .collect()
                })
                .collect();
            Some(Gate { live })
        }
    }
}

/// The chain of a sequential network (affine segments folded to one op each, gates between);
/// `None` for any other structure.
fn stages(net: &Net, traces: &[Trace], pairs: Option<&PoolPairs>) -> Option<Vec<Stage>> {
    let nodes = &net.nodes;
    let mut out = Vec::new();
    let mut i = 0;
    while i < nodes.len() {
        let mut seg: Vec<&Affine> = Vec::new();
        while let Some(Node::Affine(a)) = nodes.get(i) {
            seg.push(a);
            i += 1;
        }
        let (ops, rel): (Vec<LinearOp>, Vec<f64>) =
            fold(&seg).into_iter().map(|f| (f.op, f.rel)).unzip();
        if ops.is_empty()
            || !ops.iter().all(|op| {
                matches!(
                    op,
                    LinearOp::Dense(_) | LinearOp::Conv(_) | LinearOp::Diag(_)
                )
            })
        {
            return None;
        }
        if i == nodes.len() {
            out.push(Stage {
                ops,
                rel,
                gate: None,
            });
            return Some(out);
        }
        let r = matches!(nodes[i], Node::Relu).then_some(i);
        let j = if r.is_some() { i + 1 } else { i };
        let p = nodes.get(j).filter(|n| n.is_max_pool()).map(|_| j);
        if r.is_none() && p.is_none() {
            return None;
        }
        let g = gate(nodes, traces, r, p, pairs)?;
        i = p.map_or(j, |p| p + 1);
        if !matches!(nodes.get(i), Some(Node::Affine(_))) {
            return None;
        }
        out.push(Stage {
            ops,
            rel,
            gate: Some(g),
        });
    }
    None
}

/// Log-scalings at every gate output minimising the product of the factors' estimated norms
/// (Σ_k log ‖S'_k A_k S⁻¹_{k−1}‖ is convex in the log-scalings, Sezginer & Overton 1990): from
/// S = I, normalised gradient steps ∂/∂log s_w = u_w² − v_w² (the mass of the top left singular
/// vector of the factor before the gate on window w minus that of the right one after it),
/// top singular pairs by warm-started power iterations on the unscaled masked rows with the
/// scalings applied in each product; the result is the mean of the second half's iterates
/// (Polyak averaging). A heuristic: the caller certifies.
fn scalings(st: &[Stage], in_dim: usize) -> Option<Vec<Vec<f64>>> {
    let n_g = st.len() - 1;
    let dims: Vec<usize> = st[..n_g]
        .iter()
        .map(|s| s.gate.as_ref().map_or(0, |g| g.live.len()))
        .collect();
    let mut ls: Vec<Vec<f64>> = dims.iter().map(|&d| vec![0.0; d]).collect();
    // One job per op: (stage, op, whether it is the head), and its warm-start vector.
    let jobs: Vec<(usize, usize, bool)> = st
        .iter()
        .enumerate()
        .flat_map(|(k, s)| {
            let n = s.ops.len();
            (0..n).map(move |j| (k, j, s.gate.is_none() && j + 1 == n))
        })
        .collect();
    let mut warm: Vec<Vec<f64>> = jobs
        .iter()
        .map(|&(k, j, _)| vec![1.0; st[k].ops[j].map().in_dim()])
        .collect();
    // The masks (rows and columns of positive weight) do not depend on the positive scalings:
    // the unscaled masked entries once, the scalings applied in every product.
    let w1 = weights(
        st,
        &ls.iter().map(|v| vec![1.0; v.len()]).collect::<Vec<_>>(),
        in_dim,
    )?;
    let pats: Vec<Vec<Rows>> = st
        .iter()
        .zip(&w1)
        .map(|(stage, w)| {
            stage
                .ops
                .iter()
                .zip(w)
                .map(|(op, (rw, cw))| sparse_rows(op, rw, cw))
                .collect::<Option<Vec<_>>>()
        })
        .collect::<Option<_>>()?;
    // The mean of the second half's iterates: the last iterate of a (sub)gradient method on this
    // non-smooth objective oscillates, and the estimated objective is too noisy to pick one.
    let mut avg: Vec<Vec<f64>> = ls.clone();
    let mut n_avg = 0.0;
    for it in 0..OPT_STEPS {
        let s: Vec<Vec<f64>> = ls
            .iter()
            .map(|v| v.iter().map(|x| x.exp()).collect())
            .collect();
        let w = weights(st, &s, in_dim)?;
        let mut u_mass: Vec<Vec<f64>> = dims.iter().map(|&d| vec![0.0; d]).collect();
        let mut v_mass = u_mass.clone();
        // Every factor's top pair, the factors on the pool's threads (independent, so the same
        // values whatever the threads).
        let tops: Vec<(f64, Vec<f64>, Vec<f64>)> = warm
            .par_iter_mut()
            .zip(&jobs)
            .map(|(v, &(k, j, head))| {
                let (rw, cw) = &w[k][j];
                if head {
                    head_pair(&pats[k][j], rw, cw)
                } else {
                    top_pair(&pats[k][j], rw, cw, v, POWER_STEPS)
                }
            })
            .collect();
        for (&(k, j, _), (sigma, u2, v2)) in jobs.iter().zip(&tops) {
            if sigma.is_nan() || *sigma <= 0.0 || !sigma.is_finite() {
                return None;
            }
            let stage = &st[k];
            if j + 1 == stage.ops.len()
                && let Some(g) = &stage.gate
            {
                for (m, l) in u_mass[k].iter_mut().zip(&g.live) {
                    *m = l.iter().map(|&i| u2.get(i).copied().unwrap_or(0.0)).sum();
                }
            }
            if j == 0 && k > 0 && v_mass[k - 1].len() == v2.len() {
                v_mass[k - 1].copy_from_slice(v2);
            }
        }
        if 2 * it >= OPT_STEPS {
            n_avg += 1.0;
            for (a, l) in avg.iter_mut().zip(&ls) {
                for (a, l) in a.iter_mut().zip(l) {
                    *a += (l - *a) / n_avg;
                }
            }
        }
        let eta = ETA0 * DECAY.powi(it as i32);
        for ((l, u), v) in ls.iter_mut().zip(&u_mass).zip(&v_mass) {
            for ((l, u), v) in l.iter_mut().zip(u).zip(v) {
                let d = u + v;
                if d > 0.0 {
                    *l -= eta * (u - v) / d;
                }
            }
            // One gate's scalings times a constant leave the product unchanged: keep their mean
            // at 0 so that drift along that direction never reaches the clamp.
            let mean = l.iter().sum::<f64>() / l.len().max(1) as f64;
            l.iter_mut()
                .for_each(|x| *x = (*x - mean).clamp(-MAX_LOG, MAX_LOG));
        }
    }
    Some(
        avg.iter()
            .map(|v| v.iter().map(|x| x.exp()).collect())
            .collect(),
    )
}

/// Every op's (row weights, column weights) for gate scalings `s`: the last op of a stage is
/// scaled by S'_k on its rows (0 on rows the gate never passes), the first op of the next stage by
/// S⁻¹_k on its columns (0 on gate outputs with no live input).
#[allow(clippy::type_complexity)]
fn weights(st: &[Stage], s: &[Vec<f64>], in_dim: usize) -> Option<Vec<Vec<(Vec<f64>, Vec<f64>)>>> {
    let mut out = Vec::with_capacity(st.len());
    let mut cw: Vec<f64> = vec![1.0; in_dim];
    for (k, stage) in st.iter().enumerate() {
        let n_ops = stage.ops.len();
        let out_dim = stage.ops[n_ops - 1].map().out_dim();
        let (rw, next_cw) = match &stage.gate {
            Some(g) => {
                let mut rw = vec![0.0; out_dim];
                for (w, l) in g.live.iter().enumerate() {
                    for &i in l {
                        *rw.get_mut(i)? = s[k][w];
                    }
                }
                let c: Vec<f64> = g
                    .live
                    .iter()
                    .zip(&s[k])
                    .map(|(l, s)| if l.is_empty() { 0.0 } else { 1.0 / s })
                    .collect();
                (rw, c)
            }
            None => (vec![1.0; out_dim], Vec::new()),
        };
        let mut per_op = Vec::with_capacity(n_ops);
        for (j, op) in stage.ops.iter().enumerate() {
            let m = op.map();
            let c = if j == 0 {
                cw.clone()
            } else {
                vec![1.0; m.in_dim()]
            };
            let r = if j + 1 == n_ops {
                rw.clone()
            } else {
                vec![1.0; m.out_dim()]
            };
            if c.len() != m.in_dim() || r.len() != m.out_dim() {
                return None;
            }
            per_op.push((r, c));
        }
        out.push(per_op);
        cw = next_cw;
    }
    Some(out)
}

/// The rows with a positive weight as (row, [(column, scaled entry)]) over the columns with a
/// positive weight; `None` for op kinds without sparse rows or beyond the non-zero budget.
#[allow(clippy::type_complexity)]
fn sparse_rows(op: &LinearOp, rw: &[f64], cw: &[f64]) -> Option<Vec<(usize, Vec<(usize, f64)>)>> {
    let mut rows = Vec::new();
    let mut nnz = 0usize;
    for (r, &w) in rw.iter().enumerate() {
        if w <= 0.0 {
            continue;
        }
        let mut v = Vec::new();
        let mut push = |j: usize, a: f64| {
            if cw[j] > 0.0 && a != 0.0 {
                v.push((j, a * w * cw[j]));
            }
        };
        match op {
            LinearOp::Dense(d) => d.row(r).iter().enumerate().for_each(|(j, a)| push(j, *a)),
            LinearOp::Conv(c) => conv_row(c, r, push),
            LinearOp::Diag(d) => push(r, d.scale[r]),
            _ => return None,
        }
        nnz += v.len();
        if nnz > MASKED_MAX_NNZ {
            return None;
        }
        rows.push((r, v));
    }
    Some(rows)
}

/// Masked rows of an op as (row, [(column, entry)]).
type Rows = Vec<(usize, Vec<(usize, f64)>)>;

/// Estimated top singular value of diag(rw)·A·diag(cw) for A the masked rows, the squared top
/// left singular vector per row index and the squared top right one per column (power
/// iteration from `v`, updated).
fn top_pair(
    rows: &Rows,
    rw: &[f64],
    cw: &[f64],
    v: &mut [f64],
    iters: usize,
) -> (f64, Vec<f64>, Vec<f64>) {
    let n_out = rw.len();
    let mut y = vec![0.0; rows.len()];
    let mut cv = vec![0.0; v.len()];
    let apply = |y: &mut [f64], v: &[f64], cv: &mut [f64]| {
        for ((c, x), w) in cv.iter_mut().zip(v).zip(cw) {
            *c = x * w;
        }
        for (yi, (r, row)) in y.iter_mut().zip(rows) {
            *yi = rw[*r] * row.iter().map(|(j, a)| a * cv[*j]).sum::<f64>();
        }
    };
    for _ in 0..iters {
        apply(&mut y, v, &mut cv);
        cv.iter_mut().for_each(|x| *x = 0.0);
        for (yi, (r, row)) in y.iter().zip(rows) {
            let t = rw[*r] * yi;
            for (j, a) in row {
                cv[*j] += a * t;
            }
        }
        for ((x, c), w) in v.iter_mut().zip(&cv).zip(cw) {
            *x = c * w;
        }
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n.is_nan() || n <= 0.0 || !n.is_finite() {
            return (0.0, vec![0.0; n_out], vec![0.0; v.len()]);
        }
        v.iter_mut().for_each(|x| *x /= n);
    }
    apply(&mut y, v, &mut cv);
    let sigma = y.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut u2 = vec![0.0; n_out];
    for (yi, (r, _)) in y.iter().zip(rows) {
        u2[*r] = (yi / sigma).powi(2);
    }
    (sigma, u2, v.iter().map(|x| x * x).collect())
}

/// The largest row ℓ2 norm of diag(rw)·A·diag(cw) and the squared normalised entries of that row.
fn head_pair(rows: &Rows, rw: &[f64], cw: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
    let mut best = (0.0, 0usize);
    for (k, (r, row)) in rows.iter().enumerate() {
        let s: f64 = row.iter().map(|(j, a)| (a * rw[*r] * cw[*j]).powi(2)).sum();
        if s > best.0 {
            best = (s, k);
        }
    }
    let mut v2 = vec![0.0; cw.len()];
    if best.0 > 0.0 {
        let r = rows[best.1].0;
        for (j, a) in &rows[best.1].1 {
            v2[*j] = (a * rw[r] * cw[*j]).powi(2) / best.0;
        }
    }
    (best.0.sqrt(), Vec::new(), v2)
}

fn sqrt_up(x: f64) -> f64 {
    next_up(x.sqrt() * (1.0 + 2.0 * f64::EPSILON))
}

/// A certified ‖diag(rw) A diag(cw)‖₂ restricted to the rows with rw > 0 and columns with cw > 0
/// (cw = fl(1/s) stands for the exact 1/s: the entries' rounding is added, and `rel`, the fold's
/// relative rounding of the op's entries), or the head's largest scaled row ℓ2 norm when `head`.
fn weighted_norm(op: &LinearOp, rw: &[f64], cw: &[f64], head: bool, rel: f64) -> f64 {
    // The live rows as sparse (compact column, value) lists.
    let mut col_ix = vec![usize::MAX; cw.len()];
    let mut n_c = 0;
    for (j, ix) in col_ix.iter_mut().enumerate() {
        if cw[j] > 0.0 {
            *ix = n_c;
            n_c += 1;
        }
    }
    let mut rows: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut nnz = 0usize;
    for (r, &w) in rw.iter().enumerate() {
        if w <= 0.0 {
            continue;
        }
        let mut v = Vec::new();
        let mut push = |j: usize, a: f64| {
            if col_ix[j] != usize::MAX && a != 0.0 {
                v.push((col_ix[j], a * w * cw[j]));
            }
        };
        match op {
            LinearOp::Dense(d) => d.row(r).iter().enumerate().for_each(|(j, a)| push(j, *a)),
            LinearOp::Conv(c) => conv_row(c, r, push),
            LinearOp::Diag(d) => push(r, d.scale[r]),
            _ => return f64::INFINITY,
        }
        nnz += v.len();
        rows.push(v);
        if nnz > MASKED_MAX_NNZ {
            return f64::INFINITY;
        }
    }
    // Underflow of a scaled entry: an absolute error ≤ 2⁻¹⁰⁷⁴ each, ≤ √nnz·2⁻¹⁰⁷⁴ in norm.
    let tiny = 1e-300 * (nnz as f64 + 1.0).sqrt();
    let fan = rows.iter().map(Vec::len).max().unwrap_or(0);
    let sq = |v: &[(usize, f64)]| widen_up(v.iter().map(|(_, a)| a * a).sum::<f64>(), dot_err(fan));
    if head {
        let m = rows
            .iter()
            .map(|v| sq(v))
            .fold(0.0, crate::bounds::round::max_nan);
        return next_up(sqrt_up(m) * (1.0 + 4.0 * f64::EPSILON + 2.0 * rel) + tiny);
    }
    let n_r = rows.len();
    if n_r == 0 || n_c == 0 {
        return 0.0;
    }
    let frob2 = widen_up(rows.iter().map(|v| sq(v)).sum::<f64>(), dot_err(n_r + 1));
    let frob = sqrt_up(frob2);
    let side = n_r.min(n_c);
    let v = if side > CHOLESKY_GRAM_SIDE {
        frob
    } else if let LinearOp::Dense(_) = op {
        let mut m = vec![0.0; n_r * n_c];
        for (i, v) in rows.iter().enumerate() {
            for &(j, a) in v {
                m[i * n_c + j] = a;
            }
        }
        spectral_upper_by_cholesky(n_r, n_c, &m)
    } else {
        // Gram on the smaller side from the sparse rows (RᵀR) or columns (RRᵀ).
        let (g, terms) = sparse_gram(rows, n_r, n_c);
        spectral_from_gram_by_cholesky(&g, terms, frob2)
    };
    // Each scaled entry a·r·fl(1/s) is within relative γ₃ of the exact a·r/s, and the folded
    // entry a within relative `rel` of the exact composition's: the exact scaled matrix is within
    // (4ε + 2·rel)‖R̂‖_F of the computed one.
    next_up(v.min(frob) + next_up((4.0 * f64::EPSILON + 2.0 * rel) * frob) + tiny)
}

/// The scaled product's value, or `None` when the network is not a chain of dense / conv layers
/// and ReLU / 2×2 max-pool gates, or the norm is not ℓ2.
pub fn scaled_product(net: &Net, traces: &[Trace], norm: Norm) -> Option<f64> {
    scaled_product_with(net, traces, norm, None)
}

/// [`scaled_product`] with the first max-pool's live entries narrowed to the pairwise
/// candidates `pairs` of the same ball (`pool_pairs::pool_pairs`): the same claim on smaller
/// live sets.
pub fn scaled_product_with(
    net: &Net,
    traces: &[Trace],
    norm: Norm,
    pairs: Option<&PoolPairs>,
) -> Option<f64> {
    if norm != Norm::L2 || traces.len() != net.nodes.len() {
        return None;
    }
    let st = stages(net, traces, pairs)?;
    // The value depends only on the network and the gates' live sets (exact key).
    let mut key = vec![super::local_product::net_id(net) as u32];
    for g in st.iter().filter_map(|s| s.gate.as_ref()) {
        key.push(u32::MAX);
        for l in &g.live {
            key.push(l.len() as u32);
            key.extend(l.iter().map(|&i| i as u32));
        }
    }
    if let Some(v) = memo().lock().ok().and_then(|m| m.get(&key).copied()) {
        return v;
    }
    let v = scaled_value(&st, net.input_dim());
    if let Ok(mut m) = memo().lock() {
        if m.len() > 1000 {
            m.clear();
        }
        m.insert(key, v);
    }
    v
}

type Memo = std::sync::Mutex<std::collections::HashMap<Vec<u32>, Option<f64>>>;

/// Values already computed in this process (local and RecurJac's stage meet the same boxes).
fn memo() -> &'static Memo {
    static M: std::sync::OnceLock<Memo> = std::sync::OnceLock::new();
    M.get_or_init(Default::default)
}

/// The certified scaled product of a chain (scalings searched, then every factor certified).
fn scaled_value(st: &[Stage], in_dim: usize) -> Option<f64> {
    let s = scalings(st, in_dim)?;
    let w = weights(st, &s, in_dim)?;
    let mut total = 1.0;
    for (k, stage) in st.iter().enumerate() {
        let n_ops = stage.ops.len();
        for (j, op) in stage.ops.iter().enumerate() {
            let (rw, cw) = &w[k][j];
            let head = stage.gate.is_none() && j + 1 == n_ops;
            let f = weighted_norm(op, rw, cw, head, stage.rel[j]);
            if std::env::var_os("OODCERT_PROBE_PRODUCT").is_some() {
                eprintln!("probe scaled product: stage {k} op {j}: factor {f:.4e}");
            }
            total = next_up(total * f);
        }
    }
    if std::env::var_os("OODCERT_PROBE_PRODUCT").is_some() {
        eprintln!("probe scaled product: {total:.4e}");
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::conv::Conv;
    use crate::bounds::linear_map::LinearMap;
    use crate::lipschitz::operator_norm::unroll_conv;
    use nalgebra::DMatrix;

    #[test]
    fn weighted_conv_norm_matches_the_dense_scaled_restriction() {
        let c = Conv {
            c_out: 3,
            c_in: 2,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
            h: 5,
            w: 4,
            ho: 5,
            wo: 4,
            k: (0..54).map(|i| ((i as f64) * 0.731).sin()).collect(),
        };
        let a = unroll_conv(&c);
        let (m, n) = (c.out_dim(), c.in_dim());
        let rw: Vec<f64> = (0..m)
            .map(|i| {
                if i % 5 == 0 {
                    0.0
                } else {
                    2f64.powi((i % 3) as i32 - 1)
                }
            })
            .collect();
        let cw: Vec<f64> = (0..n)
            .map(|j| {
                if j % 7 == 3 {
                    0.0
                } else {
                    2f64.powi((j % 4) as i32 - 2)
                }
            })
            .collect();
        let dense = DMatrix::from_fn(m, n, |i, j| a[i * n + j] * rw[i] * cw[j]);
        let exact = dense.singular_values().max();
        let v = weighted_norm(&LinearOp::Conv(c.clone()), &rw, &cw, false, 0.0);
        assert!(v >= exact && v <= exact * 1.001, "{v} vs {exact}");
    }
}
