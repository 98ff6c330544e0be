//! Empirical lower bounds of the local Lipschitz constant of S on a ball (estimates, never
//! certificates): ‖∇ₓS(x)‖_q at the centre, the maximum over uniform samples of the ball, and
//! projected gradient ascent on ‖∇ₓS‖_q with restarts. Every value is a gradient norm at a point
//! of the ball, so it can never exceed the true local constant.

use crate::bounds::{Ball, Net, Norm};
use crate::error::{Error, Result};
use crate::model::{Classifier, Model};
use crate::score::{ScoreKind, score_and_input_grad};
use candle_core::Tensor;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Scores and input gradients of S from the candle model (evaluation mode).
pub struct GradOracle<'a> {
    pub model: &'a Model,
    pub temperature: f64,
    /// Largest batch sent to the model at once.
    pub batch: usize,
}

/// Memory one batch of the gradient oracle may take: the points' forward activations, their
/// gradients and the ops' temporaries, estimated as [`BYTES_PER_ACTIVATION`] bytes per value of
/// `bounds::net::activation_len` (f64 autograd). 2 GiB keeps DenseNet-BC and ResNet-18 at 32×32
/// well inside a 24 GiB machine beside the bounds' own memory.
pub const GRAD_MEMORY_BUDGET: usize = 2 << 30;
/// Bytes per forward value in an f64 autograd pass: the value, its gradient, and one temporary.
pub const BYTES_PER_ACTIVATION: usize = 3 * 8;

impl<'a> GradOracle<'a> {
    /// An oracle whose batches hold at most `max_batch` points and fit [`GRAD_MEMORY_BUDGET`]
    /// (at least one point). The batch depends only on the model, never on the machine, so
    /// runs stay reproducible; models the bounds cannot lower (no `Net`) keep `max_batch`.
    pub fn new(model: &'a Model, temperature: f64, max_batch: usize) -> Self {
        let len = crate::bounds::Net::from_model(model).and_then(|net| forward_len(&net));
        Self::sized(model, temperature, max_batch, len)
    }

    /// [`GradOracle::new`] for a model already lowered to `net`.
    pub fn for_net(model: &'a Model, net: &Net, temperature: f64, max_batch: usize) -> Self {
        Self::sized(model, temperature, max_batch, forward_len(net))
    }

    /// The oracle for a network with `len` forward values per point (an error keeps `max_batch`,
    /// with a warning); says so on stderr when the budget shrinks the batch.
    fn sized(model: &'a Model, temperature: f64, max_batch: usize, len: Result<usize>) -> Self {
        let batch = match len {
            Ok(len) => batch_for_budget(len, max_batch),
            Err(e) => {
                eprintln!(
                    "oodcert: warning: cannot size the gradient batches by memory ({e}); using {max_batch} points per batch"
                );
                max_batch.max(1)
            }
        };
        if batch < max_batch {
            eprintln!(
                "oodcert: gradients in batches of {batch} points (the {} GiB memory budget of the gradient oracle)",
                GRAD_MEMORY_BUDGET >> 30
            );
        }
        GradOracle {
            model,
            temperature,
            batch,
        }
    }
}

/// `bounds::net::activation_len` of the whole network on its input.
fn forward_len(net: &Net) -> Result<usize> {
    let [c, h, w] = net.input_shape;
    crate::bounds::net::activation_len(&net.nodes, c * h * w)
}

/// The largest batch ≤ `max_batch` (and ≥ 1) whose estimated autograd memory,
/// `activation_len` values per point at [`BYTES_PER_ACTIVATION`] each, fits [`GRAD_MEMORY_BUDGET`].
pub fn batch_for_budget(activation_len: usize, max_batch: usize) -> usize {
    let per_point = activation_len.max(1).saturating_mul(BYTES_PER_ACTIVATION);
    (GRAD_MEMORY_BUDGET / per_point).clamp(1, max_batch.max(1))
}

impl GradOracle<'_> {
    /// (S(x), ∇ₓS(x)) for each point (flattened `(c, h, w)`).
    pub fn score_grads(&self, xs: &[Vec<f64>]) -> Result<Vec<(f64, Vec<f64>)>> {
        let [c, h, w] = self.model.spec().input_shape;
        let d = c * h * w;
        let mut out = Vec::with_capacity(xs.len());
        for chunk in xs.chunks(self.batch.max(1)) {
            let mut flat = Vec::with_capacity(chunk.len() * d);
            for x in chunk {
                if x.len() != d {
                    return Err(Error::BadInput(format!(
                        "point has {} values, model expects {d}",
                        x.len()
                    )));
                }
                flat.extend_from_slice(x);
            }
            let t = Tensor::from_vec(flat, (chunk.len(), c, h, w), self.model.device())?
                .to_dtype(self.model.dtype())?;
            let (s, g) = score_and_input_grad(self.model, &t, ScoreKind::Energy, self.temperature)?;
            let s = s.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
            let g = g
                .to_dtype(candle_core::DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()?;
            for (i, si) in s.into_iter().enumerate() {
                out.push((si, g[i * d..(i + 1) * d].to_vec()));
            }
        }
        Ok(out)
    }

    /// ‖∇ₓS‖_q at each point.
    pub fn grad_norms(&self, xs: &[Vec<f64>], norm: Norm) -> Result<Vec<f64>> {
        Ok(self
            .score_grads(xs)?
            .iter()
            .map(|(_, g)| norm.dual_norm(g))
            .collect())
    }
}

/// A point of the ball: uniform in B_p(x, ε) (ℓ2: Gaussian direction, radius ε·U^{1/n}; ℓ∞:
/// uniform cube), then clipped to [0,1] when the ball is intersected with the pixel box.
pub fn sample_ball(ball: &Ball, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let n = ball.center.len();
    let mut y: Vec<f64> = match ball.norm {
        Norm::Linf => ball
            .center
            .iter()
            .map(|c| c + ball.eps * (2.0 * rng.random::<f64>() - 1.0))
            .collect(),
        Norm::L2 => {
            let dir: Vec<f64> = (0..n)
                .map(|_| rng.sample::<f64, _>(StandardNormal))
                .collect();
            let len = dir
                .iter()
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt()
                .max(f64::MIN_POSITIVE);
            let r = ball.eps * rng.random::<f64>().powf(1.0 / n as f64);
            ball.center
                .iter()
                .zip(&dir)
                .map(|(c, d)| c + r * d / len)
                .collect()
        }
    };
    ball.project(&mut y);
    y
}

/// max over `m` uniform samples of the ball of ‖∇ₓS‖_q (the centre included).
pub fn lower_by_sampling(
    oracle: &GradOracle,
    ball: &Ball,
    m: usize,
    rng: &mut ChaCha8Rng,
) -> Result<f64> {
    let mut pts = vec![ball.center.clone()];
    pts.extend((0..m).map(|_| sample_ball(ball, rng)));
    Ok(oracle
        .grad_norms(&pts, ball.norm)?
        .into_iter()
        .fold(0.0, f64::max))
}

/// Settings of projected gradient ascent on ‖∇ₓS‖_q.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PgdConfig {
    pub steps: usize,
    pub restarts: usize,
    /// Step size as a fraction of ε.
    pub step_frac: f64,
    /// Finite-difference step for the Hessian-vector product, as a fraction of ε.
    pub fd_frac: f64,
}

impl Default for PgdConfig {
    fn default() -> Self {
        Self {
            steps: 20,
            restarts: 4,
            step_frac: 0.15,
            fd_frac: 1e-3,
        }
    }
}

/// ∂‖g‖_q/∂g (q = 2: g/‖g‖₂; q = 1: sign g).
pub(crate) fn norm_direction(g: &[f64], norm: Norm) -> Vec<f64> {
    match norm {
        Norm::L2 => {
            let n = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            if n == 0.0 {
                vec![0.0; g.len()]
            } else {
                g.iter().map(|v| v / n).collect()
            }
        }
        Norm::Linf => g
            .iter()
            .map(|v| {
                if *v > 0.0 {
                    1.0
                } else if *v < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            })
            .collect(),
    }
}

/// PGD starting points: the centre, then `restarts − 1` uniform points of the ball.
pub(crate) fn restart_points(ball: &Ball, restarts: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    (0..restarts)
        .map(|i| {
            if i == 0 {
                ball.center.clone()
            } else {
                sample_ball(ball, rng)
            }
        })
        .collect()
}

/// The steepest-ascent step of length `alpha` along `v` for the ball's norm: α·v/‖v‖₂ (ℓ2) or
/// α·sign(v) (ℓ∞); a negative `alpha` descends.
pub(crate) fn ascent_step(v: &[f64], norm: Norm, alpha: f64) -> Vec<f64> {
    match norm {
        Norm::L2 => {
            let n = v
                .iter()
                .map(|a| a * a)
                .sum::<f64>()
                .sqrt()
                .max(f64::MIN_POSITIVE);
            v.iter().map(|a| alpha * a / n).collect()
        }
        Norm::Linf => v.iter().map(|a| alpha * a.signum()).collect(),
    }
}

/// Projected gradient ascent on ‖∇ₓS(x')‖_q over x' in the ball, restart 0 at the centre and
/// the others at uniform points. The ascent direction ∇ₓ‖∇ₓS‖_q = H·∂‖g‖/∂g uses a central
/// finite difference of gradients for the Hessian-vector product (no second-order backward).
/// Returns the largest ‖∇ₓS‖_q seen at any point of the ball.
pub fn lower_by_pgd(
    oracle: &GradOracle,
    ball: &Ball,
    cfg: &PgdConfig,
    rng: &mut ChaCha8Rng,
) -> Result<f64> {
    if ball.eps == 0.0 {
        return Ok(oracle.grad_norms(std::slice::from_ref(&ball.center), ball.norm)?[0]);
    }
    let r = cfg.restarts.max(1);
    let mut xs = restart_points(ball, r, rng);
    let mut best = 0.0f64;
    let h = cfg.fd_frac * ball.eps;
    let alpha = cfg.step_frac * ball.eps;
    for _ in 0..=cfg.steps {
        let g0 = oracle.score_grads(&xs)?;
        let mut probes = Vec::with_capacity(2 * r);
        let mut dirs = Vec::with_capacity(r);
        for (k, (_, g)) in g0.iter().enumerate() {
            best = best.max(ball.norm.dual_norm(g));
            let v = norm_direction(g, ball.norm);
            let vn = v
                .iter()
                .map(|a| a * a)
                .sum::<f64>()
                .sqrt()
                .max(f64::MIN_POSITIVE);
            let plus: Vec<f64> = xs[k].iter().zip(&v).map(|(x, v)| x + h * v / vn).collect();
            let minus: Vec<f64> = xs[k].iter().zip(&v).map(|(x, v)| x - h * v / vn).collect();
            probes.push(plus);
            probes.push(minus);
            dirs.push(vn);
        }
        let gp = oracle.score_grads(&probes)?;
        for k in 0..r {
            for j in [2 * k, 2 * k + 1] {
                if ball.contains(&probes[j]) {
                    best = best.max(ball.norm.dual_norm(&gp[j].1));
                }
            }
            // H v ≈ (∇S(x + h v̂) − ∇S(x − h v̂)) / (2h) · ‖v‖.
            let mut hv: Vec<f64> = gp[2 * k]
                .1
                .iter()
                .zip(&gp[2 * k + 1].1)
                .map(|(a, b)| (a - b) / (2.0 * h) * dirs[k])
                .collect();
            if hv.iter().all(|v| *v == 0.0) {
                hv = (0..hv.len())
                    .map(|_| rng.sample::<f64, _>(StandardNormal))
                    .collect();
            }
            let step = ascent_step(&hv, ball.norm, alpha);
            xs[k].iter_mut().zip(&step).for_each(|(x, s)| *x += s);
            ball.project(&mut xs[k]);
        }
    }
    Ok(best)
}

/// Projected gradient descent (`maximise` false) or ascent on S itself inside the ball, with
/// restarts (restart 0 at the centre): the most extreme score found at a point of the ball.
/// Used to attack certified radii: no such point may cross the threshold.
pub fn extreme_score_by_pgd(
    oracle: &GradOracle,
    ball: &Ball,
    maximise: bool,
    cfg: &PgdConfig,
    rng: &mut ChaCha8Rng,
) -> Result<f64> {
    Ok(extreme_point_by_pgd(oracle, ball, maximise, cfg, rng)?.0)
}

/// [`extreme_score_by_pgd`] that also returns the point (inside the ball) attaining the score.
pub fn extreme_point_by_pgd(
    oracle: &GradOracle,
    ball: &Ball,
    maximise: bool,
    cfg: &PgdConfig,
    rng: &mut ChaCha8Rng,
) -> Result<(f64, Vec<f64>)> {
    let r = cfg.restarts.max(1);
    let mut xs = restart_points(ball, r, rng);
    let sign = if maximise { 1.0 } else { -1.0 };
    let mut best = (f64::NAN, ball.center.clone());
    let alpha = cfg.step_frac * ball.eps;
    for _ in 0..=cfg.steps {
        let sg = oracle.score_grads(&xs)?;
        for (k, (s, g)) in sg.iter().enumerate() {
            if best.0.is_nan() || sign * s > sign * best.0 {
                best = (*s, xs[k].clone());
            }
            let step = ascent_step(g, ball.norm, sign * alpha);
            xs[k].iter_mut().zip(&step).for_each(|(x, s)| *x += s);
            ball.project(&mut xs[k]);
        }
    }
    Ok(best)
}
