//! Branch and bound on the local Lipschitz constant sup_{x'∈B} ‖∇ₓS(x')‖_q (LipBaB, Bhowmick et
//! al. 2021): domains fix unstable ReLUs active or inactive ([`domain`]); the upper bound is the
//! largest bound over the domains not yet discarded, a domain is discarded when proven empty
//! ([`emptiness`]) or when its bound is below a gradient norm attained in the ball, and the
//! domain with the largest bound is split next (best first). Anytime: the bound is valid
//! whenever the search stops. Proof: proofs/lipschitz_bab.md.

pub mod box_quadratic_dual;
pub mod column_cache;
pub mod domain;
pub mod emptiness;
pub mod pattern_gram;
pub mod point_grad;
pub mod split_cuts;

use crate::bounds::{Ball, Net};
use crate::error::{Error, Result};
use crate::lipschitz::empirical::sample_ball;
pub use domain::DomainRows;
use domain::{ACTIVE, Domain, INACTIVE, Outcome, Problem};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Settings of the search.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BabConfig {
    /// Wall-clock budget in seconds (> 0); the search stops at the first domain past it.
    pub budget_s: f64,
    /// At most this many domains bounded (≥ 1; the deterministic budget).
    pub max_domains: usize,
    /// CROWN ∩ IBP for ReLU inputs and logits of at most this dimension (None: IBP only).
    pub crown_max_dim: Option<usize>,
    /// RecurJac with this cost guard where supported (None: FastLip box ∩ simplex only).
    pub recurjac_max_work: Option<f64>,
    /// Which RecurJac rows bound each domain.
    pub rows: DomainRows,
    /// Uniform samples of the ball whose gradient norms seed the lower bound (centre included).
    pub samples: usize,
    pub seed: u64,
    /// Stop when upper ≤ lower·(1 + rel_gap).
    pub rel_gap: f64,
}

impl Default for BabConfig {
    fn default() -> Self {
        BabConfig {
            budget_s: 10.0,
            max_domains: usize::MAX,
            crown_max_dim: Some(4096),
            recurjac_max_work: Some(1e10),
            rows: DomainRows::Adaptive,
            samples: 64,
            seed: 0,
            rel_gap: 0.0,
        }
    }
}

/// The anytime result: `upper` is certified, `lower` is a gradient norm attained at a point.
#[derive(Debug, Clone, Serialize)]
pub struct BabBound {
    /// Certified upper bound of sup_{x'∈B} ‖∇ₓS(x')‖_q.
    pub upper: f64,
    /// The largest gradient norm found at a point of the ball (an estimate, never above the true
    /// value up to f64 rounding of the gradient).
    pub lower: f64,
    /// The bound of the unsplit ball (the same rule without branching).
    pub root: f64,
    /// Domains bounded (the root included).
    pub domains: usize,
    /// Domains still open when the search stopped.
    pub open: usize,
    /// Leaves: domains with every ReLU stable or split (not split further).
    pub leaves: usize,
    pub pruned_by_lower: usize,
    pub empty_by_bounds: usize,
    pub empty_by_dual: usize,
    /// True when no open domain is left (the upper bound is the largest leaf or pruned bound).
    pub complete: bool,
    pub seconds: f64,
}

impl BabBound {
    /// upper − lower.
    pub fn gap(&self) -> f64 {
        self.upper - self.lower
    }
}

/// A domain ordered by its bound (max-heap).
struct ByBound(Domain);

impl PartialEq for ByBound {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for ByBound {}
impl PartialOrd for ByBound {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for ByBound {
    fn cmp(&self, o: &Self) -> Ordering {
        // Ties: the shallower domain first (deterministic order).
        self.0
            .ub
            .total_cmp(&o.0.ub)
            .then_with(|| o.0.depth.cmp(&self.0.depth))
    }
}

/// Checks the settings: Err(BadInput) with the fix in one line.
pub fn check_config(cfg: &BabConfig) -> Result<()> {
    if !(cfg.budget_s.is_finite() && cfg.budget_s > 0.0) {
        return Err(Error::BadInput(format!(
            "BaB budget must be a positive number of seconds, got {}",
            cfg.budget_s
        )));
    }
    if cfg.max_domains == 0 {
        return Err(Error::BadInput("BaB needs at least one domain".into()));
    }
    if !(cfg.rel_gap.is_finite() && cfg.rel_gap >= 0.0) {
        return Err(Error::BadInput(format!(
            "BaB relative gap must be ≥ 0, got {}",
            cfg.rel_gap
        )));
    }
    Ok(())
}

/// Branch and bound on the local Lipschitz constant of S over the ball; `lower` is a gradient
/// norm already attained in the ball (e.g. by PGD; 0 if none), merged with the sampled ones.
pub fn lipschitz_bab(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    cfg: &BabConfig,
    lower: f64,
) -> Result<BabBound> {
    lipschitz_bab_capped(net, ball, temperature, cfg, lower, f64::INFINITY)
}

/// [`lipschitz_bab`] with `upper`, a certified bound of the same quantity on the whole ball
/// already known to the caller (e.g. RecurJac's; +∞ if none), capping the root and so every
/// domain (a cap by a valid bound of a superset keeps each domain's bound valid).
pub fn lipschitz_bab_capped(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    cfg: &BabConfig,
    lower: f64,
    upper: f64,
) -> Result<BabBound> {
    crate::lipschitz::local::check_query(net, ball, temperature)?;
    check_config(cfg)?;
    let start = Instant::now();
    let mut lb = if lower.is_finite() {
        lower.max(0.0)
    } else {
        0.0
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut pts = vec![ball.center.clone()];
    pts.extend((0..cfg.samples).map(|_| sample_ball(ball, &mut rng)));
    for x in &pts {
        let g = point_grad::score_grad(net, x, temperature)?;
        lb = lb.max(ball.norm.dual_norm(&g));
    }
    let prob = Problem::new(
        net,
        ball,
        temperature,
        cfg.crown_max_dim,
        cfg.recurjac_max_work,
        cfg.rows,
    )?;
    // A cap below a gradient norm seen at a point of the ball is not a bound of this ball (a
    // caller's bound for another ball, norm or temperature): refuse rather than certify it.
    if upper < lb * (1.0 - 1e-9) {
        return Err(Error::Internal(format!(
            "BaB: the supplied cap {upper} is below the gradient norm {lb} found in the ball"
        )));
    }
    let mut out = BabBound {
        upper: f64::INFINITY,
        lower: lb,
        root: f64::INFINITY,
        domains: 1,
        open: 0,
        leaves: 0,
        pruned_by_lower: 0,
        empty_by_bounds: 0,
        empty_by_dual: 0,
        complete: false,
        seconds: 0.0,
    };
    // The largest bound among discarded (pruned or leaf) domains: part of the upper bound.
    let mut closed = 0.0f64;
    let mut heap = BinaryHeap::new();
    match prob.root()? {
        Outcome::Bounded(mut d) => {
            out.root = d.ub;
            if upper >= 0.0 {
                d.ub = d.ub.min(upper);
            }
            heap.push(ByBound(d));
        }
        // The ball is never empty (it holds its centre): an unsound box would land here.
        _ => return Err(Error::Internal("BaB: the ball was proven empty".into())),
    }
    while let Some(ByBound(d)) = heap.pop() {
        let top = d.ub.max(closed);
        let stop = top <= lb * (1.0 + cfg.rel_gap)
            || out.domains >= cfg.max_domains
            || start.elapsed().as_secs_f64() >= cfg.budget_s;
        if stop {
            heap.push(ByBound(d));
            break;
        }
        let Some((i, j)) = prob.branch(&d)? else {
            out.leaves += 1;
            closed = closed.max(d.ub);
            continue;
        };
        // The two children are bounded on two threads (each a pure function of the parent and
        // its split), then taken in the fixed order active, inactive: the search is the same.
        let (active, inactive) = rayon::join(
            || prob.child(&d, i, j, ACTIVE),
            || prob.child(&d, i, j, INACTIVE),
        );
        for child in [active, inactive] {
            out.domains += 1;
            match child? {
                Outcome::EmptyByBounds => out.empty_by_bounds += 1,
                Outcome::EmptyByDual => out.empty_by_dual += 1,
                Outcome::Bounded(c) if c.ub < lb => {
                    out.pruned_by_lower += 1;
                    closed = closed.max(c.ub);
                }
                Outcome::Bounded(c) => heap.push(ByBound(c)),
            }
        }
    }
    out.open = heap.len();
    out.complete = heap.is_empty();
    out.upper = heap.peek().map_or(0.0, |d| d.0.ub).max(closed);
    out.seconds = start.elapsed().as_secs_f64();
    Ok(out)
}
