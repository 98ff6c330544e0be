//! Gradient zonotope: the set {∇ₓS(x) : x in the ball} enclosed by a zonotope propagated
//! backwards through the network (the DeepZ affine transformer of Singh et al., NeurIPS 2018,
//! applied to the backward graph as in Shi et al., NeurIPS 2022; proofs/lipschitz_gradient_zonotope.md).
//! Every gate (ReLU, max-pool, ReLU + max-pool) multiplies the back-propagated gradient by a
//! derivative from a finite set the boxes allow; the zonotope keeps the linear correlations of
//! the generators through every layer, and only the gate's deviation from its centre derivative
//! becomes new generators. ‖∇S‖₂ over the ball is bounded by the zonotope's ℓ2 radius
//! (λ_max certified by Cholesky), ‖∇S‖₁ by its box.

use super::cholesky_certificate::spectral_from_gram_by_cholesky;
use super::masked_norm::conv_row;
use super::pool_pairs::PoolPairs;
use crate::bounds::ibp::Trace;
use crate::bounds::net::{LinearOp, Net, Node};
use crate::bounds::round::{dot_err, next_up, widen_up};
use crate::bounds::{Interval, Norm, max_pool};
use nalgebra::DMatrix;

/// Generators beyond this many at any level: give up (memory and time guard).
const MAX_GENERATORS: usize = 40_000;
/// Side of the final Gram matrix beyond which only the box bound is taken.
const MAX_GRAM_SIDE: usize = 4096;

/// A sparse vector: sorted distinct indices and values.
#[derive(Clone, Default)]
struct Sparse {
    ix: Vec<u32>,
    v: Vec<f64>,
}

impl Sparse {
    fn from_dense(d: &[f64]) -> Sparse {
        let mut s = Sparse::default();
        for (i, &x) in d.iter().enumerate() {
            if x != 0.0 {
                s.ix.push(i as u32);
                s.v.push(x);
            }
        }
        s
    }
}

/// g = c + Σ_j t_j γ_j + b, t ∈ [−1, 1]^m, |b_i| ≤ β_i: every gradient at this level is in it.
struct Zono {
    c: Vec<f64>,
    gens: Vec<Sparse>,
    beta: Vec<f64>,
}

impl Zono {
    /// Upper bounds of Σ_j |γ_j[i]| per coordinate.
    fn abs_sum(&self) -> Vec<f64> {
        let mut r = vec![0.0; self.c.len()];
        let mut cnt = vec![0usize; self.c.len()];
        for g in &self.gens {
            for (&i, &v) in g.ix.iter().zip(&g.v) {
                r[i as usize] += v.abs();
                cnt[i as usize] += 1;
            }
        }
        r.iter()
            .zip(&cnt)
            .map(|(&s, &n)| if n == 0 { 0.0 } else { widen_up(s, dot_err(n)) })
            .collect()
    }
}

/// Aᵀy for a sparse y, accumulated into `out` (dense ops by rows; others densely).
fn adjoint_into(op: &LinearOp, y: &Sparse, out: &mut [f64]) {
    match op {
        LinearOp::Dense(d) => {
            for (&r, &a) in y.ix.iter().zip(&y.v) {
                for (o, w) in out.iter_mut().zip(d.row(r as usize)) {
                    *o += a * w;
                }
            }
        }
        LinearOp::Conv(c) => {
            for (&r, &a) in y.ix.iter().zip(&y.v) {
                conv_row(c, r as usize, |j, w| out[j] += a * w);
            }
        }
        LinearOp::Diag(d) => {
            for (&r, &a) in y.ix.iter().zip(&y.v) {
                out[r as usize] += a * d.scale[r as usize];
            }
        }
        _ => {
            let map = op.map();
            let mut dense = vec![0.0; map.out_dim()];
            for (&r, &a) in y.ix.iter().zip(&y.v) {
                dense[r as usize] = a;
            }
            for (o, v) in out.iter_mut().zip(map.apply_t(&dense, false)) {
                *o += v;
            }
        }
    }
}

/// The zonotope at an affine node's input from the one at its output (the bias does not enter
/// the gradient). Each computed entry of Aᵀv is within γ_{fan_out+1}·(|Aᵀ||v|) of the exact one;
/// summed over the centre and the generators (|t_j| ≤ 1) that is γ·|Aᵀ|(|c| + Σ|γ_j|), added
/// to β together with |Aᵀ|β.
fn affine_back(op: &LinearOp, z: Zono) -> Zono {
    let map = op.map();
    let n_in = map.in_dim();
    let e = dot_err(map.fan_out() + 1);
    let r = z.abs_sum();
    let mass: Vec<f64> =
        z.c.iter()
            .zip(&r)
            .map(|(c, r)| next_up(c.abs() + r))
            .collect();
    let err = map.apply_t(&mass, true);
    let prop = map.apply_t(&z.beta, true);
    let beta = prop
        .iter()
        .zip(&err)
        .map(|(p, q)| widen_up(next_up(p + next_up(e * q)), e))
        .collect();
    let c = map.apply_t(&z.c, false);
    let mut buf = vec![0.0; n_in];
    let gens = z
        .gens
        .iter()
        .map(|g| {
            buf.iter_mut().for_each(|x| *x = 0.0);
            adjoint_into(op, g, &mut buf);
            Sparse::from_dense(&buf)
        })
        .filter(|g| !g.ix.is_empty())
        .collect();
    Zono { c, gens, beta }
}

/// One window of a gate: the derivative vectors m_w it can take are the points of conv(V),
/// V = {e_i : i a candidate that can be alive} ∪ {0 if some candidate can be inactive}.
struct Window {
    /// Indices i with e_i ∈ V.
    support: Vec<usize>,
    /// Whether 0 ∈ V.
    zero: bool,
}

/// The windows of a gate: `relu` the ReLU's input box (None: no ReLU), `pool` the max-pool
/// node and its input box (None: each unit its own window).
fn windows(
    relu: Option<&Interval>,
    pool: Option<(&Node, &Interval)>,
    pair: Option<&[Vec<usize>]>,
    dim: usize,
) -> Vec<Window> {
    // can be alive (derivative 1 possible); always alive (derivative 1 on the whole ball).
    let can = |i: usize| relu.is_none_or(|b| b.hi[i] >= 0.0 || b.hi[i].is_nan());
    let always = |i: usize| relu.is_none_or(|b| b.lo[i] > 0.0);
    let make = |cands: Vec<usize>| Window {
        zero: cands.iter().any(|&i| !always(i)),
        support: cands.into_iter().filter(|&i| can(i)).collect(),
    };
    match pool {
        None => (0..dim).map(|i| make(vec![i])).collect(),
        // Pairwise candidates (pool_pairs.rs) narrow the box's; the argmax of z at any point
        // passes both tests, and a selected entry that fails them has derivative 0 there.
        Some((node, pb)) => node
            .pool_windows()
            .iter()
            .enumerate()
            .map(|(w, win)| {
                let c = max_pool::candidates(pb, win);
                make(match pair.and_then(|p| p.get(w)) {
                    Some(p) => c.into_iter().filter(|i| p.contains(i)).collect(),
                    None => c,
                })
            })
            .collect(),
    }
}

/// The zonotope at a gate's input from the one at its output (`n_in` entries at the input).
/// Per window w, with ĝ_w = c_w + (Σ t_j γ_j)_w and |ĝ_w| ≤ a_w = |c_w| + Σ_j |γ_j[w]|:
/// g_w·m_w = ĝ_w μ_w + ĝ_w (m_w − μ_w) + b_w m_w with μ_w the mean of V; the first term is
/// linear in t, the second lies in a_w·½Σ_{v∈V} s_v (v − μ_w), s ∈ [−1, 1]^V (new generators;
/// one, a_w·½(v₁ − v₂), when |V| = 2), the third in the box β_w on the support.
fn gate_back(z: Zono, wins: &[Window], n_in: usize) -> Option<Zono> {
    let r = z.abs_sum();
    let mut c = vec![0.0; n_in];
    let mut beta = vec![0.0; n_in];
    let mut cover = vec![0usize; n_in];
    // Σ of |terms| entering each input entry (centre, old and new generators), for the rounding.
    let mut mag = vec![0.0; n_in];
    // Per output window: (support, weight 1/|V| of each support entry in μ).
    let mut mu: Vec<(usize, f64)> = Vec::new();
    let mut mu_at = vec![(0usize, 0usize); wins.len()];
    let mut new_gens: Vec<Sparse> = Vec::new();
    for (w, win) in wins.iter().enumerate() {
        let k = win.support.len() + usize::from(win.zero);
        let start = mu.len();
        if win.support.is_empty() {
            mu_at[w] = (start, start);
            continue;
        }
        let wt = 1.0 / k as f64;
        for &i in &win.support {
            mu.push((i, wt));
            c[i] += z.c[w] * wt;
            beta[i] = next_up(beta[i] + z.beta[w]);
            cover[i] += 1;
            mag[i] += (z.c[w].abs() + r[w]) * wt;
        }
        mu_at[w] = (start, mu.len());
        if k < 2 {
            continue;
        }
        let a = widen_up(z.c[w].abs() + r[w], f64::EPSILON);
        if a == 0.0 {
            continue;
        }
        let half = 0.5 * a;
        if k == 2 {
            // V = {v₁, v₂}: m − μ = s·½(v₁ − v₂), |s| ≤ 1.
            let (ix, v) = if win.zero {
                (vec![win.support[0] as u32], vec![half])
            } else {
                let (p, q) = (win.support[0], win.support[1]);
                let (lo, hi, sl, sh) = if p < q {
                    (p, q, half, -half)
                } else {
                    (q, p, -half, half)
                };
                (vec![lo as u32, hi as u32], vec![sl, sh])
            };
            for (&i, x) in ix.iter().zip(&v) {
                mag[i as usize] += x.abs();
            }
            new_gens.push(Sparse { ix, v });
        } else {
            // ½(v − μ) for every v ∈ V.
            let mut sup: Vec<usize> = win.support.clone();
            sup.sort_unstable();
            let vals = |hit: Option<usize>| -> Sparse {
                let ix = sup.iter().map(|&i| i as u32).collect();
                let v = sup
                    .iter()
                    .map(|&i| {
                        let e = if Some(i) == hit { 1.0 } else { 0.0 };
                        half * (e - wt)
                    })
                    .collect();
                Sparse { ix, v }
            };
            let first = new_gens.len();
            for &i in &win.support {
                new_gens.push(vals(Some(i)));
            }
            if win.zero {
                new_gens.push(vals(None));
            }
            for g in &new_gens[first..] {
                for (&i, x) in g.ix.iter().zip(&g.v) {
                    mag[i as usize] += x.abs();
                }
            }
        }
    }
    // Old generators through μ: γ'[i] = Σ_w γ[w]·μ_w[i].
    let mut buf = vec![0.0; n_in];
    let mut gens: Vec<Sparse> = Vec::with_capacity(z.gens.len() + new_gens.len());
    for g in &z.gens {
        let mut touched: Vec<u32> = Vec::new();
        for (&w, &x) in g.ix.iter().zip(&g.v) {
            let (s, e) = *mu_at.get(w as usize)?;
            for &(i, wt) in &mu[s..e] {
                if buf[i] == 0.0 {
                    touched.push(i as u32);
                }
                buf[i] += x * wt;
            }
        }
        touched.sort_unstable();
        touched.dedup();
        let mut s = Sparse::default();
        for i in touched {
            let v = std::mem::take(&mut buf[i as usize]);
            if v != 0.0 {
                s.ix.push(i);
                s.v.push(v);
            }
        }
        if !s.ix.is_empty() {
            gens.push(s);
        }
    }
    gens.extend(new_gens);
    if gens.len() > MAX_GENERATORS {
        return None;
    }
    // Rounding: every computed entry of c and of the old generators is a sum of ≤ cover[i]
    // products c_w·(1/|V|) (resp. γ_j[w]·(1/|V|)), a new generator's entry one product with
    // a computed ½·(e − 1/|V|): each within γ_{cover+3} of the exact value relative to the sum of
    // the magnitudes of its terms; over |t_j| ≤ 1 the total is ≤ γ·mag[i] (mag accumulated in
    // floating point: one more γ).
    for i in 0..n_in {
        let e = dot_err(cover[i] + 3);
        beta[i] = next_up(beta[i] + next_up(2.0 * e * mag[i]));
    }
    Some(Zono { c, gens, beta })
}

/// The certified bound on sup ‖∇ₓS‖_q (q dual to `norm`) over the ball whose node input boxes
/// are `traces` (from `local::pre_bounds`), with ∂S/∂f in the box `neg_p` and the first pool's
/// candidates narrowed by `pairs` (`pool_pairs::pool_pairs` of the same ball); the ℓ2 radius is
/// skipped when it cannot be below `cutoff` (a bound known already; +∞ for none); `None` for networks
/// with nodes other than affine maps, ReLU and max-pool (residual blocks, concatenations).
pub fn gradient_zonotope(
    net: &Net,
    traces: &[Trace],
    neg_p: &Interval,
    norm: Norm,
    pairs: Option<&PoolPairs>,
    cutoff: f64,
) -> Option<f64> {
    let nodes = &net.nodes;
    if traces.len() != nodes.len() || neg_p.lo.iter().chain(&neg_p.hi).any(|v| !v.is_finite()) {
        return None;
    }
    let mut z = head(neg_p)?;
    let mut k = nodes.len();
    while k > 0 {
        k -= 1;
        match &nodes[k] {
            Node::Affine(a) => {
                if z.c.len() != a.op.map().out_dim() {
                    return None;
                }
                z = affine_back(&a.op, z);
            }
            Node::Relu => {
                let b = traces[k].input();
                let wins = windows(Some(b), None, None, b.len());
                z = gate_back(z, &wins, b.len())?;
            }
            n if n.is_max_pool() => {
                let pb = traces[k].input();
                // ReLU right before the pool: one gate (0 ∈ V only where a candidate can die).
                let relu = (k > 0 && matches!(nodes[k - 1], Node::Relu)).then(|| k - 1);
                let pair = pairs.filter(|q| q.node == k).map(|q| q.cands.as_slice());
                let wins = windows(
                    relu.map(|r| traces[r].input()),
                    Some((n, pb)),
                    pair,
                    pb.len(),
                );
                z = gate_back(z, &wins, pb.len())?;
                if let Some(r) = relu {
                    k = r;
                }
            }
            _ => return None,
        }
        if z.c.len() != traces[k].input().len() {
            return None;
        }
        if std::env::var_os("OODCERT_PROBE_PRODUCT").is_some() {
            let c2: f64 = z.c.iter().map(|x| x * x).sum();
            let f2: f64 = z.gens.iter().flat_map(|g| &g.v).map(|x| x * x).sum();
            let b2: f64 = z.beta.iter().map(|x| x * x).sum();
            let c1: f64 = z.c.iter().map(|x| x.abs()).sum();
            eprintln!(
                "probe zonotope at node {k} input: dim {} gens {} |c|2 {:.4e} |G|F {:.4e} |beta|2 {:.4e} box l2 {:.4e}; |c|1 {:.4e} box l1 {:.4e}",
                z.c.len(),
                z.gens.len(),
                c2.sqrt(),
                f2.sqrt(),
                b2.sqrt(),
                box_norm(&z, 2),
                c1,
                box_norm(&z, 1)
            );
        }
    }
    Some(match norm {
        Norm::Linf => box_norm(&z, 1),
        Norm::L2 => {
            // sup_t ‖c + Gt‖ ≥ ‖G‖_F (the mean of ‖c + Gt‖² over t ∈ {±1}^m is ‖c‖² + ‖G‖²_F),
            // so the radius cannot beat a known bound below that: skip its Gram.
            let f2: f64 = z.gens.iter().flat_map(|g| &g.v).map(|x| x * x).sum();
            let bx = box_norm(&z, 2);
            if f2.sqrt() * (1.0 - 1e-9) >= cutoff.min(bx) {
                bx
            } else {
                bx.min(l2_radius(&z))
            }
        }
    })
}

/// The head: g = ∂S/∂f = −p with p in the simplex and p_j ∈ [p̲_j, p̄_j]; with t the class
/// of the largest p̲, −p = −e_t − Σ_{j≠t} p_j (e_j − e_t) exactly (Σ p = 1), so the centre is
/// −e_t − Σ m_j (e_j − e_t) and each j ≠ t adds the generator r_j (e_j − e_t) (m_j, r_j the
/// midpoint and radius of p_j's box).
fn head(neg_p: &Interval) -> Option<Zono> {
    let k = neg_p.lo.len();
    // p̲ = −(−p)̄, p̄ = −(−p)̲.
    let (lo, hi): (Vec<f64>, Vec<f64>) = (0..k).map(|j| (-neg_p.hi[j], -neg_p.lo[j])).unzip();
    let t = (0..k).max_by(|&a, &b| lo[a].total_cmp(&lo[b]))?;
    let mut c = vec![0.0; k];
    let mut beta = vec![0.0; k];
    let mut gens = Vec::new();
    let mut sum_m = 0.0;
    let mut sum_abs = 1.0;
    for j in (0..k).filter(|&j| j != t) {
        let m = 0.5 * (lo[j] + hi[j]);
        // fl(m) is some number; the radius is taken around it, rounded up (exact cover).
        let r = next_up((hi[j] - m).max(m - lo[j]));
        c[j] = -m;
        sum_m += m;
        sum_abs += m.abs();
        if r > 0.0 {
            let (ix, v) = if j < t {
                (vec![j as u32, t as u32], vec![r, -r])
            } else {
                (vec![t as u32, j as u32], vec![-r, r])
            };
            gens.push(Sparse { ix, v });
        }
    }
    c[t] = -1.0 + sum_m;
    // c_t's sum of k terms: within γ_{k+1}·(1 + Σ|m_j|) of the exact one.
    beta[t] = next_up(dot_err(k + 1) * sum_abs);
    Some(Zono { c, gens, beta })
}

/// ‖|c| + Σ|γ_j| + β‖_q (q = 1 or 2): the zonotope's box norm, rounded up.
fn box_norm(z: &Zono, q: u8) -> f64 {
    let r = z.abs_sum();
    let n = z.c.len();
    let m: Vec<f64> = (0..n)
        .map(|i| next_up(next_up(z.c[i].abs() + r[i]) + z.beta[i]))
        .collect();
    if q == 1 {
        widen_up(m.iter().sum::<f64>(), dot_err(n))
    } else {
        sqrt_up(widen_up(
            m.iter().map(|x| x * x).sum::<f64>(),
            dot_err(n + 1),
        ))
    }
}

fn sqrt_up(x: f64) -> f64 {
    next_up(x.sqrt() * (1.0 + 2.0 * f64::EPSILON))
}

/// sup_t ‖c + Gt‖₂ + ‖β‖₂ ≤ min(‖c‖ + √Q, √(‖c‖² + 2‖Gᵀc‖₁ + Q)) + ‖β‖, with
/// Q = ‖R‖₂²·Σ_j 1/s_j² ≥ sup_t ‖Gt‖² for R = G·diag(s) (‖Gt‖ = ‖R·(t/s)‖ ≤ ‖R‖‖t/s‖) and
/// s_j = ‖γ_j‖^{−1/2}; ‖R‖₂ from its n × n Gram Σ_j r_j r_jᵀ certified by Cholesky.
fn l2_radius(z: &Zono) -> f64 {
    let n = z.c.len();
    if n > MAX_GRAM_SIDE || z.gens.is_empty() {
        return if z.gens.is_empty() {
            let c2 = widen_up(z.c.iter().map(|x| x * x).sum::<f64>(), dot_err(n + 1));
            next_up(sqrt_up(c2) + beta_norm(z))
        } else {
            f64::INFINITY
        };
    }
    let mut gram = DMatrix::<f64>::zeros(n, n);
    let mut frob2 = 0.0;
    let mut inv_s2 = 0.0;
    let mut cross = 0.0;
    let mut rows_per = vec![0usize; n];
    let mut nnz = 0usize;
    for g in &z.gens {
        let nn = widen_up(
            g.v.iter().map(|x| x * x).sum::<f64>(),
            dot_err(g.v.len() + 1),
        );
        let norm = sqrt_up(nn);
        if norm == 0.0 || !norm.is_finite() {
            return f64::INFINITY;
        }
        let s = 1.0 / norm.sqrt();
        // 1/s² ≤ norm·(1 + small): rounded up from the computed s.
        inv_s2 = next_up(inv_s2 + next_up(next_up(1.0 / s) / s));
        let r: Vec<f64> = g.v.iter().map(|x| x * s).collect();
        for (a, (&i, &ri)) in g.ix.iter().zip(&r).enumerate() {
            let i = i as usize;
            rows_per[i] += 1;
            for (&j, &rj) in g.ix[a..].iter().zip(&r[a..]) {
                gram[(i, j as usize)] += ri * rj;
            }
            frob2 += ri * ri;
        }
        let d: f64 =
            g.ix.iter()
                .zip(&g.v)
                .map(|(&i, v)| v * z.c[i as usize])
                .sum();
        let da: f64 =
            g.ix.iter()
                .zip(&g.v)
                .map(|(&i, v)| (v * z.c[i as usize]).abs())
                .sum();
        // |fl(d) − γ_jᵀc| ≤ γ_{n+1}·Σ|γ_j[i] c_i| (Higham 3.1).
        cross += next_up(d.abs() + widen_up(da, dot_err(g.v.len() + 1)) * dot_err(g.v.len() + 1));
        nnz += g.v.len();
    }
    let m = z.gens.len();
    let frob2 = widen_up(frob2, dot_err(nnz + 1));
    let cross = widen_up(cross, dot_err(m + 1));
    for i in 0..n {
        for j in 0..i {
            gram[(i, j)] = gram[(j, i)];
        }
    }
    // Entries of R were rounded once (relative u): the exact R is within 2u·‖R̂‖_F of R̂.
    let terms = rows_per.iter().copied().max().unwrap_or(0) + 1;
    let r_norm = next_up(
        spectral_from_gram_by_cholesky(&gram, terms, frob2)
            + next_up(2.0 * f64::EPSILON * sqrt_up(frob2)),
    );
    if !r_norm.is_finite() {
        return f64::INFINITY;
    }
    let q = next_up(next_up(r_norm * r_norm) * inv_s2);
    let c2 = widen_up(z.c.iter().map(|x| x * x).sum::<f64>(), dot_err(n + 1));
    let a = next_up(sqrt_up(c2) + sqrt_up(q));
    let b = sqrt_up(next_up(next_up(c2 + next_up(2.0 * cross)) + q));
    next_up(a.min(b) + beta_norm(z))
}

fn beta_norm(z: &Zono) -> f64 {
    sqrt_up(widen_up(
        z.beta.iter().map(|x| x * x).sum::<f64>(),
        dot_err(z.beta.len() + 1),
    ))
}
