//! α-CROWN (Xu et al., "Fast and Complete", ICLR 2021, §3.1): CROWN with the lower slope of every
//! unstable ReLU and the upper-plane mix θ of every max-pool window (chord vs facet,
//! [`max_pool::upper_line`], [`max_pool::upper_facet`]) chosen per query row, by projected
//! gradient ascent (Adam) on that row's bound.
//!
//! The CROWN bound of a row q is min_{x∈B} qᵀĝ(x), where ĝ is the network with every ReLU and
//! max-pool replaced by the linear function the backward walk picked for it (the lower line
//! where the row's coefficient at that output is ≥ 0, the upper one elsewhere). With x* the
//! minimiser, the derivative of the bound in the lower slope α_j of an unstable ReLU is
//! λ_j·ẑ_j: the walk's coefficient at that ReLU's output times the value of its input under ĝ at
//! x* (envelope theorem; ĝ is piecewise constant in α); in a window's θ it is
//! λ_k·(chord(x̂) − facet(x̂)). One forward pass of ĝ per row gives them all.
//!
//! Soundness does not depend on the optimiser: every slope in [0, 1] is a valid lower line of
//! relu on [l, u] with l < 0 < u, every θ in [0, 1] mixes two upper planes of the window's max,
//! the walk ignores anything outside [0, 1], and every iterate's bound is
//! [`super::crown::backward`]'s walk with its rounding slack, concretised by
//! [`Ball::min_linear_in`] (outward-rounded). The result is the best iterate per row, so never
//! below CROWN's (iterate 0 uses CROWN's choices). Only flat paths (no residual block or
//! concatenation) are optimised. Proof: proofs/lipschitz_crown.md, "α-CROWN".
//!
//! Cost (LeNet 28×28, ℓ∞ ε = 0.005 ∩ [0, 1], 10 steps): about 0.2 s per ball on 2 cores, most
//! of it the 118 rows of the conv2 box; at ℓ2 ε = 0.1 (300–900 sign-uncertain conv2 entries)
//! about 3 s per ball.

use super::crown::{Rows, backward};
use super::ibp::Trace;
use super::net::Node;
use super::{Ball, Interval, Norm, max_pool, relu};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Adam's step size on the slopes (α-CROWN's default learning rate for α).
const STEP: f64 = 0.1;

/// Whether α-CROWN can optimise slopes on `nodes`: a flat path with at least one ReLU.
pub fn applies(nodes: &[Node]) -> bool {
    nodes
        .iter()
        .all(|n| !matches!(n, Node::Residual { .. } | Node::Concat { .. }))
        && nodes.iter().any(|n| matches!(n, Node::Relu))
}

/// Certified lower bounds of qᵀy, y the output of the flat path `nodes` over `ball`, for `n`
/// query rows `q` (row-major, each of y's length), after `iters` Adam steps on the lower slopes
/// of the unstable ReLUs (0: CROWN).
pub fn alpha_lower(
    nodes: &[Node],
    traces: &[Trace],
    ball: &Ball,
    q: &[f64],
    n: usize,
    iters: usize,
) -> Result<Vec<f64>> {
    if !applies(nodes) {
        return Err(Error::Internal(
            "α-CROWN: the path has a residual block, a concatenation or no ReLU".into(),
        ));
    }
    if nodes.len() != traces.len() || n == 0 || !q.len().is_multiple_of(n) {
        return Err(Error::Internal(format!(
            "α-CROWN: {} nodes, {} traces, {} query values for {n} rows",
            nodes.len(),
            traces.len(),
            q.len()
        )));
    }
    let bx = ball.to_box();
    let relax = relaxations(nodes, traces);
    let mut alpha = initial_params(&relax, n);
    let mut m1: Vec<Option<Vec<f64>>> = alpha
        .iter()
        .map(|a| a.as_ref().map(|a| vec![0.0; a.len()]))
        .collect();
    let mut m2 = m1.clone();
    let mut best = vec![f64::NEG_INFINITY; n];
    for it in 0..=iters {
        let last = it == iters;
        let (bounds, rows) = bounds_with(nodes, traces, ball, &bx, q, n, &mut alpha, !last)?;
        for (b, v) in best.iter_mut().zip(&bounds) {
            if *v > *b {
                *b = *v;
            }
        }
        if last {
            break;
        }
        let grads = gradients(nodes, &relax, ball, &bx, &rows, &alpha)?;
        let t = (it + 1) as i32;
        let (c1, c2) = (1.0 - 0.9f64.powi(t), 1.0 - 0.999f64.powi(t));
        for (k, a) in alpha.iter_mut().enumerate() {
            let (Some(a), Some(v1), Some(v2)) = (a.as_mut(), m1[k].as_mut(), m2[k].as_mut()) else {
                continue;
            };
            let d = a.len() / n;
            for (r, g) in grads.iter().enumerate() {
                let Some(g) = g.get(k).and_then(|g| g.as_deref()) else {
                    continue;
                };
                for (j, &gj) in g.iter().enumerate().take(d) {
                    let i = r * d + j;
                    if !gj.is_finite() {
                        continue;
                    }
                    v1[i] = 0.9 * v1[i] + 0.1 * gj;
                    v2[i] = 0.999 * v2[i] + 0.001 * gj * gj;
                    let step = STEP * (v1[i] / c1) / ((v2[i] / c2).sqrt() + 1e-12);
                    if step.is_finite() {
                        a[i] = (a[i] + step).clamp(0.0, 1.0);
                    }
                }
            }
        }
    }
    Ok(best)
}

/// The relaxations ĝ is built from, per node (fixed by the node input boxes).
enum Relax {
    /// A node without one (affine).
    None,
    /// CROWN's `(lower slope, upper slope, upper intercept)` per entry ([`relu::relaxation`]).
    Relu(Vec<(f64, f64, f64)>),
    /// Per window ([`max_pool::window_relaxations`]).
    Pool(Vec<max_pool::WindowRelax>),
}

fn relaxations(nodes: &[Node], traces: &[Trace]) -> Vec<Relax> {
    nodes
        .iter()
        .zip(traces)
        .map(|(node, t)| {
            let inp = t.input();
            match node {
                Node::Relu => Relax::Relu(
                    (0..inp.len())
                        .map(|j| relu::relaxation(inp.lo[j], inp.hi[j]))
                        .collect(),
                ),
                n if n.is_max_pool() => {
                    Relax::Pool(max_pool::window_relaxations(inp, &n.pool_windows()))
                }
                _ => Relax::None,
            }
        })
        .collect()
}

/// CROWN's own choices as α-CROWN parameters, per node (n rows each): the adaptive lower slope
/// of every ReLU entry, and θ = 1 (the chord) per max-pool window.
fn initial_params(relax: &[Relax], n: usize) -> Vec<Option<Vec<f64>>> {
    relax
        .iter()
        .map(|r| match r {
            Relax::Relu(lines) => Some(lines.iter().map(|l| l.0).collect::<Vec<_>>().repeat(n)),
            Relax::Pool(wins) => Some(vec![1.0; n * wins.len()]),
            Relax::None => None,
        })
        .collect()
}

/// The certified lower bounds of the `n` rows `q` with the parameters `alpha`, and the walked
/// rows (with the coefficients at every ReLU / max-pool output when `record`).
#[allow(clippy::too_many_arguments)]
fn bounds_with(
    nodes: &[Node],
    traces: &[Trace],
    ball: &Ball,
    bx: &Interval,
    q: &[f64],
    n: usize,
    alpha: &mut Vec<Option<Vec<f64>>>,
    record: bool,
) -> Result<(Vec<f64>, Rows)> {
    let mut rows = Rows::new(n, q.len() / n, q.to_vec());
    rows.slopes = std::mem::take(alpha);
    rows.record = record.then(Vec::new);
    let walked = backward(nodes, traces, &mut rows);
    *alpha = std::mem::take(&mut rows.slopes);
    walked?;
    if rows.dim != ball.center.len() {
        return Err(Error::Internal(format!(
            "α-CROWN: rows of length {} at the input, ball of dimension {}",
            rows.dim,
            ball.center.len()
        )));
    }
    let bounds = (0..n)
        .map(|r| {
            let lam = &rows.lam[r * rows.dim..(r + 1) * rows.dim];
            rows.bound(r, ball.min_linear_in(lam, Some(bx)))
        })
        .collect();
    Ok((bounds, rows))
}

/// Per row, the gradient of its bound in its own parameters (ĝ's forward pass at the row's
/// minimiser), from rows walked with `record`.
fn gradients(
    nodes: &[Node],
    relax: &[Relax],
    ball: &Ball,
    bx: &Interval,
    rows: &Rows,
    alpha: &[Option<Vec<f64>>],
) -> Result<Vec<Vec<Option<Vec<f64>>>>> {
    let rec = rows.record.as_deref().unwrap_or_default();
    (0..rows.n)
        .into_par_iter()
        .map(|r| {
            let lam = &rows.lam[r * rows.dim..(r + 1) * rows.dim];
            let x = minimiser(ball, bx, lam);
            slope_gradient(nodes, relax, rec, alpha, r, rows.n, x)
        })
        .collect()
}

/// A point of the set where λᵀx attains (about) the minimum that [`Ball::min_linear_in`]
/// certifies: a box vertex for ℓ∞ (and for the [0,1]-box side when it wins), x₀ − ε λ/‖λ‖₂ for
/// ℓ2. Only steers the optimiser; the bound never uses it.
fn minimiser(ball: &Ball, bx: &Interval, lam: &[f64]) -> Vec<f64> {
    let vertex = || -> Vec<f64> {
        lam.iter()
            .enumerate()
            .map(|(i, &l)| {
                if l > 0.0 {
                    bx.lo[i]
                } else if l < 0.0 {
                    bx.hi[i]
                } else {
                    ball.center[i]
                }
            })
            .collect()
    };
    match ball.norm {
        Norm::Linf => vertex(),
        Norm::L2 => {
            let nrm = lam.iter().map(|l| l * l).sum::<f64>().sqrt();
            let x: Vec<f64> = if nrm > 0.0 {
                lam.iter()
                    .zip(&ball.center)
                    .map(|(l, c)| c - ball.eps * l / nrm)
                    .collect()
            } else {
                ball.center.clone()
            };
            if !ball.unit_box {
                return x;
            }
            let v = vertex();
            let dot = |p: &[f64]| p.iter().zip(lam).map(|(p, l)| p * l).sum::<f64>();
            if dot(&v) > dot(&x) { v } else { x }
        }
    }
}

/// ∂(row r's bound)/∂α at every ReLU node: λ_j·ẑ_j for the unstable entries whose coefficient
/// λ_j ≥ 0 (the lower line is in use), 0 elsewhere; ẑ is ĝ's forward pass at `x`.
fn slope_gradient(
    nodes: &[Node],
    relax: &[Relax],
    rec: &[Option<Vec<f64>>],
    alpha: &[Option<Vec<f64>>],
    r: usize,
    n: usize,
    mut x: Vec<f64>,
) -> Result<Vec<Option<Vec<f64>>>> {
    let mut grads: Vec<Option<Vec<f64>>> = vec![None; nodes.len()];
    for (k, (node, rel)) in nodes.iter().zip(relax).enumerate() {
        let d = x.len();
        let lam = rec
            .get(k)
            .and_then(|v| v.as_deref())
            .map(|v| &v[r * v.len() / n..(r + 1) * v.len() / n]);
        x = match (node, rel) {
            (Node::Affine(a), _) if a.op.map().in_dim() == d => a.forward(&x),
            (Node::Relu, Relax::Relu(lines)) if lines.len() == d => {
                let (Some(lam), Some(a)) = (lam, alpha[k].as_deref()) else {
                    return Err(Error::Internal(format!(
                        "α-CROWN: ReLU node {k} has no recorded coefficients or slopes"
                    )));
                };
                let a = &a[r * d..(r + 1) * d];
                let mut g = vec![0.0; d];
                let y = lines
                    .iter()
                    .enumerate()
                    .map(|(j, &(al, au, bu))| {
                        if !relu::lower_slope_is_free(au) {
                            al * x[j]
                        } else if lam[j] >= 0.0 {
                            g[j] = lam[j] * x[j];
                            a[j] * x[j]
                        } else {
                            au * x[j] + bu
                        }
                    })
                    .collect();
                grads[k] = Some(g);
                y
            }
            (Node::MaxPool2 { .. } | Node::MaxPool { .. }, Relax::Pool(wins)) => {
                let (Some(lam), Some(p)) = (lam, alpha[k].as_deref()) else {
                    return Err(Error::Internal(format!(
                        "α-CROWN: max-pool node {k} has no recorded coefficients or parameters"
                    )));
                };
                let p = &p[r * wins.len()..(r + 1) * wins.len()];
                let mut g = vec![0.0; p.len()];
                let y = wins
                    .iter()
                    .enumerate()
                    .map(|(w, rel)| {
                        if lam[w] >= 0.0 {
                            x[rel.best]
                        } else if rel.cand.len() == 1 {
                            x[rel.cand[0]]
                        } else {
                            let (m, a, b) = rel.chord;
                            let chord = a * x[m] + b;
                            let facet = rel.facet.0.iter().map(|&(i, f)| f * x[i]).sum::<f64>()
                                + rel.facet.1;
                            g[w] = lam[w] * (chord - facet);
                            p[w] * chord + (1.0 - p[w]) * facet
                        }
                    })
                    .collect();
                grads[k] = Some(g);
                y
            }
            _ => {
                return Err(Error::Internal(format!(
                    "α-CROWN: node {k} ({d} inputs) does not match its relaxation"
                )));
            }
        };
    }
    Ok(grads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::crown::crown_trace;
    use crate::bounds::net::Net;
    use crate::model::{Arch, Model, ModelSpec};
    use candle_core::{DType, Device};
    use rand::{Rng, SeedableRng};

    fn lenet(seed: u64) -> Net {
        let spec = ModelSpec {
            arch: Arch::Lenet,
            input_shape: [1, 12, 12],
            num_classes: 4,
            mean: vec![0.4],
            std: vec![0.3],
        };
        let m = Model::init(spec, &Device::Cpu, DType::F64, seed).unwrap();
        Net::from_model(&m).unwrap()
    }

    /// A random ball around a random 12×12 image, its box, the CROWN trace of `net` on it, and
    /// `n` random query rows on the logits.
    fn case(
        net: &Net,
        rng: &mut rand_chacha::ChaCha8Rng,
        norm: Norm,
        eps: f64,
        unit_box: bool,
        n: usize,
    ) -> (Ball, Interval, Vec<Trace>, Vec<f64>) {
        let x: Vec<f64> = (0..144).map(|_| rng.random::<f64>()).collect();
        let ball = Ball::new(x, eps, norm, unit_box).unwrap();
        let (traces, z) = crown_trace(&net.nodes, &ball, usize::MAX).unwrap();
        let q = (0..n * z.len())
            .map(|_| rng.random::<f64>() - 0.5)
            .collect();
        let bx = ball.to_box();
        (ball, bx, traces, q)
    }

    /// The analytic gradient of a row's bound (λ_j·ẑ_j for ReLU slopes, λ_k·(chord − facet) for
    /// a max-pool's θ) equals central finite differences of the certified bound itself, at
    /// random parameters, on ℓ∞ and ℓ2 balls.
    #[test]
    fn slope_gradient_matches_finite_differences() {
        let net = lenet(3);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let (mut checked, mut nonzero) = (0, 0);
        for (norm, eps) in [(Norm::Linf, 0.04), (Norm::L2, 0.6)] {
            let n = 3;
            let (ball, bx, traces, q) = case(&net, &mut rng, norm, eps, true, n);
            let relax = relaxations(&net.nodes, &traces);
            let mut alpha = initial_params(&relax, n);
            // Random interior parameters: ReLU slopes and max-pool θ in (0, 1).
            for a in alpha.iter_mut().flatten() {
                a.iter_mut().for_each(|v| *v = rng.random_range(0.1..0.9));
            }
            let (_, rows) =
                bounds_with(&net.nodes, &traces, &ball, &bx, &q, n, &mut alpha, true).unwrap();
            let grads = gradients(&net.nodes, &relax, &ball, &bx, &rows, &alpha).unwrap();
            let h = 1e-6;
            for (k, a) in alpha.clone().iter().enumerate() {
                let Some(a) = a else { continue };
                let d = a.len() / n;
                for _ in 0..12 {
                    let r = rng.random_range(0..n);
                    let j = rng.random_range(0..d);
                    let g = grads[r][k].as_ref().unwrap()[j];
                    let mut up = alpha.clone();
                    up[k].as_mut().unwrap()[r * d + j] += h;
                    let mut dn = alpha.clone();
                    dn[k].as_mut().unwrap()[r * d + j] -= h;
                    let bu = bounds_with(&net.nodes, &traces, &ball, &bx, &q, n, &mut up, false)
                        .unwrap()
                        .0[r];
                    let bd = bounds_with(&net.nodes, &traces, &ball, &bx, &q, n, &mut dn, false)
                        .unwrap()
                        .0[r];
                    let fd = (bu - bd) / (2.0 * h);
                    assert!(
                        (fd - g).abs() <= 1e-4 * (1.0 + g.abs()),
                        "{norm:?} node {k} row {r} entry {j}: analytic {g}, finite difference {fd}"
                    );
                    checked += 1;
                    nonzero += usize::from(g.abs() > 1e-9);
                }
            }
        }
        assert!(
            checked >= 40 && nonzero >= 10,
            "{checked} checked, {nonzero} non-zero"
        );
    }

    /// Any parameters in range give a lower bound of every sampled value (slopes and θ drawn
    /// at the ends and inside [0, 1]); parameters out of range or NaN are ignored by the walk
    /// (the bound equals CROWN's), so an optimiser bug cannot make a bound unsound.
    #[test]
    fn any_parameters_in_range_bound_samples_and_others_fall_back() {
        let net = lenet(8);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for (norm, eps) in [(Norm::Linf, 0.05), (Norm::L2, 0.8)] {
            let n = 4;
            let (ball, bx, traces, q) = case(&net, &mut rng, norm, eps, false, n);
            let k = q.len() / n;
            let mut crown = initial_params(&relaxations(&net.nodes, &traces), n);
            let base = bounds_with(&net.nodes, &traces, &ball, &bx, &q, n, &mut crown, false)
                .unwrap()
                .0;
            for bad in [3.0, -0.5, f64::NAN] {
                let mut p = crown.clone();
                p.iter_mut()
                    .flatten()
                    .for_each(|a| a.iter_mut().for_each(|v| *v = bad));
                let b = bounds_with(&net.nodes, &traces, &ball, &bx, &q, n, &mut p, false)
                    .unwrap()
                    .0;
                assert_eq!(b, base, "{norm:?}: parameters {bad} were not ignored");
            }
            let pts: Vec<Vec<f64>> = (0..300)
                .map(|_| {
                    let mut p: Vec<f64> = (0..144)
                        .map(|i| ball.center[i] + eps * (2.0 * rng.random::<f64>() - 1.0))
                        .collect();
                    ball.project(&mut p);
                    p
                })
                .collect();
            let vals: Vec<Vec<f64>> = pts.iter().map(|p| net.forward(p).unwrap()).collect();
            for trial in 0..6 {
                let mut p = crown.clone();
                p.iter_mut().flatten().for_each(|a| {
                    a.iter_mut().for_each(|v| {
                        *v = match trial {
                            0 => 0.0,
                            1 => 1.0,
                            _ => rng.random::<f64>(),
                        }
                    })
                });
                let b = bounds_with(&net.nodes, &traces, &ball, &bx, &q, n, &mut p, false)
                    .unwrap()
                    .0;
                for v in &vals {
                    for r in 0..n {
                        let y: f64 = q[r * k..(r + 1) * k]
                            .iter()
                            .zip(v)
                            .map(|(a, b)| a * b)
                            .sum();
                        assert!(b[r] <= y, "{norm:?} trial {trial} row {r}: {} > {y}", b[r]);
                    }
                }
            }
        }
    }
}
