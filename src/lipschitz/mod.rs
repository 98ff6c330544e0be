//! Lipschitz analysis of the energy score S(x) = −T·logsumexp(f(x)/T): empirical lower bounds
//! (gradient norm, ball sampling, PGD, CLEVER), certified global and local upper bounds, and
//! certified radii (theory.md §1–2; proofs in proofs/lipschitz_*.md).

pub mod global;
pub mod gradient_zonotope;
pub mod operator_norm;
pub mod pool_pairs;

pub use crate::bounds::{Ball, Norm};
pub use global::{GlobalBound, global_bound};
pub mod bab;
pub mod ball_memo;
pub mod cholesky_certificate;
pub mod clever;
pub mod cost_estimate;
pub mod empirical;
pub mod f32_margin;
pub mod grad_backward_batch;
pub mod jacobian_lbp;
pub mod jacobian_ops;
pub mod jacobian_recursion;
pub mod local;
pub mod local_product;
pub mod masked_norm;
pub mod merge;
pub mod nelder_mead;
pub mod options;
pub mod output;
pub mod pattern_search;
pub mod radius;
pub mod record;
pub mod recurjac;
pub mod run;
pub mod sample;
pub mod scaled_product;
pub mod split_bound;
pub mod summary;

pub use options::{BoundsKind, Method, Options};
pub use run::{Config, run};
