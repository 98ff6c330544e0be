//! Three probes of what a bound that couples the ReLU and max-pool derivative sets could gain on a
//! CNN over an ℓ2 ball (estimates in f64, not certificates; Affine, ReLU and max-pool nodes).
//! Per image and per gate (ReLU or max-pool node, boxes from CROWN as `oodcert lipschitz` takes
//! them):
//! 1. **Flip budget.** A flip of gate input j needs |Δz_j| ≥ its centre margin (ReLU: |z_j⁰|; a
//!    max-pool switch from the centre's argmax r to c: Δz_c − Δz_r ≥ z_r⁰ − z_c⁰, so
//!    Δz_c² + Δz_r² ≥ (z_r⁰ − z_c⁰)²/2), and Σ_j Δz_j² ≤ (L ε)² with L the prefix's Lipschitz
//!    constant (here the product of power-iteration operator norms). Printed: the box-uncertain
//!    gates, the zero-cost ones (ties), and the most that can flip at once under that budget.
//! 2. **Pattern-Gram with suffix boxes** (`lipschitz::bab::pattern_gram`'s expansion, max-pool
//!    switches added as variables θ_{w,c} = [c selected]·s_w with columns pulled back from
//!    e_c − e_r): the mean half-width of the θ boxes per gate (from the interval backward pass of
//!    the suffix) and the diagonal dual of the quadratic form, computed in the input space as
//!    λ_max(B D⁻¹ Bᵀ)·Σd (power iterations, multiplicative weight updates).
//! 3. **Reverse telescoping** with the suffix at the centre: ∇S(x) − ∇S(x₀) = Σ_l P_l(x) Δ_l v_l⁰
//!    (P_l the prefix Jacobian, v_l⁰ the centre's gradient at gate l's output, Δ_l the flips), so
//!    ‖∇S‖ ≤ ‖∇S(x₀)‖ + Σ_l sup‖P_l‖·‖Δ_l v_l⁰‖. With ‖P_l‖ taken at the centre's pattern (below
//!    the supremum: optimistic) and ‖Δ_l v_l⁰‖ over the box-uncertain gates.
//!
//! Run: cargo run --release --example lenet_l2_coupling -- MODEL DATA EPS [IMAGES] [ROUNDS]
//! (data from `OODCERT_DATA`). Used in BENCHMARKS.md ("2026-12-07, 18:30 UTC").

use oodcert::bounds::Interval;
use oodcert::bounds::ball::{Ball, Norm};
use oodcert::bounds::ibp::Trace;
use oodcert::bounds::net::Node;
use oodcert::error::Result;
use oodcert::lipschitz::local::{PreBounds, grad_backward, neg_softmax_box, pre_bounds};
use rayon::prelude::*;

#[path = "support/args.rs"]
mod args;
#[path = "support/point_eval.rs"]
mod point_eval;
use args::arg;
use point_eval::{argmax, backprop, forward_trace};

const USAGE: &str = "usage: lenet_l2_coupling MODEL DATA EPS [IMAGES] [ROUNDS]";

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// J_t v at the centre's pattern: the tangent of node t's input along v.
fn jvp(nodes: &[Node], acts: &[Vec<f64>], t: usize, mut v: Vec<f64>) -> Vec<f64> {
    for k in 0..t {
        v = match &nodes[k] {
            Node::Affine(a) => a.op.map().apply(&v, false),
            Node::Relu => v
                .iter()
                .zip(&acts[k])
                .map(|(g, z)| if *z > 0.0 { *g } else { 0.0 })
                .collect(),
            n => n
                .pool_windows()
                .iter()
                .map(|w| v[argmax(&acts[k], w)])
                .collect(),
        };
    }
    v
}

/// ‖A‖₂ of a map on `n`-vectors by `iters` power iterations on AᵀA from a fixed start (an
/// estimate from below); `a` applies A, `at` applies Aᵀ.
fn power_norm(
    n: usize,
    iters: usize,
    a: impl Fn(Vec<f64>) -> Vec<f64>,
    at: impl Fn(Vec<f64>) -> Vec<f64>,
) -> f64 {
    let mut u: Vec<f64> = (0..n)
        .map(|q| ((q * 7919 % 97) as f64 + 1.0) / 97.0)
        .collect();
    let mut s = 0.0;
    for _ in 0..iters {
        let nu = norm(&u);
        u.iter_mut().for_each(|x| *x /= nu);
        let f = a(u);
        s = norm(&f);
        u = at(f);
    }
    s
}

/// ‖J_t‖₂ at the centre's pattern by 100 power iterations (an estimate from below).
fn prefix_norm(nodes: &[Node], acts: &[Vec<f64>], t: usize) -> f64 {
    power_norm(
        acts[0].len(),
        100,
        |u| jvp(nodes, acts, t, u),
        |f| backprop(nodes, acts, t, f),
    )
}

/// A variable θ of the expansion: its box and the seed of its column at the gate's input (unit
/// vectors with coefficients).
type Var = (f64, f64, Vec<(usize, f64)>);

/// One gate's variables and its flips' costs (squared margins).
struct Gate {
    node: usize,
    vars: Vec<Var>,
    costs: Vec<f64>,
    /// ‖Δ v⁰‖² over the box-uncertain gates (reverse telescoping).
    dev2: f64,
}

fn gates(
    nodes: &[Node],
    traces: &[Trace],
    acts: &[Vec<f64>],
    negp: &Interval,
    negp0: &[f64],
) -> Result<Vec<Gate>> {
    let ln = nodes.len();
    let mut out = Vec::new();
    for i in 0..ln {
        let relu = matches!(nodes[i], Node::Relu);
        let Trace::Leaf(b) = &traces[i] else { continue };
        if !relu && !nodes[i].is_max_pool() {
            continue;
        }
        let s = grad_backward(&nodes[i + 1..], &traces[i + 1..], negp.clone())?;
        let v0 = backprop(&nodes[i + 1..], &acts[i + 1..], ln - i - 1, negp0.to_vec());
        let z = &acts[i];
        let mut g = Gate {
            node: i,
            vars: Vec::new(),
            costs: Vec::new(),
            dev2: 0.0,
        };
        if relu {
            for j in (0..b.len()).filter(|&j| b.lo[j] < 0.0 && b.hi[j] > 0.0) {
                // θ = (d − d⁰)·s_j: the hull of 0 and −s (active at the centre) or of 0 and s.
                let (tl, th) = if z[j] > 0.0 {
                    ((-s.hi[j]).min(0.0), (-s.lo[j]).max(0.0))
                } else {
                    (s.lo[j].min(0.0), s.hi[j].max(0.0))
                };
                g.vars.push((tl, th, vec![(j, 1.0)]));
                g.costs.push(z[j] * z[j]);
                g.dev2 += v0[j] * v0[j];
            }
        } else {
            for (o, w) in nodes[i].pool_windows().iter().enumerate() {
                let r = argmax(z, w);
                let mut cheapest = f64::INFINITY;
                for &c in w.iter().filter(|&&c| c != r && b.hi[c] >= b.lo[r]) {
                    g.vars.push((
                        s.lo[o].min(0.0),
                        s.hi[o].max(0.0),
                        vec![(c, 1.0), (r, -1.0)],
                    ));
                    cheapest = cheapest.min((z[r] - z[c]).powi(2) / 2.0);
                }
                if cheapest.is_finite() {
                    g.costs.push(cheapest);
                    g.dev2 += 2.0 * v0[o] * v0[o];
                }
            }
        }
        out.push(g);
    }
    Ok(out)
}

/// Power-iteration operator norm of an affine node's linear part (1 for other nodes).
fn op_norm(node: &Node) -> f64 {
    let Node::Affine(a) = node else { return 1.0 };
    let map = a.op.map();
    power_norm(
        map.in_dim(),
        200,
        |v| map.apply(&v, false),
        |u| map.apply_t(&u, false),
    )
}

/// The diagonal dual of max over the θ box of ‖g⁰ + Σ θ_a e_a‖² in the input space (an estimate:
/// power iterations for λ_max), square-rooted.
fn diagonal_dual(g0: &[f64], vars: &[(f64, f64, Vec<f64>)], rounds: usize) -> f64 {
    let n = g0.len();
    let w = vars.len() + 1;
    // Rows of B: a = g⁰ + Σ c_a e_a, then r_a e_a (θ_a = c_a + r_a u_a, |u_a| ≤ 1).
    let mut b = vec![0.0; w * n];
    b[..n].copy_from_slice(g0);
    for (a, (tl, th, col)) in vars.iter().enumerate() {
        let (c, r) = (0.5 * (tl + th), 0.5 * (th - tl));
        for q in 0..n {
            b[q] += c * col[q];
            b[(a + 1) * n + q] = r * col[q];
        }
    }
    let norms: Vec<f64> = b.chunks_exact(n).map(norm).collect();
    let total: f64 = norms.iter().sum();
    let mut d: Vec<f64> = norms.iter().map(|v| v * total).collect();
    let floor = 1e-12 * d.iter().sum::<f64>() / w as f64;
    d.iter_mut().for_each(|v| *v = v.max(floor));
    let mut u = g0.to_vec();
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let (mut lam, mut bu) = (0.0, Vec::new());
        for _ in 0..30 {
            let nu = norm(&u);
            u.iter_mut().for_each(|a| *a /= nu);
            bu = b
                .par_chunks_exact(n)
                .map(|row| row.iter().zip(&u).map(|(x, y)| x * y).sum::<f64>())
                .collect();
            let mut next = vec![0.0; n];
            for (row, (x, dd)) in b.chunks_exact(n).zip(bu.iter().zip(&d)) {
                let c = x / dd;
                next.iter_mut().zip(row).for_each(|(o, r)| *o += c * r);
            }
            lam = next.iter().zip(&u).map(|(a, b)| a * b).sum();
            u = next;
        }
        let sd: f64 = d.iter().sum();
        best = best.min(lam * sd);
        // Towards v_a² = d_a/Σd for the top eigenvector v_a ∝ (Bᵀu)_a/√d_a.
        let vn: f64 = bu.iter().zip(&d).map(|(x, dd)| x * x / dd).sum();
        for (dd, x) in d.iter_mut().zip(&bu) {
            let ratio = (sd * x * x / *dd / vn / *dd).clamp(0.25, 4.0);
            *dd = (*dd * ratio.powf(0.25)).max(floor);
        }
    }
    best.sqrt()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (model, data): (String, String) =
        (arg(&args, 1, None, USAGE)?, arg(&args, 2, None, USAGE)?);
    let eps: f64 = arg(&args, 3, None, USAGE)?;
    let (images, rounds): (usize, usize) = (
        arg(&args, 4, Some(5), USAGE)?,
        arg(&args, 5, Some(40), USAGE)?,
    );
    let (net, xs) = point_eval::load(&model, &data)?;
    let nodes = &net.nodes;
    let ln = nodes.len();
    let sig: Vec<f64> = nodes.iter().map(op_norm).collect();
    println!(
        "image,node,kind,box_uncertain,zero_cost,budget_radius,max_flips,theta_half_width,v0_dev,prefix_norm_centre,term"
    );
    for (img, x) in xs.into_iter().take(images).enumerate() {
        let ball = Ball::new(x.clone(), eps, Norm::L2, false)?;
        let (traces, logits) = pre_bounds(&net, &ball, PreBounds::Crown { max_dim: 4096 })?;
        let acts = forward_trace(nodes, &x)?;
        let z = &acts[ln];
        let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        let negp0: Vec<f64> = e.iter().map(|v| -v / s).collect();
        let negp = neg_softmax_box(&logits, 1.0);
        let g0 = backprop(nodes, &acts, ln, negp0.clone());
        let gates = gates(nodes, &traces, &acts, &negp, &negp0)?;
        let mut telescoped = norm(&g0);
        let mut all_vars: Vec<(f64, f64, Vec<f64>)> = Vec::new();
        for g in &gates {
            let lip: f64 = sig[..g.node].iter().product();
            let budget = (lip * eps).powi(2);
            let mut costs = g.costs.clone();
            costs.sort_by(|a, b| a.total_cmp(b));
            let (mut used, mut flips) = (0.0, 0);
            for c in &costs {
                if used + c > budget {
                    break;
                }
                used += c;
                flips += 1;
            }
            let zero = costs.iter().filter(|&&c| c == 0.0).count();
            let half =
                g.vars.iter().map(|v| 0.5 * (v.1 - v.0)).sum::<f64>() / g.vars.len().max(1) as f64;
            let pn = prefix_norm(nodes, &acts, g.node);
            let term = pn * g.dev2.sqrt();
            telescoped += term;
            let kind = if matches!(nodes[g.node], Node::Relu) {
                "relu"
            } else {
                "pool"
            };
            println!(
                "{img},{},{kind},{},{zero},{:.3},{flips},{half:.4},{:.4},{pn:.2},{term:.2}",
                g.node,
                costs.len(),
                lip * eps,
                g.dev2.sqrt()
            );
            let cols: Vec<Vec<f64>> = g
                .vars
                .par_iter()
                .map(|(_, _, seed)| {
                    let mut v = vec![0.0; acts[g.node].len()];
                    seed.iter().for_each(|&(j, c)| v[j] += c);
                    backprop(nodes, &acts, g.node, v)
                })
                .collect();
            all_vars.extend(g.vars.iter().zip(cols).map(|(v, c)| (v.0, v.1, c)));
        }
        // The head: θ_c = p_c − p⁰_c (c ≠ y), columns −Jᵀ(e_c − e_y).
        let k = negp0.len();
        let y = (0..k)
            .max_by(|&a, &b| (negp.hi[a] - negp.lo[a]).total_cmp(&(negp.hi[b] - negp.lo[b])))
            .unwrap_or(0);
        for c in (0..k).filter(|&c| c != y) {
            let mut v = vec![0.0; k];
            (v[c], v[y]) = (-1.0, 1.0);
            all_vars.push((
                -negp.hi[c] + negp0[c],
                -negp.lo[c] + negp0[c],
                backprop(nodes, &acts, ln, v),
            ));
        }
        println!(
            "# image {img}: |grad S(x0)| {:.3}, pattern-Gram diagonal dual {:.1} ({} variables), reverse telescoping (optimistic) {telescoped:.1}",
            norm(&g0),
            diagonal_dual(&g0, &all_vars, rounds),
            all_vars.len()
        );
    }
    Ok(())
}
