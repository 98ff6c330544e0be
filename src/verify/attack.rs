//! Projected gradient attacks on the energy S inside an ℓ2/ℓ∞ ball (Madry et al. 2018): push S
//! across a threshold, from the centre and from random starts, and return the extreme point.

use crate::bounds::{Ball, Norm};
use crate::error::Result;
use crate::lipschitz::empirical::{GradOracle, sample_ball};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// PGD settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttackConfig {
    pub steps: usize,
    pub restarts: usize,
    /// Step size as a fraction of the radius (2.5/steps is Madry's rule of thumb).
    pub step_frac: f64,
    pub seed: u64,
}

impl Default for AttackConfig {
    fn default() -> Self {
        AttackConfig {
            steps: 40,
            restarts: 5,
            step_frac: 2.5 / 40.0,
            seed: 0,
        }
    }
}

/// Maximises (`increase`) or minimises S over `ball` by PGD with restarts (restart 0 starts at
/// the centre); returns the most extreme (score, point) seen, every point inside the ball.
pub fn attack_towards_threshold(
    oracle: &GradOracle,
    ball: &Ball,
    increase: bool,
    cfg: &AttackConfig,
) -> Result<(f64, Vec<f64>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut xs: Vec<Vec<f64>> = (0..cfg.restarts.max(1))
        .map(|i| {
            if i == 0 {
                ball.center.clone()
            } else {
                sample_ball(ball, &mut rng)
            }
        })
        .collect();
    let sign = if increase { 1.0 } else { -1.0 };
    let alpha = cfg.step_frac * ball.eps;
    let mut best: (f64, Vec<f64>) = (f64::NAN, ball.center.clone());
    for _ in 0..=cfg.steps {
        let sg = oracle.score_grads(&xs)?;
        for (k, (s, g)) in sg.iter().enumerate() {
            if best.0.is_nan() || sign * s > sign * best.0 {
                best = (*s, xs[k].clone());
            }
            let step: Vec<f64> = match ball.norm {
                Norm::L2 => {
                    let n = g
                        .iter()
                        .map(|v| v * v)
                        .sum::<f64>()
                        .sqrt()
                        .max(f64::MIN_POSITIVE);
                    g.iter().map(|v| sign * alpha * v / n).collect()
                }
                Norm::Linf => g.iter().map(|v| sign * alpha * v.signum()).collect(),
            };
            xs[k].iter_mut().zip(&step).for_each(|(x, s)| *x += s);
            ball.project(&mut xs[k]);
        }
    }
    Ok(best)
}
