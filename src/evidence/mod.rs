//! Evidence: run manifests, number formatting, reports (atomic output lives in `crate::atomic`).

pub mod claims;
pub mod csv_table;
pub mod manifest;
pub mod number;
pub mod record_csv;
pub mod report;

pub use crate::atomic::{with_atomic_file, write_atomic, write_csv_atomic};
pub use csv_table::CsvTable;
pub use manifest::{DatasetRecord, Manifest, sha256_file};
pub use number::fmt_f64;
