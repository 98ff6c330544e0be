//! oodcert: certified out-of-distribution detection with the energy score.
//!
//! The modules read as the pipeline: data → model → train → score/metrics → lipschitz/bounds →
//! smoothing → verify → evidence; `cli` is a thin layer over them.

pub mod allocator;
pub mod atomic;
pub mod bounds;
pub mod cli;
pub mod data;
pub mod device;
pub mod error;
pub mod evaluation;
pub mod evidence;
pub mod lipschitz;
pub mod metrics;
pub mod model;
pub mod score;
pub mod smoothing;
pub mod train;
pub mod verify;

pub use error::{Error, Result};
