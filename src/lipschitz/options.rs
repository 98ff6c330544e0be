//! The options of a Lipschitz run (`oodcert lipschitz`): which per-sample methods run, on which
//! ball, with which budgets; [`Options::check`] refuses what cannot be run before anything starts.

use crate::bounds::Norm;
use crate::error::{Error, Result};
use crate::lipschitz::bab::BabConfig;
use crate::lipschitz::clever::CleverConfig;
use crate::lipschitz::empirical::PgdConfig;
use crate::lipschitz::local::{Head, PreBounds};
use crate::lipschitz::pattern_search::PatternConfig;
use crate::score::ScoreKind;
use serde::Serialize;

/// The most α-CROWN steps `--alpha-iters` accepts (each step walks every bound's rows once).
pub const MAX_ALPHA_ITERS: usize = 1000;

/// The per-sample methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// ‖∇S(x)‖_q and max over uniform samples of the ball.
    Sample,
    /// PGD ascent on ‖∇S‖_q.
    Pgd,
    /// CLEVER estimate.
    Clever,
    /// FastLip certified local bound.
    Local,
    /// Certified global bound.
    Global,
    /// Certified radii (Lipschitz and bound-propagation routes).
    Radius,
    /// RecurJac certified local bound (dense/conv ReLU networks, max-pool, residual blocks; not in
    /// the default set: about 2–6 s per sample on the MNIST MLP and LeNet; levels costlier than
    /// `--recurjac-max-work` use FastLip's step).
    Recurjac,
    /// Linear bound propagation on the Jacobian graph (Shi et al. 2022), min with FastLip: not in
    /// the default set; its value enters `upper_local` (the best requested local bound) and its
    /// seconds the `local` stage.
    Jacobian,
    /// Branch and bound on ReLU splits (LipBaB; `lipschitz::bab`): the local bound refined until
    /// `--bab-budget` seconds or `--bab-max-domains` domains (ℓ2 on dense ReLU chains: the
    /// pattern-Gram bound per domain; else RecurJac where supported, else FastLip box ∩ simplex);
    /// not in the default set. Its bound enters `upper_local`.
    Bab,
    /// Empirical lower bound stronger than PGD: ascent on the gradient norm of a smoothed
    /// surrogate (sigmoid ReLU derivatives, softmax pool selections, τ annealed to 0), the true
    /// ‖∇S‖_q read at every iterate in the ball (`lipschitz::pattern_search`); not in the
    /// default set. Column `lower_pattern`.
    Pattern,
}

impl Method {
    /// The methods run when none are named: all but RecurJac.
    pub const DEFAULT: [Method; 6] = [
        Method::Sample,
        Method::Pgd,
        Method::Clever,
        Method::Local,
        Method::Global,
        Method::Radius,
    ];
}

/// Bound propagation used for pre-activation boxes and bounds on S.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoundsKind {
    /// Interval bound propagation.
    Ibp,
    /// IBP ∩ CROWN (backward linear relaxation).
    Crown,
}

/// What is computed for every sample, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Perturbation norm.
    pub norm: Norm,
    /// Ball radius ε in pixel units.
    pub eps: f64,
    /// Intersect the ball with the pixel box [0,1].
    pub unit_box: bool,
    /// Methods to run (empty: [`Method::DEFAULT`]).
    pub methods: Vec<Method>,
    /// The score whose Lipschitz constant is bounded.
    pub score: ScoreKind,
    /// Temperature T of the energy.
    pub temperature: f64,
    /// Uniform samples of the ball for the sampling lower bound.
    pub samples: usize,
    /// PGD steps.
    pub pgd_steps: usize,
    /// PGD restarts.
    pub pgd_restarts: usize,
    /// CLEVER batches N_b.
    pub clever_batches: usize,
    /// CLEVER samples per batch N_s.
    pub clever_samples: usize,
    /// Bisection steps of the radius search.
    pub radius_iters: usize,
    /// Upper end of the radius search (default: [`Options::pixel_box_diameter`]).
    pub radius_max: Option<f64>,
    /// Pre-activation and logit bounds.
    pub bounds: BoundsKind,
    /// CROWN tightens a layer's box only when it has at most this many entries.
    pub crown_max_dim: usize,
    /// α-CROWN's Adam steps on the relaxations of a flat network's sign-uncertain ReLU inputs
    /// (0: CROWN alone; `bounds::alpha_crown`).
    pub alpha_iters: usize,
    /// RecurJac's per-level work limit (multiply-adds per top row).
    pub recurjac_max_work: f64,
    /// The Jacobian bound's budget for tightening gradient boxes (multiply-adds, all rows).
    pub jacobian_max_work: f64,
    /// Bound the local gradient with the box ∩ simplex softmax head.
    pub simplex: bool,
    /// Seed of the sampling, PGD and CLEVER draws.
    pub seed: u64,
    /// Branch and bound: wall-clock seconds per sample (> 0).
    pub bab_budget: f64,
    /// Branch and bound: most domains per sample (None: no limit; the deterministic budget).
    pub bab_max_domains: Option<usize>,
    /// Pattern search (`--methods …,pattern`): ascent steps per restart.
    pub pattern_steps: usize,
    /// Pattern search: restarts (the centre, then uniform points of the ball).
    pub pattern_restarts: usize,
}

impl Options {
    /// Refuses values no run can use (one line each, [`Error::BadInput`]).
    pub fn check(&self) -> Result<()> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::BadInput(format!(
                "--eps must be finite and ≥ 0, got {}",
                self.eps
            )));
        }
        crate::score::check_temperature(self.temperature).map_err(|_| {
            Error::BadInput(format!(
                "--temperature must be finite and > 0, got {}",
                self.temperature
            ))
        })?;
        if let Some(r) = self.radius_max
            && !(r.is_finite() && r > 0.0)
        {
            return Err(Error::BadInput(format!(
                "--radius-max must be finite and > 0, got {r} (leave it out for the pixel box's diameter)"
            )));
        }
        if let Some(r) = self.radius_max
            && r < self.eps
        {
            return Err(Error::BadInput(format!(
                "--radius-max {r} is below --eps {}: the search starts at ε (raise --radius-max or leave it out)",
                self.eps
            )));
        }
        if self.recurjac_max_work.is_nan() || self.recurjac_max_work <= 0.0 {
            return Err(Error::BadInput(format!(
                "--recurjac-max-work must be > 0, got {} (e.g. 1e10; inf recurses everywhere)",
                self.recurjac_max_work
            )));
        }
        if self.jacobian_max_work.is_nan() || self.jacobian_max_work < 0.0 {
            return Err(Error::BadInput(format!(
                "--jacobian-max-work must be ≥ 0, got {} (e.g. 3e9; 0 tightens no gradient box)",
                self.jacobian_max_work
            )));
        }
        if self.has(Method::Clever) && (self.clever_batches < 3 || self.clever_samples == 0) {
            return Err(Error::BadInput(format!(
                "CLEVER needs --clever-batches ≥ 3 and --clever-samples ≥ 1, got {} and {} (or leave clever out of --methods)",
                self.clever_batches, self.clever_samples
            )));
        }
        if !(self.bab_budget.is_finite() && self.bab_budget > 0.0) {
            return Err(Error::BadInput(format!(
                "--bab-budget must be a positive number of seconds, got {}",
                self.bab_budget
            )));
        }
        if self.bab_max_domains == Some(0) {
            return Err(Error::BadInput(
                "--bab-max-domains must be ≥ 1 (leave it out for no limit)".into(),
            ));
        }
        if self.has(Method::Pattern) && (self.pattern_restarts == 0 || self.pattern_steps == 0) {
            return Err(Error::BadInput(
                "--pattern-restarts and --pattern-steps must be ≥ 1 (or leave pattern out of --methods; without steps it is `sample`)".into(),
            ));
        }
        if self.alpha_iters > MAX_ALPHA_ITERS {
            return Err(Error::BadInput(format!(
                "--alpha-iters must be ≤ {MAX_ALPHA_ITERS}, got {} (10 is enough on LeNet: more steps changed no bound)",
                self.alpha_iters
            )));
        }
        if self.alpha_iters > 0 && self.bounds == BoundsKind::Ibp {
            return Err(Error::BadInput(
                "--alpha-iters optimises CROWN's relaxations: use it with --bounds crown (the default), or drop it".into(),
            ));
        }
        if self.has(Method::Pgd) && self.pgd_restarts == 0 {
            return Err(Error::BadInput(
                "--pgd-restarts must be ≥ 1 (or leave pgd out of --methods)".into(),
            ));
        }
        Ok(())
    }

    /// The diameter of the pixel box [0,1]^n in the ball's norm: √n for ℓ2, 1 for ℓ∞ (the
    /// default end of the radius search: no larger ball holds more valid images).
    pub fn pixel_box_diameter(&self, n: usize) -> f64 {
        match self.norm {
            Norm::L2 => (n as f64).sqrt(),
            Norm::Linf => 1.0,
        }
    }

    /// The upper end of the radius search for inputs of `n` values (never below ε).
    pub fn radius_max(&self, n: usize) -> f64 {
        self.radius_max
            .unwrap_or_else(|| self.pixel_box_diameter(n).max(self.eps))
    }

    /// The methods to run: the named ones, or [`Method::DEFAULT`].
    pub fn methods(&self) -> Vec<Method> {
        if self.methods.is_empty() {
            Method::DEFAULT.to_vec()
        } else {
            self.methods.clone()
        }
    }

    /// Whether `m` runs.
    pub fn has(&self, m: Method) -> bool {
        if self.methods.is_empty() {
            Method::DEFAULT.contains(&m)
        } else {
            self.methods.contains(&m)
        }
    }

    /// The pre-activation bounds of the local bound and the bound-propagation radius.
    pub fn pre(&self) -> PreBounds {
        match self.bounds {
            BoundsKind::Ibp => PreBounds::Ibp,
            BoundsKind::Crown if self.alpha_iters > 0 => PreBounds::AlphaCrown {
                max_dim: self.crown_max_dim,
                iters: self.alpha_iters,
            },
            BoundsKind::Crown => PreBounds::Crown {
                max_dim: self.crown_max_dim,
            },
        }
    }

    /// FastLip's softmax head.
    pub fn head(&self) -> Head {
        if self.simplex {
            Head::Simplex
        } else {
            Head::Box
        }
    }

    /// PGD's configuration.
    pub fn pgd(&self) -> PgdConfig {
        PgdConfig {
            steps: self.pgd_steps,
            restarts: self.pgd_restarts,
            ..Default::default()
        }
    }

    /// The pattern search's configuration.
    pub fn pattern(&self) -> PatternConfig {
        PatternConfig {
            steps: self.pattern_steps,
            restarts: self.pattern_restarts,
            ..Default::default()
        }
    }

    /// The branch and bound's configuration: the run's bounds, RecurJac where supported.
    pub fn bab(&self) -> BabConfig {
        BabConfig {
            budget_s: self.bab_budget,
            max_domains: self.bab_max_domains.unwrap_or(usize::MAX),
            crown_max_dim: match self.bounds {
                BoundsKind::Ibp => None,
                BoundsKind::Crown => Some(self.crown_max_dim),
            },
            recurjac_max_work: Some(self.recurjac_max_work),
            seed: self.seed,
            ..BabConfig::default()
        }
    }

    /// CLEVER's configuration.
    pub fn clever(&self) -> CleverConfig {
        CleverConfig {
            batches: self.clever_batches,
            per_batch: self.clever_samples,
        }
    }

    /// The ball's name in the CSV: the norm, with `∩[0,1]` when clipped to the pixel box.
    pub fn ball_name(&self) -> String {
        format!(
            "{}{}",
            self.norm.name(),
            if self.unit_box { "∩[0,1]" } else { "" }
        )
    }
}
