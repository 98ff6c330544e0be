//! Validated parameters of the outlier samplers (defaults from the GReg authors' code).

use super::kind::SamplerKind;
use crate::bad_input;
use crate::error::Result;

/// Parameters shared by the samplers; unused ones are ignored by kinds that do not need them.
/// Call [`SamplerParams::check`] once up front; the samplers call it again.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerParams {
    /// Which sampler.
    pub kind: SamplerKind,
    /// B: outliers selected per ID mini-batch (2B with `two_way`).
    pub batch_size: usize,
    /// Clusters asked for; k-means uses k = min(num_cluster, B) (GReg+, DOS). Default 64.
    pub num_cluster: usize,
    /// spt: first energy rank kept, 0-based, ascending energy (GReg+). Default 0.
    pub rank_start: usize,
    /// ept: end of the kept ranks, exclusive, clamped to the pool size (GReg+). Default 10000.
    pub rank_end: usize,
    /// GReg+ two-way sampling: also the highest-energy sample per cluster (feeds L_∇).
    pub two_way: bool,
    /// k-means++ restarts (GReg+, DOS). Default 3.
    pub n_init: usize,
    /// Lloyd iterations per restart. Default 300.
    pub max_iter: usize,
    /// k-means relative tolerance (scikit-learn's). Default 1e-4.
    pub tol: f64,
}

impl SamplerParams {
    /// The GReg authors' defaults for `kind` with B = `batch_size`.
    pub fn new(kind: SamplerKind, batch_size: usize) -> Self {
        Self {
            kind,
            batch_size,
            num_cluster: 64,
            rank_start: 0,
            rank_end: 10_000,
            two_way: false,
            n_init: 3,
            max_iter: 300,
            tol: 1e-4,
        }
    }

    /// Outliers returned per call: B, or 2B for two-way GReg+.
    pub fn output_size(&self) -> usize {
        if self.two_way {
            2 * self.batch_size
        } else {
            self.batch_size
        }
    }

    /// Validates the parameters; errors name the `sampler.*` key at fault.
    pub fn check(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(bad_input!("sampler.batch_size must be at least 1, got 0"));
        }
        if self.two_way && self.kind != SamplerKind::GregPlus {
            return Err(bad_input!(
                "sampler.two_way applies to greg-plus only, not to {}",
                self.kind
            ));
        }
        if self.kind == SamplerKind::GregPlus && self.rank_start >= self.rank_end {
            return Err(bad_input!(
                "sampler.rank_start ({}) must be below sampler.rank_end ({})",
                self.rank_start,
                self.rank_end
            ));
        }
        if self.kind.clusters() {
            if self.num_cluster == 0 {
                return Err(bad_input!("sampler.num_cluster must be at least 1, got 0"));
            }
            if self.n_init == 0 {
                return Err(bad_input!("sampler.n_init must be at least 1, got 0"));
            }
            if self.max_iter == 0 {
                return Err(bad_input!("sampler.max_iter must be at least 1, got 0"));
            }
            if !(self.tol.is_finite() && self.tol >= 0.0) {
                return Err(bad_input!(
                    "sampler.tol must be finite and ≥ 0, got {}",
                    self.tol
                ));
            }
        }
        Ok(())
    }

    /// Clusters used: k = min(num_cluster, B).
    pub fn clusters(&self) -> usize {
        self.num_cluster.min(self.batch_size)
    }
}
