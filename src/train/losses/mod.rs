//! The loss terms, one per file: L = CE + λ_S·L_S + λ_∇·L_∇ (method.md), plus the baselines'
//! outlier losses (Outlier Exposure, absent-class CE and the DOS objective built on it).

mod absent_class;
mod cross_entropy;
mod energy_margin;
mod grad_penalty;
mod outlier_exposure;

pub use absent_class::{absent_class_ce, dos_objective};
pub use cross_entropy::cross_entropy;
pub use energy_margin::energy_margin;
pub use grad_penalty::{InputGradient, PenaltyForm, PenaltyNorm, PenaltyTerms, grad_penalty};
pub use outlier_exposure::outlier_exposure;
