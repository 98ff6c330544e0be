//! The clip range [a, b] of the bounded score S_c = min(max(S, a), b) and its [0,1] rescaling
//! h = (S_c - a)/(b - a) (theory.md §4).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The clip range a < b, both finite, in score (energy) units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClipRange {
    /// a: scores below are raised to a.
    pub lo: f64,
    /// b: scores above are lowered to b.
    pub hi: f64,
}

impl ClipRange {
    /// Validates a < b, both finite.
    pub fn new(lo: f64, hi: f64) -> Result<Self> {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(Error::BadInput(format!(
                "clip range needs finite a < b, got a = {lo}, b = {hi}"
            )));
        }
        Ok(ClipRange { lo, hi })
    }

    /// h = (min(max(s, a), b) - a)/(b - a) ∈ [0,1].
    pub fn to_unit(&self, s: f64) -> f64 {
        ((s.clamp(self.lo, self.hi) - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
    }

    /// a + (b - a)·h: back to score units (for display; certificates work on h).
    pub fn from_unit(&self, h: f64) -> f64 {
        self.lo + (self.hi - self.lo) * h
    }

    /// The threshold t = (γ' - a)/(b - a) of a smoothed-score threshold γ'; errors unless a < γ' < b.
    pub fn unit_threshold(&self, gamma_smoothed: f64) -> Result<f64> {
        if !(gamma_smoothed > self.lo && gamma_smoothed < self.hi) {
            return Err(Error::BadInput(format!(
                "the smoothed threshold gamma' = {gamma_smoothed} is not inside the clip range [{}, {}]; \
                 widen the clip range (--clip-quantiles or --clip)",
                self.lo, self.hi
            )));
        }
        Ok(self.to_unit(gamma_smoothed))
    }
}

/// The q-quantile of `values` as an order statistic: the ⌈q·m⌉-th smallest (1-based, at least the
/// first), m = `values.len()`. Errors on empty input, NaN, or q ∉ [0,1].
pub fn order_quantile(values: &[f64], q: f64) -> Result<f64> {
    if values.is_empty() {
        return Err(Error::BadInput("no scores to take a quantile of".into()));
    }
    if !(0.0..=1.0).contains(&q) {
        return Err(Error::BadInput(format!(
            "quantile level {q} is outside [0, 1]"
        )));
    }
    if values.iter().any(|v| v.is_nan()) {
        return Err(Error::Internal("NaN score in a quantile".into()));
    }
    let m = values.len();
    let k = ((q * m as f64).ceil() as usize).clamp(1, m);
    let mut w = values.to_vec();
    let (_, v, _) = w.select_nth_unstable_by(k - 1, f64::total_cmp);
    Ok(*v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_and_threshold() {
        let c = ClipRange::new(-10.0, -2.0).unwrap();
        assert_eq!(c.to_unit(-20.0), 0.0);
        assert_eq!(c.to_unit(0.0), 1.0);
        assert_eq!(c.to_unit(-6.0), 0.5);
        assert_eq!(c.unit_threshold(-4.0).unwrap(), 0.75);
        assert!(c.unit_threshold(-2.0).is_err());
        assert!(ClipRange::new(1.0, 1.0).is_err());
        assert!(ClipRange::new(f64::NAN, 1.0).is_err());
    }

    #[test]
    fn quantiles_are_order_statistics() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(order_quantile(&v, 0.0).unwrap(), 1.0);
        assert_eq!(order_quantile(&v, 0.2).unwrap(), 1.0);
        assert_eq!(order_quantile(&v, 0.21).unwrap(), 2.0);
        assert_eq!(order_quantile(&v, 1.0).unwrap(), 5.0);
        assert!(order_quantile(&[], 0.5).is_err());
    }
}
