//! The threshold sweep: distinct score values from most-ID (lowest S) to least-ID (highest S).
//!
//! This is sklearn's `_binary_clf_curve` for the default convention (ID positive, detector score
//! -S): one point per distinct value v, with the counts of ID and OOD samples having S ≤ v.

use super::scores::SortedScores;

/// One distinct score value v and the sample counts at and below it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepStep {
    /// The distinct energy value v; the detector "S ≤ v ⇒ ID" is the threshold it stands for.
    pub threshold: f64,
    /// ID samples with S = v.
    pub id_at: usize,
    /// OOD samples with S = v.
    pub ood_at: usize,
    /// ID samples with S ≤ v (true positives of the default convention).
    pub id_le: usize,
    /// OOD samples with S ≤ v (false positives of the default convention).
    pub ood_le: usize,
}

/// Iterator over [`SweepStep`]s, merging the two sorted sides in one linear pass.
#[derive(Debug, Clone)]
pub struct Sweep<'a> {
    id: &'a [f64],
    ood: &'a [f64],
    i: usize,
    j: usize,
}

impl<'a> Sweep<'a> {
    /// Starts the sweep below the smallest score (nothing accepted yet).
    pub fn new(scores: &'a SortedScores) -> Self {
        Self {
            id: scores.id(),
            ood: scores.ood(),
            i: 0,
            j: 0,
        }
    }
}

/// Advances `pos` past every entry of the sorted `xs` equal to `v`.
fn skip_equal(xs: &[f64], pos: &mut usize, v: f64) {
    while let Some(&x) = xs.get(*pos) {
        if x != v {
            break;
        }
        *pos += 1;
    }
}

impl Iterator for Sweep<'_> {
    type Item = SweepStep;

    fn next(&mut self) -> Option<SweepStep> {
        let v = match (self.id.get(self.i), self.ood.get(self.j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => return None,
        };
        let (i0, j0) = (self.i, self.j);
        skip_equal(self.id, &mut self.i, v);
        skip_equal(self.ood, &mut self.j, v);
        Some(SweepStep {
            threshold: v,
            id_at: self.i - i0,
            ood_at: self.j - j0,
            id_le: self.i,
            ood_le: self.j,
        })
    }
}

/// Compensated (Neumaier) sum, so that long sums of precision terms stay accurate to ~1 ulp.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CompensatedSum {
    sum: f64,
    carry: f64,
}

impl CompensatedSum {
    /// Adds one term.
    pub(crate) fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.carry += (self.sum - t) + x;
        } else {
            self.carry += (x - t) + self.sum;
        }
        self.sum = t;
    }

    /// The compensated total.
    pub(crate) fn total(self) -> f64 {
        self.sum + self.carry
    }
}
