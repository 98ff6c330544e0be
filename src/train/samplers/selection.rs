//! What a sampler returns: pool indices, split by the loss term they feed.

/// Selected candidate indices (into the pool), never duplicated. `low` feeds the energy term L_S
/// (and, one-way, every term); `high` is non-empty only for two-way GReg+ and feeds L_∇.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// Low-energy (most ID-like) picks and their random fill; B of them.
    pub low: Vec<usize>,
    /// Two-way GReg+ only: high-energy (most confidently OOD) picks and their random fill; B.
    pub high: Vec<usize>,
}

impl Selection {
    /// All selected indices, `low` then `high`.
    pub fn indices(&self) -> Vec<usize> {
        self.low.iter().chain(&self.high).copied().collect()
    }

    /// Number of selected indices.
    pub fn len(&self) -> usize {
        self.low.len() + self.high.len()
    }

    /// Whether nothing was selected.
    pub fn is_empty(&self) -> bool {
        self.low.is_empty() && self.high.is_empty()
    }
}
