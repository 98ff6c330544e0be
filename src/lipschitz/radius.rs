//! Certified radii (theory.md §2): with margin m = |γ − S(x)| and L(x, ε) a certified local
//! Lipschitz bound on B(x, ε), every x' with ‖x' − x‖ < ε* = min(ε, m/L) gets the decision of x.
//! The bound-propagation route certifies B(x, r) directly when the bounds of S over it stay on
//! x's side of γ. Both are searched over r up to a `radius_max` (not capped by ε): doubling from ε,
//! then bisection; every radius evaluated yields a valid certificate, and the largest one is kept.

use crate::bounds::round::next_down;

/// ε* = min(ε, m / L), rounded down (0 when L is not finite or m ≤ 0).
pub fn lipschitz_radius(margin: f64, lip: f64, eps: f64) -> f64 {
    if margin.is_nan() || margin <= 0.0 || !lip.is_finite() {
        return 0.0;
    }
    if lip <= 0.0 {
        return eps;
    }
    eps.min(next_down(next_down(margin) / lip))
}

/// Bisection over r ∈ (0, r_max] for the largest certifiable radius. `certify(r)` returns a
/// radius certified using the ball of radius r (≤ r, or 0). Returns the best radius found.
pub fn search_radius(
    certify: impl FnMut(f64) -> crate::error::Result<f64>,
    r_max: f64,
    iters: usize,
) -> crate::error::Result<f64> {
    search_radius_from(certify, r_max, r_max, iters)
}

/// The largest certifiable radius in (0, r_max], searched from `start`: if the ball of radius
/// `start` certifies itself, r doubles (capped at r_max) until a ball does not; then `iters`
/// bisection steps between the largest self-certified radius (or the best certificate seen)
/// and the smallest radius that failed. `certify(r)` returns a radius certified using the ball of
/// radius r (≤ r, or 0); the maximum over every evaluated r is returned (each is a certificate on
/// its own, so neither monotonicity nor the search order matters for soundness).
pub fn search_radius_from(
    mut certify: impl FnMut(f64) -> crate::error::Result<f64>,
    start: f64,
    r_max: f64,
    iters: usize,
) -> crate::error::Result<f64> {
    if r_max.is_nan() || r_max <= 0.0 {
        return Ok(0.0);
    }
    let start = if start > 0.0 { start.min(r_max) } else { r_max };
    let mut best = certify(start)?;
    let mut hi = start;
    if best >= start {
        let mut r = start;
        loop {
            if r >= r_max {
                return Ok(best);
            }
            r = (2.0 * r).min(r_max);
            let c = certify(r)?;
            best = best.max(c);
            if c < r {
                hi = r;
                break;
            }
        }
    }
    let mut lo = best;
    for _ in 0..iters {
        let mid = 0.5 * (lo + hi);
        if !(mid > lo && mid < hi) {
            break;
        }
        let c = certify(mid)?;
        best = best.max(c);
        if c >= mid {
            lo = mid;
        } else {
            hi = mid;
            lo = lo.max(c);
        }
    }
    Ok(best)
}

use super::local::PreBounds;
use crate::bounds::energy::energy_bounds;
use crate::bounds::{Ball, Net};
use crate::error::Result;

/// Bounds [S_lo, S_hi] of the energy over the ball by IBP (logit box → monotone energy bound).
pub fn energy_bounds_ibp(net: &Net, ball: &Ball, temperature: f64) -> Result<(f64, f64)> {
    // `pre_bounds` (IBP ∩ the Lipschitz boxes), as the per-ball memo uses.
    let (_, logits) = super::local::pre_bounds(net, ball, super::local::PreBounds::Ibp)?;
    Ok(energy_bounds(&logits, temperature))
}

pub use crate::score::is_ood;

/// Bounds of S over the ball from CROWN: the monotone bound on the CROWN ∩ IBP logit box, and
/// from above also the tangent plane of the concave S at the centre's logits z₀,
/// S(z) ≤ S(z₀) + p₀ᵀz₀ − p₀ᵀz, whose last term CROWN bounds over the ball directly.
pub fn energy_bounds_crown(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    max_dim: usize,
) -> Result<(f64, f64)> {
    // `pre_bounds` (CROWN ∩ IBP ∩ the Lipschitz boxes), as the per-ball memo uses.
    let (traces, logits) =
        super::local::pre_bounds(net, ball, super::local::PreBounds::Crown { max_dim })?;
    energy_bounds_crown_on(net, ball, &traces, &logits, temperature)
}

/// [S_lo, S_hi] of the energy over the ball with the pre-activation bounds `pre`
/// ([`energy_bounds_ibp`] or [`energy_bounds_crown`]).
pub fn energy_bounds_with(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    pre: PreBounds,
) -> Result<(f64, f64)> {
    let (traces, logits) = super::local::pre_bounds(net, ball, pre)?;
    energy_bounds_on(net, ball, pre, &traces, &logits, temperature)
}

/// [`energy_bounds_with`] on a given trace of the ball and its logit box (from `pre_bounds`
/// with the same `pre`, or a trace shared with the other bounds of the same ball).
pub fn energy_bounds_on(
    net: &Net,
    ball: &Ball,
    pre: PreBounds,
    traces: &[crate::bounds::Trace],
    logits: &crate::bounds::Interval,
    temperature: f64,
) -> Result<(f64, f64)> {
    match pre {
        PreBounds::Ibp => Ok(energy_bounds(logits, temperature)),
        PreBounds::Crown { .. } => energy_bounds_crown_on(net, ball, traces, logits, temperature),
        PreBounds::AlphaCrown { iters, .. } => {
            energy_bounds_tangent(net, ball, traces, logits, temperature, iters)
        }
    }
}

/// [`energy_bounds_crown`] on a given CROWN trace of the ball and its logit box (from
/// `crown_trace`, or a trace shared with the other bounds of the same ball).
pub fn energy_bounds_crown_on(
    net: &Net,
    ball: &Ball,
    traces: &[crate::bounds::Trace],
    logits: &crate::bounds::Interval,
    temperature: f64,
) -> Result<(f64, f64)> {
    energy_bounds_tangent(net, ball, traces, logits, temperature, 0)
}

/// [`energy_bounds_crown_on`] with the tangent plane's CROWN query also bounded by α-CROWN with
/// `alpha_iters` steps on a network without residual blocks (`bounds::alpha_crown`; 0: CROWN
/// only); the larger of the two certified lower bounds is used.
fn energy_bounds_tangent(
    net: &Net,
    ball: &Ball,
    traces: &[crate::bounds::Trace],
    logits: &crate::bounds::Interval,
    temperature: f64,
    alpha_iters: usize,
) -> Result<(f64, f64)> {
    use crate::bounds::round::{dot_err, next_up};
    let (lo, hi) = energy_bounds(logits, temperature);
    let z0 = net.forward(&ball.center)?;
    let p0: Vec<f64> = crate::bounds::energy::energy_grad(&z0, temperature)
        .iter()
        .map(|v| -v)
        .collect();
    let s0 = crate::bounds::energy::energy(&z0, temperature);
    let mut low = crate::bounds::crown::crown_lower(&net.nodes, traces, ball, vec![p0.clone()])?[0];
    if alpha_iters > 0 && crate::bounds::alpha_crown::applies(&net.nodes) {
        let nodes = &net.nodes;
        let a = crate::bounds::alpha_crown::alpha_lower(nodes, traces, ball, &p0, 1, alpha_iters)?;
        low = low.max(a[0]);
    }
    // S(z₀) + p₀ᵀz₀ is computed in f64: widen by a generous relative allowance.
    let k = z0.len();
    let dot: f64 = p0.iter().zip(&z0).map(|(p, z)| p * z).sum();
    let mag: f64 = p0.iter().zip(&z0).map(|(p, z)| (p * z).abs()).sum::<f64>() + s0.abs();
    let tangent =
        next_up(s0 + dot - low + (dot_err(k) + 64.0 * f64::EPSILON) * (mag + low.abs() + 1.0));
    Ok((lo, hi.min(tangent)))
}

/// The bound-propagation certificate at radius r: r if S's bounds on B(x, r) stay on x's side
/// of γ (S_lo > γ for OOD, S_hi ≤ γ for ID), else 0.
pub fn bound_prop_certify(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    score: f64,
    gamma: f64,
) -> Result<f64> {
    bound_prop_certify_with(net, ball, temperature, score, gamma, PreBounds::Ibp)
}

/// [`bound_prop_certify`] with IBP or CROWN bounds on S.
pub fn bound_prop_certify_with(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    score: f64,
    gamma: f64,
    pre: PreBounds,
) -> Result<f64> {
    let (lo, hi) = energy_bounds_with(net, ball, temperature, pre)?;
    let ok = if is_ood(score, gamma) {
        lo > gamma
    } else {
        hi <= gamma
    };
    Ok(if ok { ball.eps } else { 0.0 })
}

/// The Lipschitz certificate using the ball of radius r: min(r, |γ − S(x)| / L(x, r)), L the
/// smaller of the local (FastLip) and global bounds.
pub fn lipschitz_certify(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    score: f64,
    gamma: f64,
    global: f64,
) -> Result<f64> {
    lipschitz_certify_with(net, ball, temperature, score, gamma, global, PreBounds::Ibp)
}

/// [`lipschitz_certify`] with the chosen pre-activation bounds.
pub fn lipschitz_certify_with(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    score: f64,
    gamma: f64,
    global: f64,
    pre: PreBounds,
) -> Result<f64> {
    let local =
        super::local::fastlip_with(net, ball, temperature, super::local::Head::Box, pre)?.value;
    Ok(lipschitz_radius(
        (gamma - score).abs(),
        local.min(global),
        ball.eps,
    ))
}

#[cfg(test)]
mod tests {
    use super::search_radius_from;

    /// A ball of radius r certifies min(r, m / L(r)) with L growing in r, and the search finds
    /// the fixed point r* = m / L(r*) beyond ε, never returns more than a value `certify`
    /// returned, and stops at r_max.
    #[test]
    fn search_goes_beyond_eps_and_returns_an_evaluated_certificate() {
        let lip = |r: f64| 1.0 + r * r; // r* solves r (1 + r²) = m
        for (m, eps, r_max) in [(2.0, 0.1, 8.0), (0.05, 0.3, 8.0), (100.0, 0.1, 3.0)] {
            let mut seen = Vec::new();
            let best = search_radius_from(
                |r| {
                    let c = r.min(m / lip(r));
                    seen.push(c);
                    Ok(c)
                },
                eps,
                r_max,
                30,
            )
            .unwrap();
            assert!(seen.contains(&best), "{best} was never certified");
            // The exact fixed point, by bisection on r (1 + r²) = m.
            let (mut lo, mut hi) = (0.0f64, 10.0f64);
            for _ in 0..200 {
                let mid = 0.5 * (lo + hi);
                if mid * lip(mid) <= m {
                    lo = mid
                } else {
                    hi = mid
                }
            }
            let want = lo.min(r_max);
            assert!(
                best <= want + 1e-12 && best >= want - 1e-6,
                "{m} {eps}: {best} vs {want}"
            );
        }
        // A ball that always certifies itself: r_max.
        assert_eq!(search_radius_from(Ok, 0.3, 8.0, 10).unwrap(), 8.0);
        // Nothing certified: 0; ε = 0 starts at r_max.
        assert_eq!(search_radius_from(|_| Ok(0.0), 0.0, 8.0, 10).unwrap(), 0.0);
        assert_eq!(search_radius_from(Ok, 0.0, 8.0, 10).unwrap(), 8.0);
    }
}
