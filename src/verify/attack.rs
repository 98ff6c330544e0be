//! Projected gradient attacks on the energy S inside an ℓ2/ℓ∞ ball (Madry et al. 2018): push S
//! across a threshold, from the centre and from random starts, and return the extreme point.

use crate::bounds::Ball;
use crate::error::Result;
use crate::lipschitz::empirical::{GradOracle, PgdConfig, extreme_point_by_pgd};
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
    let pgd = PgdConfig {
        steps: cfg.steps,
        restarts: cfg.restarts,
        step_frac: cfg.step_frac,
        ..PgdConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    extreme_point_by_pgd(oracle, ball, increase, &pgd, &mut rng)
}
