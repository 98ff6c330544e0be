//! Evidence: atomic outputs, CSV schemas, run manifests (and, later, reports).

pub mod atomic;
pub mod manifest;
pub mod report;

pub use atomic::{with_atomic_file, write_atomic, write_csv_atomic};
pub use manifest::{DatasetRecord, Manifest, sha256_file};
