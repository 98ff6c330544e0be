//! A stronger empirical lower bound of the local Lipschitz constant of S on a ball: gradient
//! ascent on ‖∇S̃‖_q of a smoothed surrogate network (every ReLU a softplus_τ, whose derivative
//! is sigmoid(z/τ); every max-pool τ·logsumexp(·/τ), whose derivative is softmax(·/τ)) with τ
//! annealed towards 0 (a continuation method, as in graduated optimisation), so the ascent sees
//! the activation patterns and pool selections next to the current point that PGD on the true,
//! piecewise constant gradient does not. The value reported is always the true ‖∇S(x)‖_q of the
//! gradient oracle at an iterate x that lies in the ball: never above the true local constant.

use super::empirical::{GradOracle, ascent_step, norm_direction, restart_points, sample_ball};
use crate::bounds::net::{Net, Node};
use crate::bounds::round::{next_down, next_up};
use crate::bounds::{Ball, Norm};
use crate::error::{Error, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

/// Settings of the surrogate ascent.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct PatternConfig {
    /// Ascent steps per restart (the true gradient is read after each).
    pub steps: usize,
    /// Restarts: the centre, then uniform points of the ball.
    pub restarts: usize,
    /// τ of the first step, as a fraction of each gate's spread of pre-activations over the ball.
    pub tau_start: f64,
    /// τ of the last step (same unit); the schedule is geometric.
    pub tau_end: f64,
    /// Step length of the first step as a fraction of ε (decays linearly to a tenth of it).
    pub step_frac: f64,
}

impl Default for PatternConfig {
    fn default() -> Self {
        Self {
            steps: 40,
            restarts: 4,
            tau_start: 5.0,
            tau_end: 1e-2,
            step_frac: 0.3,
        }
    }
}

/// The best point found: the oracle's ‖∇S‖_q there, the point (in the ball), and how many
/// points the oracle read.
#[derive(Debug, Clone)]
pub struct PatternLower {
    pub value: f64,
    pub point: Vec<f64>,
    pub points: usize,
    /// Points read that were not in the ball (so not counted); 0 unless rounding misbehaves.
    pub rejected: usize,
}

/// After [`Ball::project`]: an ℓ∞ coordinate clamped to the rounded c ± ε can lie an ulp outside
/// (|x − c| > ε in f64, which `Ball::contains` rejects); each such coordinate moves one ulp at a
/// time towards c until it is inside. ℓ2 projections already shrink with a margin.
fn pull_inside(ball: &Ball, x: &mut [f64]) {
    if ball.norm != Norm::Linf {
        return;
    }
    for (v, &c) in x.iter_mut().zip(&ball.center) {
        while (*v - c).abs() > ball.eps {
            *v = if *v > c { next_down(*v) } else { next_up(*v) };
        }
    }
}

/// softplus_τ(z) = τ·ln(1 + e^{z/τ}) (τ = 0: ReLU).
fn softplus(z: f64, tau: f64) -> f64 {
    if tau <= 0.0 {
        return z.max(0.0);
    }
    z.max(0.0) + tau * (-(z.abs()) / tau).exp().ln_1p()
}

/// sigmoid(z/τ), the derivative of softplus_τ (τ = 0: the ReLU's derivative, 0 at 0).
fn sigmoid(z: f64, tau: f64) -> f64 {
    if tau <= 0.0 {
        return if z > 0.0 { 1.0 } else { 0.0 };
    }
    let e = (-(z.abs()) / tau).exp();
    if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// softmax(v/τ) weights of a window and τ·logsumexp(v/τ) (τ = 0: the max, weight 1 on the first
/// largest entry).
fn smooth_max(v: &[f64], tau: f64) -> (f64, Vec<f64>) {
    let (mut arg, mut m) = (0, f64::NEG_INFINITY);
    for (i, x) in v.iter().enumerate() {
        if *x > m {
            (arg, m) = (i, *x);
        }
    }
    if tau <= 0.0 {
        let mut w = vec![0.0; v.len()];
        if !w.is_empty() {
            w[arg] = 1.0;
        }
        return (m, w);
    }
    let e: Vec<f64> = v.iter().map(|x| ((x - m) / tau).exp()).collect();
    let s: f64 = e.iter().sum();
    (m + tau * s.ln(), e.iter().map(|x| x / s).collect())
}

/// What the forward pass keeps for the backward one.
enum Tape {
    Affine,
    /// The ReLU's input and its τ.
    Relu(Vec<f64>, f64),
    /// Per window: its input indices and softmax weights; the input length.
    Pool(Vec<(Vec<usize>, Vec<f64>)>, usize),
    Residual(Vec<Tape>, Vec<Tape>),
    Concat(Vec<(Vec<Tape>, usize)>),
}

/// The surrogate's forward pass; gates take their τ from `taus` in visiting order (`next`
/// counts them). With `spread` given, every gate's input is appended to it instead (τ unused).
fn forward(
    nodes: &[Node],
    mut x: Vec<f64>,
    taus: &[f64],
    next: &mut usize,
    tape: &mut Vec<Tape>,
    mut spread: Option<&mut Vec<Vec<f64>>>,
) -> Result<Vec<f64>> {
    for node in nodes {
        let gate_tau = |next: &mut usize| -> f64 {
            let t = taus.get(*next).copied().unwrap_or(0.0);
            *next += 1;
            t
        };
        x = match node {
            Node::Affine(a) => {
                if a.op.map().in_dim() != x.len() {
                    return Err(Error::Internal(format!(
                        "{}: input length {}",
                        a.name,
                        x.len()
                    )));
                }
                tape.push(Tape::Affine);
                a.forward(&x)
            }
            Node::Relu => {
                let tau = gate_tau(next);
                if let Some(s) = spread.as_deref_mut() {
                    s.push(x.clone());
                }
                let y = x.iter().map(|z| softplus(*z, tau)).collect();
                tape.push(Tape::Relu(x, tau));
                y
            }
            Node::MaxPool2 { .. } | Node::MaxPool { .. } => {
                crate::bounds::net::out_dim(std::slice::from_ref(node), x.len())?;
                let tau = gate_tau(next);
                if let Some(s) = spread.as_deref_mut() {
                    s.push(x.clone());
                }
                let mut out = Vec::new();
                let mut rec = Vec::new();
                for win in node.pool_windows() {
                    let v: Vec<f64> = win.iter().map(|&i| x[i]).collect();
                    let (y, w) = smooth_max(&v, tau);
                    out.push(y);
                    rec.push((win, w));
                }
                tape.push(Tape::Pool(rec, x.len()));
                out
            }
            Node::Residual { main, shortcut } => {
                let (mut tm, mut ts) = (Vec::new(), Vec::new());
                let a = forward(main, x.clone(), taus, next, &mut tm, spread.as_deref_mut())?;
                let b = forward(shortcut, x, taus, next, &mut ts, spread.as_deref_mut())?;
                if a.len() != b.len() {
                    return Err(Error::Internal("residual branches differ in length".into()));
                }
                tape.push(Tape::Residual(tm, ts));
                a.iter().zip(&b).map(|(a, b)| a + b).collect()
            }
            Node::Concat { branches } => {
                let mut rec = Vec::new();
                let mut out = Vec::new();
                for b in branches {
                    let mut tb = Vec::new();
                    let y = forward(b, x.clone(), taus, next, &mut tb, spread.as_deref_mut())?;
                    rec.push((tb, y.len()));
                    out.extend(y);
                }
                tape.push(Tape::Concat(rec));
                out
            }
        };
    }
    Ok(x)
}

fn backward(nodes: &[Node], tape: &[Tape], mut g: Vec<f64>) -> Vec<f64> {
    for (node, t) in nodes.iter().zip(tape).rev() {
        g = match (node, t) {
            (Node::Affine(a), _) => a.op.map().apply_t(&g, false),
            (_, Tape::Relu(z, tau)) => g
                .iter()
                .zip(z)
                .map(|(g, z)| g * sigmoid(*z, *tau))
                .collect(),
            (_, Tape::Pool(rec, n)) => {
                let mut out = vec![0.0; *n];
                for (k, (win, w)) in rec.iter().enumerate() {
                    for (i, wi) in win.iter().zip(w) {
                        out[*i] += g[k] * wi;
                    }
                }
                out
            }
            (Node::Residual { main, shortcut }, Tape::Residual(tm, ts)) => {
                let a = backward(main, tm, g.clone());
                let b = backward(shortcut, ts, g);
                a.iter().zip(&b).map(|(a, b)| a + b).collect()
            }
            (Node::Concat { branches }, Tape::Concat(rec)) => {
                let mut sum: Option<Vec<f64>> = None;
                let mut off = 0;
                for (b, (tb, d)) in branches.iter().zip(rec) {
                    let part = g.get(off..off + d).map_or_else(Vec::new, |p| p.to_vec());
                    off += d;
                    let gb = backward(b, tb, part);
                    sum = Some(match sum {
                        Some(s) => s.iter().zip(&gb).map(|(a, b)| a + b).collect(),
                        None => gb,
                    });
                }
                sum.unwrap_or_default()
            }
            // Tapes are built node by node above, so the pairs always match.
            _ => g,
        };
    }
    g
}

/// ∇ₓS̃(x) of the surrogate S̃ = −T·logsumexp(f̃(x)/T), f̃ the network with every gate smoothed
/// by its τ (τ = 0 everywhere: the true ∇S, a ReLU at 0 taking derivative 0).
pub fn surrogate_grad(net: &Net, x: &[f64], taus: &[f64], temperature: f64) -> Result<Vec<f64>> {
    if x.len() != net.input_dim() {
        return Err(Error::BadInput(format!(
            "input has {} values, the network expects {}",
            x.len(),
            net.input_dim()
        )));
    }
    let mut tape = Vec::with_capacity(net.nodes.len());
    let f = forward(&net.nodes, x.to_vec(), taus, &mut 0, &mut tape, None)?;
    let neg_p: Vec<f64> = crate::score::softmax_f64(&f, temperature)
        .into_iter()
        .map(|p| -p)
        .collect();
    Ok(backward(&net.nodes, &tape, neg_p))
}

/// Per gate (visiting order), the root mean square of its input's change between the centre and
/// `probes` random points of the ball: the unit τ is measured in (f64::MIN_POSITIVE when the
/// gate's input does not move).
fn gate_spreads(net: &Net, ball: &Ball, probes: usize, rng: &mut ChaCha8Rng) -> Result<Vec<f64>> {
    let inputs = |x: Vec<f64>| -> Result<Vec<Vec<f64>>> {
        let mut s = Vec::new();
        forward(&net.nodes, x, &[], &mut 0, &mut Vec::new(), Some(&mut s))?;
        Ok(s)
    };
    let c = inputs(ball.center.clone())?;
    let mut sq = vec![0.0; c.len()];
    for _ in 0..probes {
        let y = inputs(sample_ball(ball, rng))?;
        for ((s, a), b) in sq.iter_mut().zip(&c).zip(&y) {
            *s += a.iter().zip(b).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()
                / a.len().max(1) as f64;
        }
    }
    Ok(sq
        .iter()
        .map(|s| (s / probes.max(1) as f64).sqrt().max(f64::MIN_POSITIVE))
        .collect())
}

/// [`pattern_ascent`] with the true gradient norms read by the run's gradient oracle (the
/// candle model, as PGD reads them).
pub fn lower_by_pattern(
    oracle: &GradOracle,
    net: &Net,
    ball: &Ball,
    temperature: f64,
    cfg: &PatternConfig,
    rng: &mut ChaCha8Rng,
) -> Result<PatternLower> {
    pattern_ascent(
        |xs| oracle.grad_norms(xs, ball.norm),
        net,
        ball,
        temperature,
        cfg,
        rng,
    )
}

/// The ascent: `restarts` starting points (the centre, then uniform points of the ball) move
/// together for `steps` steps; at step t every gate's τ is its spread × τ_t (geometric from
/// `tau_start` to `tau_end`), the direction is ∇ₓ‖∇S̃‖_q = H̃·∂‖g̃‖/∂g̃ by a central difference
/// of surrogate gradients (the surrogate is smooth, H̃ symmetric), the step is the ball norm's
/// steepest ascent of length α_t, then the projection on the ball (and the pixel box). The true
/// ‖∇S‖_q is read by `true_norms` (a batch of points → their ‖∇S‖_q) at the starts and after
/// every step; the largest at a point of the ball is returned with the point. Deterministic
/// given `rng`.
pub fn pattern_ascent(
    mut true_norms: impl FnMut(&[Vec<f64>]) -> Result<Vec<f64>>,
    net: &Net,
    ball: &Ball,
    temperature: f64,
    cfg: &PatternConfig,
    rng: &mut ChaCha8Rng,
) -> Result<PatternLower> {
    let mut best = PatternLower {
        value: f64::NEG_INFINITY,
        point: ball.center.clone(),
        points: 0,
        rejected: 0,
    };
    let mut read = |xs: &[Vec<f64>], best: &mut PatternLower| -> Result<()> {
        for (x, n) in xs.iter().zip(true_norms(xs)?) {
            best.points += 1;
            // Only points of the ball count (the projection keeps them there; checked anyway).
            if !ball.contains(x) {
                best.rejected += 1;
            } else if n > best.value {
                best.value = n;
                best.point = x.clone();
            }
        }
        Ok(())
    };
    let mut xs = restart_points(ball, cfg.restarts.max(1), rng);
    xs.iter_mut().for_each(|x| pull_inside(ball, x));
    read(&xs, &mut best)?;
    if ball.eps == 0.0 || cfg.steps == 0 {
        return Ok(best);
    }
    let spreads = gate_spreads(net, ball, 2, rng)?;
    let steps = cfg.steps;
    for t in 0..steps {
        let frac = if steps == 1 {
            0.0
        } else {
            t as f64 / (steps - 1) as f64
        };
        let tau = cfg.tau_start * (cfg.tau_end / cfg.tau_start).powf(frac);
        let taus: Vec<f64> = spreads.iter().map(|s| s * tau).collect();
        let alpha = ball.eps * cfg.step_frac * (1.0 - 0.9 * frac);
        // The central difference's half-width, well inside the surrogate's smoothness scale.
        let h = ball.eps * (0.05 * tau).max(1e-4);
        for x in xs.iter_mut() {
            let g = surrogate_grad(net, x, &taus, temperature)?;
            let v = norm_direction(&g, ball.norm);
            let vn = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            let mut hv = if vn > 0.0 {
                let at = |s: f64| -> Vec<f64> {
                    x.iter().zip(&v).map(|(x, v)| x + s * h * v / vn).collect()
                };
                let gp = surrogate_grad(net, &at(1.0), &taus, temperature)?;
                let gm = surrogate_grad(net, &at(-1.0), &taus, temperature)?;
                gp.iter()
                    .zip(&gm)
                    .map(|(a, b)| (a - b) / (2.0 * h) * vn)
                    .collect()
            } else {
                vec![0.0; x.len()]
            };
            if hv.iter().all(|v| *v == 0.0) {
                hv = (0..x.len())
                    .map(|_| rng.sample::<f64, _>(StandardNormal))
                    .collect();
            }
            let step = ascent_step(&hv, ball.norm, alpha);
            x.iter_mut().zip(&step).for_each(|(x, s)| *x += s);
            ball.project(x);
            pull_inside(ball, x);
        }
        read(&xs, &mut best)?;
    }
    Ok(best)
}
