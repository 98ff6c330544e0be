//! Learning-rate schedules evaluated per optimiser step: constant, cosine annealing
//! (Loshchilov & Hutter 2017, per step as in the energy-OOD/GReg code) and multistep.

use crate::train::config::ScheduleConfig;

/// The learning rate at `step` (0-based) of `total` steps, with `steps_per_epoch` for milestones.
pub fn learning_rate(
    cfg: &ScheduleConfig,
    base: f64,
    step: usize,
    total: usize,
    steps_per_epoch: usize,
) -> f64 {
    match cfg.kind.as_str() {
        "cosine" => {
            let t = step as f64 / total.max(1) as f64;
            cfg.lr_min + (base - cfg.lr_min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
        "multistep" => {
            let epoch = step / steps_per_epoch.max(1);
            let passed = cfg.milestones.iter().filter(|&&m| epoch >= m).count();
            base * cfg.gamma.powi(passed as i32)
        }
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_runs_from_base_to_min() {
        let cfg = ScheduleConfig {
            kind: "cosine".into(),
            lr_min: 0.001,
            ..ScheduleConfig::default()
        };
        assert_eq!(learning_rate(&cfg, 0.1, 0, 100, 10), 0.1);
        let mid = learning_rate(&cfg, 0.1, 50, 100, 10);
        assert!((mid - (0.001 + 0.099 * 0.5)).abs() < 1e-15);
        assert!((learning_rate(&cfg, 0.1, 100, 100, 10) - 0.001).abs() < 1e-15);
        let mut prev = f64::INFINITY;
        for s in 0..=100 {
            let lr = learning_rate(&cfg, 0.1, s, 100, 10);
            assert!(lr <= prev);
            prev = lr;
        }
    }

    #[test]
    fn multistep_multiplies_at_milestones() {
        let cfg = ScheduleConfig {
            kind: "multistep".into(),
            milestones: vec![2, 4],
            gamma: 0.1,
            ..ScheduleConfig::default()
        };
        assert_eq!(learning_rate(&cfg, 1.0, 19, 100, 10), 1.0);
        assert!((learning_rate(&cfg, 1.0, 20, 100, 10) - 0.1).abs() < 1e-15);
        assert!((learning_rate(&cfg, 1.0, 45, 100, 10) - 0.01).abs() < 1e-15);
    }
}
