//! The Φ⁻¹-Lipschitz lemma for bounded smoothed functions (Salman et al. 2019, Lemma 2;
//! Levine et al. 2020): if h = E_δ[H(x+δ)] with H: R^d → [0,1] and δ ~ N(0, σ²I), then
//! x ↦ Φ⁻¹(h(x)) is (1/σ)-Lipschitz in ℓ2. Hence, for ‖δ‖₂ ≤ r,
//! Φ(Φ⁻¹(h(x)) - r/σ) ≤ h(x+δ) ≤ Φ(Φ⁻¹(h(x)) + r/σ)  (theory.md §4).
//!
//! Rounding: radii are shrunk by the relative margin [`RADIUS_MARGIN`]; bounds at a radius are
//! moved outward by the same relative margin (proofs/smoothing_score.md).

use super::normal::{phi, phi_inv};

/// Relative margin that shrinks every radius and widens every bound at a radius.
pub const RADIUS_MARGIN: f64 = 1e-9;

/// Shrinks a non-negative radius by [`RADIUS_MARGIN`].
pub fn shrink_radius(r: f64) -> f64 {
    (r * (1.0 - RADIUS_MARGIN)).max(0.0)
}

/// Radius to which "h < t" is certified from an upper confidence bound h_hi < t:
/// R = σ·(Φ⁻¹(t) - Φ⁻¹(h_hi)); `None` when h_hi ≥ t.
pub fn radius_below(h_hi: f64, t: f64, sigma: f64) -> Option<f64> {
    (h_hi < t).then(|| shrink_radius(sigma * (phi_inv(t) - phi_inv(h_hi))))
}

/// Radius to which "h > t" is certified from a lower confidence bound h_lo > t:
/// R = σ·(Φ⁻¹(h_lo) - Φ⁻¹(t)); `None` when h_lo ≤ t.
pub fn radius_above(h_lo: f64, t: f64, sigma: f64) -> Option<f64> {
    (h_lo > t).then(|| shrink_radius(sigma * (phi_inv(h_lo) - phi_inv(t))))
}

/// Upper bound on h over the ℓ2 ball of radius r: Φ(Φ⁻¹(h_hi) + r/σ), rounded up.
pub fn upper_at_radius(h_hi: f64, r: f64, sigma: f64) -> f64 {
    let v = phi(phi_inv(h_hi) + r / sigma);
    (v * (1.0 + RADIUS_MARGIN) + f64::MIN_POSITIVE).min(1.0)
}

/// Lower bound on h over the ℓ2 ball of radius r: Φ(Φ⁻¹(h_lo) - r/σ), rounded down.
pub fn lower_at_radius(h_lo: f64, r: f64, sigma: f64) -> f64 {
    let v = phi(phi_inv(h_lo) - r / sigma);
    (v * (1.0 - RADIUS_MARGIN)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_and_ball_bound_are_consistent() {
        let (t, sigma) = (0.6, 0.25);
        let r = radius_below(0.2, t, sigma).unwrap();
        assert!(r > 0.0);
        // At the certified radius the worst-case upper bound reaches t from below.
        let u = upper_at_radius(0.2, r, sigma);
        assert!((u - t).abs() < 1e-8, "{u}");
        assert!(radius_below(0.6, t, sigma).is_none());
        let r2 = radius_above(0.9, t, sigma).unwrap();
        let l = lower_at_radius(0.9, r2, sigma);
        assert!((l - t).abs() < 1e-8, "{l}");
        assert!(radius_above(0.6, t, sigma).is_none());
        assert_eq!(
            upper_at_radius(0.3, 0.0, sigma),
            0.3 * (1.0 + RADIUS_MARGIN) + f64::MIN_POSITIVE
        );
    }
}
