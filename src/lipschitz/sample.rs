//! The analysis of one sample: S(x) and ‖∇S(x)‖, the empirical lower bounds (sampling, PGD,
//! CLEVER), the certified local bounds of every requested method on B(x, ε), and the certified
//! radii. A new local-bound method is a [`Method`] variant and one arm in [`Analyser::local`].
//! The branch and bound runs on the ε-ball only; the radius search uses the other local bounds.

use super::bab::{BabBound, lipschitz_bab_capped};
use super::ball_memo::BallMemo;
use super::clever::clever;
use super::cost_estimate;
use super::empirical::{GradOracle, lower_by_pgd, lower_by_sampling};
use super::f32_margin::{bound_prop_decides, centre_margin, f32_margin};
use super::jacobian_lbp::{LbpConfig, jacobian_lbp_on};
use super::local::{check_query, fastlip_on};
use super::options::{Method, Options};
use super::pattern_search::lower_by_pattern;
use super::radius::{lipschitz_radius, search_radius_from};
use super::record::LipschitzRecord;
use super::recurjac::{recurjac_on, unsupported};
use super::summary::{Timings, stage};
use crate::bounds::f32_detector::F32Detector;
use crate::bounds::{Ball, Net};
use crate::error::{Error, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// The randomness of the sample with original index `index` (sampling, PGD starts, CLEVER):
/// ChaCha8 keyed by `seed`, stream `index`. A sample's lower bounds so depend only on (seed,
/// index), not on which other samples a run or a shard of it holds.
pub fn sample_rng(seed: u64, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    rng
}

/// XORed into the seed of the pattern search's stream, so adding `pattern` to `--methods`
/// leaves every other method's draws as they were.
const PATTERN_STREAM_KEY: u64 = 0x7061_7474_6572_6e00;

/// What every sample of a run shares: the network, its gradient oracle, the options, γ and the
/// global bound.
pub struct Analyser<'a> {
    /// The network in f64 (bounds).
    pub net: &'a Net,
    /// The float32 detector whose decisions the radii certify.
    pub detector: &'a F32Detector,
    /// S and ∇S by autodiff (lower bounds).
    pub oracle: GradOracle<'a>,
    /// The run's options.
    pub opts: &'a Options,
    /// The threshold γ.
    pub gamma: f64,
    /// The certified global bound, when computed.
    pub global: Option<f64>,
    /// Why RecurJac cannot run on this network (when it was requested).
    pub recurjac_skip: Option<String>,
    /// The upper end of the radius search.
    pub radius_max: f64,
    /// The detector's network is `net` itself (the energy of a plain model): the f32 error bound
    /// of a ball reads the same trace as the other bounds.
    pub detector_shares_net: bool,
}

/// The certified local bounds on one ball, per method.
#[derive(Debug, Clone, Default)]
struct LocalBounds {
    /// FastLip (the `local` method, or needed by `radius`).
    fastlip: Option<f64>,
    /// RecurJac: its value, the FastLip box ∩ simplex value on its boxes, the sound minimum, and
    /// its rule's name (or why it did not run).
    recurjac: Option<(f64, f64, f64)>,
    recurjac_rule: Option<String>,
    /// The Jacobian bound propagation (its sound minimum with FastLip).
    jacobian: Option<f64>,
    /// The branch and bound's result (ε-ball only).
    bab: Option<BabBound>,
}

impl LocalBounds {
    /// The smallest certified local bound (the `upper_local` column).
    fn best(&self) -> Option<f64> {
        let rj = self.recurjac.map(|r| r.2);
        let bab = self.bab.as_ref().map(|b| b.upper);
        [self.fastlip, rj, bab, self.jacobian]
            .into_iter()
            .flatten()
            .reduce(f64::min)
    }
}

/// A NaN in a certified column is an error (exit 2), never a number in lipschitz.csv.
fn check_no_nan(r: &LipschitzRecord) -> Result<()> {
    let cols = [
        ("score", Some(r.score)),
        ("upper_local", r.upper_local),
        ("upper_global", r.upper_global),
        ("upper_recurjac", r.upper_recurjac),
        ("radius_at_eps", r.radius_at_eps),
        ("radius_lipschitz", r.radius_lipschitz),
        ("radius_bound_prop", r.radius_bound_prop),
        ("f32_err_bound", r.f32_err_bound),
    ];
    match cols.iter().find(|(_, v)| v.is_some_and(f64::is_nan)) {
        Some((name, _)) => Err(Error::BadInput(format!(
            "sample {}: {name} is NaN (non-finite values in the model or the input)",
            r.index
        ))),
        None => Ok(()),
    }
}

impl<'a> Analyser<'a> {
    /// The shared state of a run; logs on stderr when RecurJac cannot run on `net`.
    pub fn new(
        net: &'a Net,
        detector: &'a F32Detector,
        oracle: GradOracle<'a>,
        opts: &'a Options,
        gamma: f64,
        global: Option<f64>,
        radius_max: f64,
    ) -> Analyser<'a> {
        let recurjac_skip = if opts.has(Method::Recurjac) {
            unsupported(net).map(|why| format!("not supported: {why}"))
        } else {
            None
        };
        if let Some(why) = &recurjac_skip {
            eprintln!("oodcert lipschitz: RecurJac {why} (column upper_recurjac left empty)");
        }
        Analyser {
            net,
            detector,
            oracle,
            opts,
            gamma,
            global,
            recurjac_skip,
            radius_max,
            detector_shares_net: detector.net == *net,
        }
    }

    /// The certified local bounds of the requested methods on `ball`, cheapest first, stopping
    /// once the best is ≤ `enough` (0: run them all; the radius search passes m/r, below which
    /// the ball of radius r certifies itself whatever the costlier methods would give). `first`:
    /// the run's first sample, which logs RecurJac's skipped levels. The branch and bound runs
    /// when `bab_lower` is given (a gradient norm attained in the ball, seeding its pruning): on
    /// the ε-ball only, since its budget is per ball.
    fn local(
        &self,
        memo: &BallMemo,
        ball: &Ball,
        first: bool,
        enough: f64,
        times: &mut Timings,
        bab_lower: Option<f64>,
    ) -> Result<LocalBounds> {
        let o = self.opts;
        let mut out = LocalBounds::default();
        let t = Instant::now();
        if o.has(Method::Local) || o.has(Method::Radius) {
            check_query(self.net, ball, o.temperature)?;
            let t = memo.trace(ball.eps)?;
            let fl = fastlip_on(
                self.net,
                &t.0,
                t.1.clone(),
                ball.norm,
                o.temperature,
                o.head(),
            )?;
            // Bounds that also use the ball (pool_pairs.rs): min of sound bounds.
            let ball_bound = super::pool_pairs::ball_local_bound(
                self.net,
                ball,
                &t.0,
                &t.1,
                o.temperature,
                fl.value,
            );
            out.fastlip = Some(fl.value.min(ball_bound.unwrap_or(f64::INFINITY)));
        }
        if o.has(Method::Jacobian) && !out.best().is_some_and(|b| b <= enough) {
            if let Some(why) = unsupported(self.net) {
                if first {
                    eprintln!("oodcert lipschitz: the Jacobian bound does not support {why}");
                }
            } else {
                let cfg = LbpConfig {
                    refine_max_work: o.jacobian_max_work,
                    ..LbpConfig::default()
                };
                let t = memo.trace(ball.eps)?;
                let jb = jacobian_lbp_on(self.net, ball, &t.0, t.1.clone(), o.temperature, cfg)?;
                if first {
                    eprintln!(
                        "oodcert lipschitz: Jacobian bound {:.6e} (rule {}, FastLip {:.6e})",
                        jb.value,
                        jb.rule.name(),
                        jb.fastlip_value
                    );
                }
                out.jacobian = Some(jb.value);
            }
        }
        times.stages[stage::LOCAL] += t.elapsed().as_secs_f64();
        if out.best().is_some_and(|b| b <= enough) {
            return Ok(out);
        }
        let t = Instant::now();
        if o.has(Method::Recurjac) {
            if let Some(why) = &self.recurjac_skip {
                out.recurjac_rule = Some(why.clone());
            } else {
                check_query(self.net, ball, o.temperature)?;
                let t = memo.trace(ball.eps)?;
                let rj = recurjac_on(
                    self.net,
                    &t.0,
                    t.1.clone(),
                    ball.norm,
                    o.temperature,
                    o.recurjac_max_work,
                )?;
                if first && rj.skipped_levels > 0 {
                    eprintln!(
                        "oodcert lipschitz: RecurJac: {} levels would cost more than \
                         --recurjac-max-work {:e} multiply-adds per row and use FastLip's step \
                         (raise the flag to recurse there)",
                        rj.skipped_levels, o.recurjac_max_work
                    );
                }
                out.recurjac = Some((rj.recurjac_value, rj.fastlip_value, rj.value));
                out.recurjac_rule = Some(rj.rule.name().to_string());
            }
        }
        times.stages[stage::RECURJAC] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if let Some(lower) = bab_lower.filter(|_| o.has(Method::Bab)) {
            // RecurJac's bound, when computed, caps the root (BaB then skips its own RecurJac).
            let cap = out.recurjac.map_or(f64::INFINITY, |r| r.2);
            out.bab = Some(lipschitz_bab_capped(
                self.net,
                ball,
                o.temperature,
                &o.bab(),
                lower,
                cap,
            )?);
        }
        times.stages[stage::BAB] += t.elapsed().as_secs_f64();
        Ok(out)
    }

    /// The analysis of image `x` (original index `index`, label `label`), drawing the sampling,
    /// PGD and CLEVER randomness from `rng`; adds each stage's seconds to `times`.
    #[allow(clippy::too_many_arguments)]
    pub fn analyse(
        &self,
        index: usize,
        label: i64,
        is_id: bool,
        x: Vec<f64>,
        first: bool,
        rng: &mut ChaCha8Rng,
        times: &mut Timings,
    ) -> Result<LipschitzRecord> {
        let o = self.opts;
        let ball = Ball::new(x.clone(), o.eps, o.norm, o.unit_box)?;
        let t = Instant::now();
        let sg = self.oracle.score_grads(std::slice::from_ref(&x))?;
        if first {
            cost_estimate::warn_if_long(
                "PGD, CLEVER and the pattern search",
                cost_estimate::gradient_count(o),
                "one gradient",
                t.elapsed().as_secs_f64(),
                "--pgd-steps/--pgd-restarts, --clever-batches/--clever-samples, --pattern-steps/--pattern-restarts or --methods without clever",
            );
        }
        let (score, g) = sg
            .first()
            .ok_or_else(|| Error::Internal("no score".into()))?;
        let score = *score;
        let mut row = LipschitzRecord {
            index,
            label,
            is_id,
            score,
            threshold: self.gamma,
            norm: o.norm.name().to_string(),
            ball: o.ball_name(),
            eps: o.eps,
            grad_norm: Some(o.norm.dual_norm(g)),
            ..Default::default()
        };
        if o.has(Method::Sample) {
            row.lower_sample = Some(lower_by_sampling(&self.oracle, &ball, o.samples, rng)?);
        }
        times.stages[stage::SAMPLE] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if o.has(Method::Pgd) {
            row.lower_pgd = Some(lower_by_pgd(&self.oracle, &ball, &o.pgd(), rng)?);
        }
        times.stages[stage::PGD] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if o.has(Method::Pattern) {
            // Its own stream: the PGD, sampling and CLEVER draws stay those of earlier runs.
            let mut prng = sample_rng(o.seed ^ PATTERN_STREAM_KEY, index);
            let p = lower_by_pattern(
                &self.oracle,
                self.net,
                &ball,
                o.temperature,
                &o.pattern(),
                &mut prng,
            )?;
            eprintln!(
                "oodcert lipschitz: pattern search, sample {index}: {:.6e} at a point of the ball \
                 ({} points read, {} outside the ball, {:.2} s; PGD {})",
                p.value,
                p.points,
                p.rejected,
                t.elapsed().as_secs_f64(),
                row.lower_pgd
                    .map_or("not run".into(), |v| format!("{v:.6e}")),
            );
            row.lower_pattern = Some(p.value);
        }
        times.stages[stage::PATTERN] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if o.has(Method::Clever) {
            let fit = clever(&self.oracle, &ball, &o.clever(), rng)?;
            row.clever = Some(fit.estimate);
            row.clever_ks = Some(fit.ks_stat);
        }
        times.stages[stage::CLEVER] += t.elapsed().as_secs_f64();
        let lower = row.lower_best().unwrap_or(0.0).max(0.0);
        let memo = BallMemo::new(
            self.net,
            self.detector,
            self.detector_shares_net,
            &ball,
            o.pre(),
            o.temperature,
        );
        let t = Instant::now();
        let local = self.local(&memo, &ball, first, 0.0, times, Some(lower))?;
        if first {
            // (The ε-ball's trace, FastLip and any other requested local method: each radius
            // bounds its ball with the same ones.)
            cost_estimate::warn_if_long(
                "the radius searches",
                cost_estimate::radius_balls(o, self.radius_max),
                "one ball's bounds",
                t.elapsed().as_secs_f64(),
                "--radius-iters, --radius-max or --methods without radius",
            );
        }
        row.upper_local = local.best();
        if let Some(b) = &local.bab {
            row.upper_bab = Some(b.upper);
            row.bab_lower = Some(b.lower);
            row.bab_domains = Some(b.domains);
        }
        if let Some((rj, simplex, _)) = local.recurjac {
            row.upper_recurjac = Some(rj);
            row.fastlip_simplex = Some(simplex);
        }
        row.recurjac_rule = local.recurjac_rule;
        row.upper_global = self.global;
        if o.has(Method::Radius) {
            self.radii(&memo, &ball, &mut row, times)?;
        }
        check_no_nan(&row)?;
        Ok(row)
    }

    /// The certified radii of `row`'s sample: at ε, and the largest found by each route in
    /// (0, radius_max] (doubling from ε, then bisection). Both certify the float32 detector's
    /// decision (proofs/f32_detector.md): the margin m is a lower bound on the exact one minus
    /// the f32 error bound E over the ball, and a sample with m ≤ 0 at the centre is undecided
    /// (radius 0). The Lipschitz route certifies min(r, m / L(x, r)) from the ball of radius r,
    /// L the smallest of every requested local bound on that ball and the global bound; the
    /// bound-propagation route certifies r when S's bounds on B(x, r), widened by E, stay on
    /// x's side of γ.
    fn radii(
        &self,
        memo: &BallMemo,
        ball: &Ball,
        row: &mut LipschitzRecord,
        times: &mut Timings,
    ) -> Result<()> {
        let o = self.opts;
        let det = self.detector;
        let t = Instant::now();
        let centre = centre_margin(
            self.net,
            det,
            &ball.center,
            row.score,
            self.gamma,
            o.temperature,
        )?;
        row.f32_err_bound = Some(centre.err);
        row.f32_undecided = Some(centre.undecided());
        let gv = self.global.unwrap_or(f64::INFINITY);
        let at_eps = row.upper_local.unwrap_or(f64::INFINITY).min(gv);
        row.radius_at_eps = Some(if centre.undecided() {
            0.0
        } else {
            lipschitz_radius(f32_margin(centre.exact, memo.error(o.eps)?), at_eps, o.eps)
        });
        let mut scratch = Timings::default();
        let mut lipschitz_at = |r: f64| -> Result<f64> {
            let b = memo.ball(r);
            // The margin left to the f32 detector on this ball: exact margin − E(r).
            let margin = f32_margin(centre.exact, memo.error(r)?);
            if margin.is_nan() || margin <= 0.0 {
                return Ok(0.0);
            }
            // The ε-ball's bounds are already known (the row's upper_local).
            let l = if r == o.eps {
                at_eps
            } else if gv <= margin / r {
                gv // the global bound alone certifies the ball
            } else {
                let local = self.local(memo, &b, false, margin / r, &mut scratch, None)?;
                local.best().unwrap_or(f64::INFINITY).min(gv)
            };
            Ok(lipschitz_radius(margin, l, r))
        };
        row.radius_lipschitz = Some(search_radius_from(
            |r| {
                if centre.undecided() {
                    return Ok(0.0);
                }
                let c = lipschitz_at(r)?;
                // While this radius's trace is at hand (a WRN-40-2 trace costs seconds).
                memo.keep_energy_bounds(r)?;
                Ok(c)
            },
            o.eps,
            self.radius_max,
            o.radius_iters,
        )?);
        times.stages[stage::RADIUS_LIPSCHITZ] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        row.radius_bound_prop = Some(search_radius_from(
            |r| {
                if centre.undecided() {
                    return Ok(0.0);
                }
                let (lo, hi) = memo.energy_bounds(r)?;
                let ok = bound_prop_decides(&centre, lo, hi, memo.error(r)?)?;
                Ok(if ok { r } else { 0.0 })
            },
            o.eps,
            self.radius_max,
            o.radius_iters,
        )?);
        times.stages[stage::RADIUS_BOUND_PROP] += t.elapsed().as_secs_f64();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_bound_is_an_error() {
        let mut r = LipschitzRecord {
            upper_local: Some(1.0),
            radius_lipschitz: Some(0.1),
            ..Default::default()
        };
        assert!(check_no_nan(&r).is_ok());
        r.radius_bound_prop = Some(f64::NAN);
        let e = check_no_nan(&r).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("radius_bound_prop"), "{e}");
        r.radius_bound_prop = Some(f64::INFINITY);
        r.f32_err_bound = Some(f64::INFINITY);
        assert!(
            check_no_nan(&r).is_ok(),
            "∞ is a sound (useless) bound, not an error"
        );
    }
}
