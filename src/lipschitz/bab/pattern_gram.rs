//! The ℓ2 gradient bound of a ReLU chain as a quadratic form in its deviations from a reference
//! activation pattern (telescoping the Jacobian product, Π Xₗ − Π Xₗ⁰ = Σₗ X₁⁰⋯Xₗ₋₁⁰ (Xₗ − Xₗ⁰)
//! Xₗ₊₁⋯X_L): ∇S = g⁰ + Σ_θ θᵢ eᵢ with fixed columns eᵢ and box-bounded scalars θᵢ, so
//! ‖∇S‖₂² ≤ ‖g⁰‖² + Σᵢ max(2hᵢθᵢ + Gᵢᵢθᵢ²) + Σ_{i≠j} max Gᵢⱼθᵢθⱼ with G the Gram matrix of the
//! columns: the columns' inner products cancel where the coordinate-wise box adds |·|.
//! Proof: proofs/lipschitz_pattern_gram.md.

use crate::bounds::ibp::Trace;
use crate::bounds::round::{ABS_FLOOR, dot_err, next_down, next_up};
use crate::bounds::softmax::{max_linear_box_simplex, simplex_tighten, softmax_box};
use crate::bounds::{Interval, Net, Node, relu::derivative_set};
use crate::error::{Error, Result};
use crate::lipschitz::grad_backward_batch::grad_backward_many;
use crate::model::layers::gemm::{Mat, gemm_into};

/// The reference point of the expansion: the centre's ReLU signs (per top-level ReLU node,
/// None for other nodes) and its softmax p⁰.
pub struct Reference {
    pub relu_positive: Vec<Option<Vec<bool>>>,
    pub p: Vec<f64>,
    /// Columns of neurons whose prefix has no ReLU (the same in every domain), by (node, index);
    /// shared by the threads that bound sibling domains (a column is a pure function of its key,
    /// so which thread fills it changes nothing).
    cache: super::column_cache::ColumnCache,
}

impl Reference {
    /// The centre `x` of the ball as the reference (a forward pass).
    pub fn at(net: &Net, x: &[f64], temperature: f64) -> Result<Self> {
        let mut relu_positive = vec![None; net.nodes.len()];
        let mut z = x.to_vec();
        for (i, node) in net.nodes.iter().enumerate() {
            if let Node::Relu = node {
                relu_positive[i] = Some(z.iter().map(|&v| v > 0.0).collect());
            }
            z = crate::bounds::net::forward_nodes(std::slice::from_ref(node), z)?;
        }
        let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let e: Vec<f64> = z.iter().map(|v| ((v - m) / temperature).exp()).collect();
        let s: f64 = e.iter().sum();
        Ok(Reference {
            relu_positive,
            p: e.iter().map(|v| v / s).collect(),
            cache: Default::default(),
        })
    }
}

/// At most this many multiply-adds for the Gram matrix of one domain (else the rule steps aside).
const MAX_WORK: f64 = 4e9;

/// True for the networks the rule handles: top-level affine and ReLU nodes only, ending affine.
pub fn supported(net: &Net) -> bool {
    net.nodes
        .iter()
        .all(|n| matches!(n, Node::Affine(_) | Node::Relu))
        && matches!(net.nodes.last(), Some(Node::Affine(_)))
}

/// A certified upper bound on a sum of terms (f64 sum error ≤ γ_N·Σ|t|, each term's own rounding
/// ≤ 4u|t|).
#[derive(Default)]
struct Acc {
    val: f64,
    mag: f64,
    n: usize,
}

impl Acc {
    fn add(&mut self, t: f64) {
        self.val += t;
        self.mag += t.abs();
        self.n += 1;
    }
    fn upper(&self) -> f64 {
        next_up(self.val + (dot_err(self.n) + 4.0 * f64::EPSILON) * self.mag + ABS_FLOOR)
    }
}

/// The interval of a·b for a ∈ [al, ah], b ∈ [bl, bh] (the four corners; rounding left to the
/// caller's slack).
fn prod(al: f64, ah: f64, bl: f64, bh: f64) -> (f64, f64) {
    let c = [al * bl, al * bh, ah * bl, ah * bh];
    (
        c.iter().fold(f64::INFINITY, |a, &b| a.min(b)),
        c.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b)),
    )
}

/// The bound and the neuron that carries most of it.
#[derive(Debug, Clone, Copy)]
pub struct GramBound {
    /// Certified upper bound of sup ‖∇ₓS‖₂.
    pub value: f64,
    /// The sign-uncertain neuron (node, index) to split next ([`branch_pick`]): the branching
    /// choice.
    pub pick: Option<(usize, usize)>,
}

/// The expansion ∇S = g̃ + Σ_a θ_a ẽ_a + e of Claims 1 and 3 (proofs/lipschitz_pattern_gram.md),
/// with the Gram matrix of (g̃, ẽ_1, …, ẽ_m) enclosed entrywise.
pub struct Expansion {
    /// The sign-uncertain neurons (node, index): the first `neurons.len()` variables θ.
    pub neurons: Vec<(usize, usize)>,
    /// The box of each θ_a (neurons first, then the K − 1 head variables).
    pub ranges: Vec<(f64, f64)>,
    /// Gram enclosure of the vectors v_0 = g̃, v_a = ẽ_a (a = 1..=m), row-major (m+1)²:
    /// lo ≤ ⟨v_i, v_j⟩ ≤ hi exactly.
    pub gram_lo: Vec<f64>,
    pub gram_hi: Vec<f64>,
    /// ‖e‖₂ rounded up: |∇S − (g̃ + Ẽθ)| ≤ e coordinate-wise for the exact θ.
    pub err_norm: f64,
}

impl Expansion {
    /// The number of variables m.
    pub fn vars(&self) -> usize {
        self.ranges.len()
    }
    /// The Gram enclosure of ⟨v_i, v_j⟩ (index 0 = g̃, a = ẽ_a).
    pub fn gram(&self, i: usize, j: usize) -> (f64, f64) {
        let n = self.ranges.len() + 1;
        (self.gram_lo[i * n + j], self.gram_hi[i * n + j])
    }
}

/// Certified upper bound of sup ‖∇ₓS‖₂ over the points whose node inputs lie in `dtraces` (a
/// derivative view: only the ReLU derivative sets enter) and logits in `logits`; None for
/// unsupported networks. `reference` fixes the pattern of the sign-uncertain neurons in g⁰.
/// The smaller of the pairwise bound (Claim 2) and the diagonal dual bound
/// ([`super::box_quadratic_dual`]).
pub fn pattern_gram_bound(
    net: &Net,
    dtraces: &[Trace],
    logits: &Interval,
    temperature: f64,
    reference: &Reference,
) -> Result<Option<GramBound>> {
    let Some(x) = expansion(net, dtraces, logits, temperature, reference)? else {
        return Ok(None);
    };
    let (q, score) = pairwise_square_bound(&x);
    let dual = super::box_quadratic_dual::box_quadratic_dual(&x);
    let q = q.min(dual.value);
    let root = next_up(q.sqrt() * (1.0 + 4.0 * f64::EPSILON));
    // Branching: the neuron whose share of the dual bound (its d_a) is largest, else the one
    // whose pairwise terms add the most, weighted by how lopsided its split is (`branch_pick`).
    let share = if dual.d.len() == x.vars() + 1 {
        &dual.d[1..]
    } else {
        &score[..]
    };
    let pick = branch_pick(&x.neurons, share, dtraces);
    Ok(Some(GramBound {
        value: next_up(root + x.err_norm),
        pick,
    }))
}

/// The neuron to split among the sign-uncertain `neurons` (node, index) with bound shares
/// `share`: one of the first ReLU node among them before any other (its split also cuts the
/// ball, [`super::split_cuts`]), and among those the largest share_a / bal_a², where bal_a =
/// min(−l, u)/(u − l) ∈ (0, ½] is the smaller side of its input box [l, u] in `dtraces`. A
/// lopsided split leaves one small child, soon pruned or proven empty, and fixes the derivative
/// in the other, which keeps most of the domain: on the GReg MLP (ℓ2 ε = 0.3, 800 domains) the
/// median bound / PGD is 1.087 with both rules, 1.121 with the first-layer rule alone, 1.124
/// with neither and 1.18 with the weight alone (BENCHMARKS.md, "2026-12-07, 16:20 UTC").
pub fn branch_pick(
    neurons: &[(usize, usize)],
    share: &[f64],
    dtraces: &[Trace],
) -> Option<(usize, usize)> {
    let first = neurons.iter().map(|n| n.0).min();
    let score = |a: usize| {
        let (i, j) = neurons[a];
        let b = dtraces.get(i).map(|t| t.input());
        let bal = match b {
            Some(b) if b.hi[j] > b.lo[j] => (-b.lo[j]).min(b.hi[j]) / (b.hi[j] - b.lo[j]),
            _ => 0.5,
        };
        let bal = if bal.is_nan() {
            0.5
        } else {
            bal.clamp(1e-6, 0.5)
        };
        let s = share.get(a).copied().unwrap_or(0.0) / (bal * bal);
        if s.is_nan() { f64::NEG_INFINITY } else { s }
    };
    (0..neurons.len())
        .map(|a| (Some(neurons[a].0) == first, score(a), a))
        .max_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)).then(y.2.cmp(&x.2)))
        .map(|(_, _, a)| neurons[a])
}

/// The expansion of the gradient over a domain (Claims 1 and 3); None for unsupported networks
/// or when the Gram matrix would cost more than `MAX_WORK`.
pub fn expansion(
    net: &Net,
    dtraces: &[Trace],
    logits: &Interval,
    temperature: f64,
    reference: &Reference,
) -> Result<Option<Expansion>> {
    if !supported(net) {
        return Ok(None);
    }
    let nodes = &net.nodes;
    if dtraces.len() != nodes.len() || reference.relu_positive.len() != nodes.len() {
        return Err(Error::Internal("pattern Gram: trace does not match".into()));
    }
    let k = net.num_classes;
    let p = simplex_tighten(&softmax_box(logits, temperature));
    let neg_p = Interval {
        lo: p.hi.iter().map(|v| -v).collect(),
        hi: p.lo.iter().map(|v| -v).collect(),
    };
    // The reference view: every sign-uncertain neuron moved to the reference's side of 0 (its
    // derivative set becomes the single reference derivative).
    let mut rview = dtraces.to_vec();
    // Variables θ: (node, neuron, interval of θ). Columns follow.
    let mut vars: Vec<(usize, usize, f64, f64)> = Vec::new();
    for i in 0..nodes.len() {
        if !matches!(nodes[i], Node::Relu) {
            continue;
        }
        let pos = reference.relu_positive[i]
            .as_ref()
            .ok_or_else(|| Error::Internal("pattern Gram: no reference signs".into()))?;
        let Trace::Leaf(b) = &mut rview[i] else {
            return Err(Error::Internal("pattern Gram: a ReLU without a box".into()));
        };
        let unstable: Vec<usize> = (0..b.len())
            .filter(|&j| derivative_set(b.lo[j], b.hi[j]) == (0.0, 1.0))
            .collect();
        if unstable.is_empty() {
            continue;
        }
        // s: the gradient box at this ReLU's output, from the box head and from the class rows
        // combined over p ∈ box ∩ simplex, intersected.
        let mut seeds: Vec<Interval> = (0..k)
            .map(|c| {
                let mut e = vec![0.0; k];
                e[c] = 1.0;
                Interval::point(&e)
            })
            .collect();
        seeds.push(neg_p.clone());
        let mut rows = grad_backward_many(&nodes[i + 1..], &dtraces[i + 1..], seeds)?;
        let s_box = rows
            .pop()
            .ok_or_else(|| Error::Internal("pattern Gram: no gradient box".into()))?;
        for &j in &unstable {
            let ca: Vec<f64> = rows.iter().map(|r| -r.lo[j]).collect();
            let cb: Vec<f64> = rows.iter().map(|r| r.hi[j]).collect();
            let hi = max_linear_box_simplex(&ca, &p).min(s_box.hi[j]);
            let lo = (-max_linear_box_simplex(&cb, &p)).max(s_box.lo[j]);
            // θ = (d − d⁰)·s with d ∈ [0, 1]: the hull of 0 and s (d⁰ = 0) or of 0 and −s (d⁰ = 1).
            let (tl, th) = if pos[j] {
                ((-hi).min(0.0), (-lo).max(0.0))
            } else {
                (lo.min(0.0), hi.max(0.0))
            };
            vars.push((i, j, tl, th));
        }
        for &j in &unstable {
            if pos[j] {
                b.lo[j] = b.lo[j].max(f64::MIN_POSITIVE);
                b.hi[j] = b.hi[j].max(b.lo[j]);
            } else {
                b.hi[j] = b.hi[j].min(-f64::MIN_POSITIVE);
                b.lo[j] = b.lo[j].min(b.hi[j]);
            }
        }
    }
    // Columns (outward-rounded intervals): for a neuron of node i, e_j pulled back through
    // nodes[..i] with the reference pattern; for the head, −e_c through the whole network.
    let n = net.input_dim();
    // Cost guard: the Gram matrix costs m²·n multiply-adds (None: the caller's other rules).
    let m_all = (vars.len() + k) as f64;
    if m_all * m_all * n as f64 > MAX_WORK {
        return Ok(None);
    }
    let mut cols: Vec<Option<Interval>> = Vec::with_capacity(vars.len() + k);
    let mut ranges: Vec<(f64, f64)> = Vec::with_capacity(vars.len() + k);
    // Columns of fixed prefixes come from the cache; the others are pulled back node by node, all
    // of a node's columns in one batch.
    // A node's columns are the same in every domain when no ReLU comes before it.
    let first_relu = nodes
        .iter()
        .position(|n| matches!(n, Node::Relu))
        .unwrap_or(nodes.len());
    let fixed = |i: usize| i <= first_relu;
    let mut pending: Vec<(usize, Vec<usize>)> = Vec::new();
    for (a, &(i, j, tl, th)) in vars.iter().enumerate() {
        let cached = fixed(i).then(|| reference.cache.get((i, j))).flatten();
        if cached.is_none() {
            match pending.last_mut() {
                Some((node, list)) if *node == i => list.push(a),
                _ => pending.push((i, vec![a])),
            }
        }
        cols.push(cached);
        ranges.push((tl, th));
    }
    for (i, list) in pending {
        let width = rview[i].input().len();
        let seeds = list
            .iter()
            .map(|&a| {
                let mut e = vec![0.0; width];
                e[vars[a].1] = 1.0;
                Interval::point(&e)
            })
            .collect();
        for (&a, c) in list
            .iter()
            .zip(grad_backward_many(&nodes[..i], &rview[..i], seeds)?)
        {
            if fixed(i) {
                reference.cache.insert((i, vars[a].1), c.clone());
            }
            cols[a] = Some(c);
        }
    }
    let mut cols = cols
        .into_iter()
        .collect::<Option<Vec<Interval>>>()
        .ok_or_else(|| Error::Internal("pattern Gram: a column was not computed".into()))?;
    // Head: −C q with q = p − p⁰, Σ q = 0, so −C q = Σ_{c≠y} q_c·(−C(e_c − e_y)); y is the class
    // whose box is widest (its variable drops out).
    let y = (0..k)
        .max_by(|&a, &b| (p.hi[a] - p.lo[a]).total_cmp(&(p.hi[b] - p.lo[b])))
        .unwrap_or(0);
    // The head columns, g⁰ and (for the rounding of Σp⁰) −C e_y, pulled back in one batch.
    let heads: Vec<usize> = (0..k).filter(|&c| c != y).collect();
    let mut seeds: Vec<Interval> = heads
        .iter()
        .map(|&c| {
            let mut e = vec![0.0; k];
            e[c] = -1.0;
            e[y] = 1.0;
            Interval::point(&e)
        })
        .collect();
    let neg_p0: Vec<f64> = reference.p.iter().map(|v| -v).collect();
    seeds.push(Interval::point(&neg_p0));
    let mut e = vec![0.0; k];
    e[y] = -1.0;
    seeds.push(Interval::point(&e));
    let mut pulled = grad_backward_many(nodes, &rview, seeds)?;
    let missing = || Error::Internal("pattern Gram: a head column was not computed".into());
    let cy = pulled.pop().ok_or_else(missing)?;
    let g0 = pulled.pop().ok_or_else(missing)?;
    for (&c, col) in heads.iter().zip(pulled) {
        cols.push(col);
        ranges.push((
            next_down(p.lo[c] - reference.p[c]),
            next_up(p.hi[c] - reference.p[c]),
        ));
    }
    // Midpoints carry the quadratic form; radii go to a separate triangle-inequality term.
    let (g0m, g0r) = g0.center_radius();
    let mut em = Vec::with_capacity(cols.len());
    let mut err = g0r; // |v − (g̃ + Ẽθ)| ≤ err, coordinate-wise
    for (c, &(tl, th)) in cols.iter().zip(&ranges) {
        let (m, r) = c.center_radius();
        let t = tl.abs().max(th.abs());
        for (e, ri) in err.iter_mut().zip(&r) {
            *e = next_up(*e + next_up(ri * t));
        }
        em.push(m);
    }
    // Σp⁰ = 1 holds only up to rounding: the dropped term (Σq)·(−C e_y) has |Σq| = |1 − Σp⁰|.
    if k > 1 {
        let s0: f64 = reference.p.iter().sum();
        let mag: f64 = reference.p.iter().map(|v| v.abs()).sum();
        let delta = next_up((1.0 - s0).abs() + dot_err(k) * (mag + 1.0) + ABS_FLOOR);
        for (ek, a) in err.iter_mut().zip(cy.abs_max()) {
            *ek = next_up(*ek + next_up(a * delta));
        }
    }
    let m = em.len();
    // The Gram matrix of (g̃, ẽ_1, …, ẽ_m) and of their absolute values, as two GEMMs: every entry
    // is a sum of n products in some order, within γ_n·Σ|xy| of its exact value (any order, with
    // or without FMA), and the computed Σ|xy| is at least (1 − γ_n) of its exact value, so the
    // slack dot_err(n)·Σ|xy| covers the error.
    let w = m + 1;
    let mut rows = Vec::with_capacity(w * n);
    rows.extend_from_slice(&g0m);
    for e in &em {
        rows.extend_from_slice(e);
    }
    if rows.len() != w * n {
        return Err(Error::Internal(
            "pattern Gram: a column of the wrong length".into(),
        ));
    }
    let abs_rows: Vec<f64> = rows.iter().map(|v| v.abs()).collect();
    let gram_of = |r: &[f64]| -> Result<Vec<f64>> {
        let mut dst = vec![0.0; w * w];
        let a = Mat::row_major(r, w, n);
        gemm_into(&mut dst, a, a.t(), false, false)?;
        Ok(dst)
    };
    let (sums, mags) = (gram_of(&rows)?, gram_of(&abs_rows)?);
    let (mut gram_lo, mut gram_hi) = (vec![0.0; w * w], vec![0.0; w * w]);
    for a in 0..w {
        for b in a..w {
            // The upper triangle's entry for both: the GEMM need not make the two equal.
            let (s, g) = (sums[a * w + b], mags[a * w + b]);
            let slack = dot_err(n) * g + ABS_FLOOR;
            let (mut lo, hi) = (next_down(s - slack), next_up(s + slack));
            if a == b {
                lo = lo.max(0.0); // a square sum
            }
            (gram_lo[a * w + b], gram_hi[a * w + b]) = (lo, hi);
            (gram_lo[b * w + a], gram_hi[b * w + a]) = (lo, hi);
        }
    }
    let e2 = err.iter().fold(0.0, |a, v| a + v * v);
    let err_norm = next_up(next_up(e2 * (1.0 + dot_err(n))).sqrt() * (1.0 + 4.0 * f64::EPSILON));
    Ok(Some(Expansion {
        neurons: vars.iter().map(|v| (v.0, v.1)).collect(),
        ranges,
        gram_lo,
        gram_hi,
        err_norm: if err_norm.is_nan() {
            f64::INFINITY
        } else {
            err_norm
        },
    }))
}

/// Claim 2: a certified upper bound of max over the θ box of ‖g̃ + Ẽθ‖₂², each term maximised
/// on its own (+∞ on NaN), and each variable's share (its term plus half of each pair it is in).
pub fn pairwise_square_bound(x: &Expansion) -> (f64, Vec<f64>) {
    let m = x.vars();
    let ranges = &x.ranges;
    let mut acc = Acc::default();
    acc.add(x.gram(0, 0).1);
    let mut score = vec![0.0f64; m];
    for a in 0..m {
        let (hl, hh) = x.gram(a + 1, 0);
        let (gl, gh) = x.gram(a + 1, a + 1);
        let (tl, th) = ranges[a];
        // 2hθ + Gθ² is convex in θ (G ≥ 0) and bilinear in (h, G): a corner is the maximum.
        let mut best = f64::NEG_INFINITY;
        for t in [tl, th] {
            for h in [hl, hh] {
                for g in [gl, gh] {
                    best = best.max(2.0 * h * t + g * t * t);
                }
            }
        }
        acc.add(best);
        score[a] += best.max(0.0);
        for b in a + 1..m {
            let (gl, gh) = x.gram(a + 1, b + 1);
            let (pl, ph) = prod(tl, th, ranges[b].0, ranges[b].1);
            let (_, top) = prod(gl, gh, pl, ph);
            acc.add(2.0 * top);
            score[a] += top.max(0.0);
            score[b] += top.max(0.0);
        }
    }
    // A NaN anywhere (a corrupted box or centre) gives +∞, never a quadratic part of 0.
    let q = match acc.upper() {
        u if u.is_nan() => f64::INFINITY,
        u => u.max(0.0),
    };
    (q, score)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(lo: &[f64], hi: &[f64]) -> Trace {
        Trace::Leaf(Interval {
            lo: lo.to_vec(),
            hi: hi.to_vec(),
        })
    }

    /// The first ReLU node's neurons go first whatever their shares; among them the share over
    /// the squared smaller side decides (a lopsided box [−0.1, 0.9] beats a balanced [−1, 1]
    /// with twice the share: 1/0.01 > 2/0.25); a box of zero width or NaN shares never wins
    /// and never panics.
    #[test]
    fn branch_pick_prefers_the_first_layer_then_lopsided_splits() {
        let t = vec![
            leaf(&[], &[]),
            leaf(&[-1.0, -0.1, 0.0], &[1.0, 0.9, 0.0]),
            leaf(&[], &[]),
            leaf(&[-1.0], &[1.0]),
        ];
        let neurons = [(1, 0), (1, 1), (3, 0)];
        assert_eq!(branch_pick(&neurons, &[2.0, 1.0, 100.0], &t), Some((1, 1)));
        // Equal sides: the larger share.
        let t2 = vec![leaf(&[], &[]), leaf(&[-1.0, -0.1], &[1.0, 0.1])];
        assert_eq!(
            branch_pick(&[(1, 0), (1, 1)], &[2.0, 1.0], &t2),
            Some((1, 0))
        );
        // The zero-width box counts as balanced (not as the most lopsided), a NaN share as
        // nothing.
        let n3 = [(1, 2), (1, 0)];
        assert_eq!(branch_pick(&n3, &[1.0, 1.5], &t), Some((1, 0)));
        assert_eq!(branch_pick(&n3, &[f64::NAN, 1.0], &t), Some((1, 0)));
        // Only deeper neurons left: they compete among themselves.
        assert_eq!(branch_pick(&[(3, 0)], &[0.5], &t), Some((3, 0)));
        assert_eq!(branch_pick(&[], &[], &t), None);
    }
}
