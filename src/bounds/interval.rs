//! Boxes of vectors: elementwise lower and upper bounds `lo ≤ x ≤ hi`.

use super::round::{max_nan, min_nan, next_down, next_up};
use crate::error::{Error, Result};

/// The box {x : lo ≤ x ≤ hi} (elementwise), the object interval bound propagation carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
}

impl Interval {
    /// A box from its bounds; errors when lengths differ, a bound is NaN or lo > hi.
    pub fn new(lo: Vec<f64>, hi: Vec<f64>) -> Result<Self> {
        if lo.len() != hi.len() {
            return Err(Error::Internal(format!(
                "interval bounds of lengths {} and {}",
                lo.len(),
                hi.len()
            )));
        }
        if let Some(i) = (0..lo.len()).find(|&i| lo[i].is_nan() || hi[i].is_nan() || lo[i] > hi[i])
        {
            return Err(Error::Internal(format!(
                "interval entry {i} is empty or NaN: [{}, {}]",
                lo[i], hi[i]
            )));
        }
        Ok(Self { lo, hi })
    }

    /// The degenerate box {x}.
    pub fn point(x: &[f64]) -> Self {
        Self {
            lo: x.to_vec(),
            hi: x.to_vec(),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.lo.len()
    }

    /// True for a box in zero dimensions.
    pub fn is_empty(&self) -> bool {
        self.lo.is_empty()
    }

    /// Centre c and radius r with [c − r, c + r] ⊇ [lo, hi] (r rounded up).
    pub fn center_radius(&self) -> (Vec<f64>, Vec<f64>) {
        let c: Vec<f64> = self
            .lo
            .iter()
            .zip(&self.hi)
            .map(|(l, h)| 0.5 * l + 0.5 * h)
            .collect();
        let r = (0..c.len())
            .map(|i| max_nan(next_up(max_nan(self.hi[i] - c[i], c[i] - self.lo[i])), 0.0))
            .collect();
        (c, r)
    }

    /// Elementwise sum of two boxes, rounded outward (residual joins).
    pub fn add(&self, other: &Interval) -> Result<Interval> {
        if self.len() != other.len() {
            return Err(Error::Internal(format!(
                "adding boxes of lengths {} and {}",
                self.len(),
                other.len()
            )));
        }
        let lo = (0..self.len())
            .map(|i| next_down(self.lo[i] + other.lo[i]))
            .collect();
        let hi = (0..self.len())
            .map(|i| next_up(self.hi[i] + other.hi[i]))
            .collect();
        Ok(Interval { lo, hi })
    }

    /// The intersection with another box of the same length (both must contain the true set).
    pub fn intersect(&self, other: &Interval) -> Interval {
        let lo = (0..self.len())
            .map(|i| max_nan(self.lo[i], other.lo[i]))
            .collect();
        let hi = (0..self.len())
            .map(|i| min_nan(self.hi[i], other.hi[i]))
            .collect();
        Interval { lo, hi }
    }

    /// True when x lies in the box.
    pub fn contains(&self, x: &[f64]) -> bool {
        x.len() == self.len() && (0..x.len()).all(|i| self.lo[i] <= x[i] && x[i] <= self.hi[i])
    }

    /// Per entry, the largest absolute value in the box: max(|lo|, |hi|).
    pub fn abs_max(&self) -> Vec<f64> {
        self.lo
            .iter()
            .zip(&self.hi)
            .map(|(l, h)| max_nan(l.abs(), h.abs()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn center_radius_covers_the_box() {
        let b = Interval::new(vec![-1.0, 0.1, 1e300], vec![3.0, 0.3, 1.7e308]).unwrap();
        let (c, r) = b.center_radius();
        for i in 0..3 {
            assert!(c[i] - r[i] <= b.lo[i] && c[i] + r[i] >= b.hi[i]);
        }
        assert!(Interval::new(vec![1.0], vec![0.0]).is_err());
        assert!(Interval::new(vec![f64::NAN], vec![0.0]).is_err());
    }

    #[test]
    fn nan_entries_stay_nan() {
        let nan = Interval {
            lo: vec![f64::NAN, 0.0],
            hi: vec![1.0, f64::NAN],
        };
        assert!(nan.abs_max().iter().all(|v| v.is_nan()));
        let (_, r) = nan.center_radius();
        assert!(r.iter().all(|v| v.is_nan()));
        let i = nan.intersect(&Interval::point(&[0.5, 0.5]));
        assert!(i.lo[0].is_nan() && i.hi[1].is_nan());
    }
}
