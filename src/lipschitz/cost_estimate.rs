//! What the rest of a sample's analysis will cost, estimated on the first sample from the time of
//! one gradient and of one ball's bounds, and warned about on stderr when it is long: a deep
//! network at 3×32×32 (WRN-40-2: seconds per ball trace) makes the default methods run for tens
//! of minutes per sample, which should not happen silently.

use super::options::{Method, Options};

/// Estimates above this many seconds per sample are warned about.
pub const LONG_SECONDS: f64 = 120.0;

/// Gradient evaluations of the requested PGD, CLEVER and pattern search per sample: PGD's
/// steps + 1 rounds of `restarts` gradients and 2·`restarts` finite-difference probes, CLEVER's
/// batches × samples, the pattern search's (4·steps + 1)·restarts (oracle and host surrogate
/// gradients alike).
pub fn gradient_count(o: &Options) -> usize {
    let mut n = 0;
    if o.has(Method::Pgd) {
        let p = o.pgd();
        n += (p.steps + 1) * 3 * p.restarts.max(1);
    }
    if o.has(Method::Clever) {
        let c = o.clever();
        n += c.batches * c.per_batch;
    }
    if o.has(Method::Pattern) {
        // One oracle gradient per restart and step (and at the starts), three host surrogate
        // gradients per restart and step (counted as gradients: about the same work).
        let p = o.pattern();
        n += (4 * p.steps + 1) * p.restarts.max(1);
    }
    n
}

/// The most balls the two radius searches bound per sample: each evaluates the start ε, doubles
/// up to `radius_max` (⌈log₂(radius_max/ε)⌉ balls) and bisects `radius_iters` times.
pub fn radius_balls(o: &Options, radius_max: f64) -> usize {
    if !o.has(Method::Radius) {
        return 0;
    }
    let doublings = if o.eps > 0.0 && radius_max > o.eps {
        (radius_max / o.eps).log2().ceil() as usize
    } else {
        0
    };
    2 * (1 + doublings + o.radius_iters)
}

/// One warning line when `count` units of `unit_seconds` each exceed [`LONG_SECONDS`].
pub fn warn_if_long(what: &str, count: usize, unit: &str, unit_seconds: f64, bound_by: &str) {
    let total = count as f64 * unit_seconds;
    if total > LONG_SECONDS {
        eprintln!(
            "oodcert lipschitz: warning: {unit} takes {unit_seconds:.2} s on the first sample, so {what} \
             ({count} of them) will take up to about {:.0} min per sample; {bound_by} bound it",
            total / 60.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(methods: Vec<Method>) -> Options {
        Options {
            norm: crate::bounds::Norm::L2,
            eps: 0.01,
            unit_box: false,
            methods,
            score: crate::score::ScoreKind::Energy,
            temperature: 1.0,
            samples: 8,
            pgd_steps: 20,
            pgd_restarts: 4,
            clever_batches: 50,
            clever_samples: 64,
            radius_iters: 10,
            radius_max: None,
            bounds: super::super::options::BoundsKind::Crown,
            crown_max_dim: 4096,
            alpha_iters: 0,
            recurjac_max_work: 1e10,
            jacobian_max_work: 3e9,
            simplex: false,
            seed: 0,
            bab_budget: 10.0,
            bab_max_domains: None,
            pattern_steps: 40,
            pattern_restarts: 4,
        }
    }

    #[test]
    fn counts_follow_the_options() {
        let o = opts(vec![Method::Pgd, Method::Clever, Method::Radius]);
        let (p, c) = (o.pgd(), o.clever());
        assert_eq!(
            gradient_count(&o),
            (p.steps + 1) * 3 * p.restarts + c.batches * c.per_batch
        );
        // ε = 0.01 doubling to 0.08: 3 doublings.
        assert_eq!(radius_balls(&o, 0.08), 2 * (1 + 3 + o.radius_iters));
        assert_eq!(radius_balls(&o, 0.011), 2 * (2 + o.radius_iters));
        let with = opts(vec![Method::Pattern]);
        assert_eq!(gradient_count(&with), (4 * 40 + 1) * 4);
        let none = opts(vec![Method::Local]);
        assert_eq!(gradient_count(&none), 0);
        assert_eq!(radius_balls(&none, 1.0), 0);
    }
}
