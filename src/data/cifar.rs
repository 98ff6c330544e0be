//! CIFAR-10/100 binary batches (Krizhevsky 2009): records of label byte(s) then 3072 bytes
//! (1024 R, 1024 G, 1024 B, each 32×32 row-major). CIFAR-10 records are 3073 bytes (one label
//! < 10); CIFAR-100 records are 3074 bytes (coarse label < 20, then fine label < 100; the fine
//! label is used).

use super::bytes::{Images, read_file, u8_to_unit};
use crate::error::{Error, Result};
use std::path::Path;

/// Pixel bytes per CIFAR image (3×32×32).
pub const CIFAR_PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR variant a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarKind {
    /// 10 classes, 1 label byte per record.
    Cifar10,
    /// 100 fine classes, 2 label bytes (coarse, fine) per record.
    Cifar100,
}

impl CifarKind {
    /// Label bytes per record.
    pub fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }
}

/// Decides the variant from the file length (and the file name when the length fits both).
pub fn detect_kind(path: &Path, len: usize) -> Result<CifarKind> {
    let fits10 = len > 0 && len.is_multiple_of(CIFAR_PIXELS + 1);
    let fits100 = len > 0 && len.is_multiple_of(CIFAR_PIXELS + 2);
    let name = path.to_string_lossy().to_ascii_lowercase();
    match (fits10, fits100) {
        (true, false) => Ok(CifarKind::Cifar10),
        (false, true) => Ok(CifarKind::Cifar100),
        (true, true) if name.contains("100") => Ok(CifarKind::Cifar100),
        (true, true) if name.contains("10") || name.contains("batch") => Ok(CifarKind::Cifar10),
        (true, true) => Err(Error::bad_file(
            path,
            "length fits both CIFAR-10 and CIFAR-100 records; put 10 or 100 in the file name",
        )),
        (false, false) if len == 0 => Err(Error::bad_file(path, "file is empty")),
        (false, false) => Err(Error::bad_file(
            path,
            format!(
                "{len} bytes is not a whole number of CIFAR records (3073 bytes for CIFAR-10, 3074 for CIFAR-100)"
            ),
        )),
    }
}

/// Parses a CIFAR binary batch of the given variant.
pub fn parse_cifar(path: &Path, bytes: &[u8], kind: CifarKind) -> Result<(Images, Vec<i64>)> {
    let lb = kind.label_bytes();
    let rec = CIFAR_PIXELS + lb;
    if bytes.is_empty() {
        return Err(Error::bad_file(path, "file is empty"));
    }
    if !bytes.len().is_multiple_of(rec) {
        return Err(Error::bad_file(
            path,
            format!(
                "{} bytes is not a whole number of {rec}-byte {kind:?} records",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / rec;
    let mut labels = Vec::with_capacity(n);
    let mut raw = Vec::with_capacity(n * CIFAR_PIXELS);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let (label, limit) = match kind {
            CifarKind::Cifar10 => (r[0], 10),
            CifarKind::Cifar100 => {
                if r[0] >= 20 {
                    return Err(Error::bad_file(
                        path,
                        format!("record {i}: coarse label {} is not below 20", r[0]),
                    ));
                }
                (r[1], 100)
            }
        };
        if label >= limit {
            return Err(Error::bad_file(
                path,
                format!("record {i}: label {label} is not below {limit} ({kind:?})"),
            ));
        }
        labels.push(label as i64);
        raw.extend_from_slice(&r[lb..]);
    }
    Ok((
        Images {
            shape: [3, 32, 32],
            pixels: u8_to_unit(&raw),
        },
        labels,
    ))
}

/// Reads a CIFAR-10 or CIFAR-100 binary batch, detecting the variant.
pub fn read_cifar(path: &Path) -> Result<(Images, Vec<i64>)> {
    let bytes = read_file(path)?;
    let kind = detect_kind(path, bytes.len())?;
    parse_cifar(path, &bytes, kind)
}
