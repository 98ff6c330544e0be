//! The candidate pool a sampler chooses from: penultimate features (n×d, row-major) and energies.

use crate::bad_input;
use crate::error::Result;

/// A validated view of the candidate pool: n energies, n·d features (d = 0 when the sampler does
/// not cluster), all finite.
#[derive(Debug, Clone, Copy)]
pub struct CandidatePool<'a> {
    features: &'a [f32],
    energies: &'a [f32],
    d: usize,
}

impl<'a> CandidatePool<'a> {
    /// Checks that `features` holds n·d values for the n = `energies.len()` candidates and that
    /// every value is finite (a non-finite energy means the model diverged).
    pub fn new(features: &'a [f32], energies: &'a [f32], d: usize) -> Result<Self> {
        let n = energies.len();
        let len = n
            .checked_mul(d)
            .ok_or_else(|| bad_input!("candidate pool: n·d = {n}·{d} overflows"))?;
        if features.len() != len {
            return Err(bad_input!(
                "candidate pool: {} feature values for {n} candidates of dimension {d} (expected {len})",
                features.len()
            ));
        }
        if let Some(i) = energies.iter().position(|e| !e.is_finite()) {
            return Err(bad_input!(
                "candidate pool: energy of candidate {i} is {} (not finite)",
                energies[i]
            ));
        }
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(bad_input!(
                "candidate pool: feature {} of candidate {} is {} (not finite)",
                i % d,
                i / d,
                features[i]
            ));
        }
        Ok(Self {
            features,
            energies,
            d,
        })
    }

    /// Number of candidates n.
    pub fn len(&self) -> usize {
        self.energies.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.energies.is_empty()
    }

    /// Feature dimension d.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Energies S(x) of the candidates.
    pub fn energies(&self) -> &'a [f32] {
        self.energies
    }

    /// Features, n×d row-major.
    pub fn features(&self) -> &'a [f32] {
        self.features
    }

    /// Candidate indices by ascending energy; equal energies keep index order (stable).
    pub fn energy_ranks(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| self.energies[a].total_cmp(&self.energies[b]));
        order
    }

    /// Features of the candidates `idx`, gathered into a |idx|×d row-major matrix.
    pub fn gather_features(&self, idx: &[usize]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(idx.len() * self.d);
        for &i in idx {
            let row = self
                .features
                .get(i * self.d..(i + 1) * self.d)
                .ok_or_else(|| bad_input!("candidate pool: index {i} out of {}", self.len()))?;
            out.extend_from_slice(row);
        }
        Ok(out)
    }
}
