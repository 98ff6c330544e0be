//! PyTorch's default initialisation, reproduced with a seeded ChaCha stream (candle's CPU RNG
//! cannot be seeded): He et al. 2015 kaiming-uniform with a = √5 for weights, U(±1/√fan_in) for
//! biases, BatchNorm γ = 1, β = 0, running mean 0, running variance 1.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How one parameter tensor is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// `kaiming_uniform_(w, a=√5)`: U(±b) with b = gain·√(3/fan_in), gain = √(2/(1+a²)) = √(1/3),
    /// i.e. b = 1/√fan_in (PyTorch `nn.Linear`/`nn.Conv2d` `reset_parameters`).
    KaimingUniformSqrt5 { fan_in: usize },
    /// The bias rule of `nn.Linear`/`nn.Conv2d`: U(±1/√fan_in).
    BiasUniform { fan_in: usize },
    /// Every entry equal to this constant (BatchNorm γ = 1, β = 0, running stats).
    Constant(f64),
}

impl Init {
    /// The half-width b of the uniform distribution U(±b), if this rule is uniform.
    pub fn uniform_bound(&self) -> Option<f64> {
        match self {
            Init::KaimingUniformSqrt5 { fan_in } => {
                let a = 5f64.sqrt();
                let gain = (2.0 / (1.0 + a * a)).sqrt();
                Some(gain * (3.0 / *fan_in as f64).sqrt())
            }
            Init::BiasUniform { fan_in } => Some(1.0 / (*fan_in as f64).sqrt()),
            Init::Constant(_) => None,
        }
    }
}

/// A deterministic stream of initial values: the same seed gives the same model on every machine.
pub struct InitRng {
    rng: ChaCha8Rng,
}

impl InitRng {
    /// A stream seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// `numel` values drawn by `init` (in f64; callers cast to the model's dtype).
    pub fn sample(&mut self, init: Init, numel: usize) -> Vec<f64> {
        match init.uniform_bound() {
            Some(b) => (0..numel)
                .map(|_| (2.0 * self.rng.random::<f64>() - 1.0) * b)
                .collect(),
            None => {
                let c = match init {
                    Init::Constant(c) => c,
                    _ => 0.0,
                };
                vec![c; numel]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaiming_sqrt5_bound_is_one_over_sqrt_fan_in() {
        let b = Init::KaimingUniformSqrt5 { fan_in: 75 }
            .uniform_bound()
            .unwrap();
        assert!((b - 1.0 / 75f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn samples_are_seeded_and_inside_the_bound() {
        let init = Init::BiasUniform { fan_in: 4 };
        let a = InitRng::new(7).sample(init, 1000);
        let b = InitRng::new(7).sample(init, 1000);
        let c = InitRng::new(8).sample(init, 1000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| v.abs() <= 0.5));
        // U(±0.5) has mean 0 and variance 1/12; 1000 draws stay well inside 5 standard errors.
        let mean = a.iter().sum::<f64>() / 1000.0;
        let var = a.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 999.0;
        assert!(
            mean.abs() < 5.0 * (1.0f64 / 12.0 / 1000.0).sqrt(),
            "mean {mean}"
        );
        assert!((var - 1.0 / 12.0).abs() < 0.02, "var {var}");
    }
}
