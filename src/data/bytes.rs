//! Byte-level helpers shared by the readers: reading (and transparently gunzipping) a file,
//! SHA-256 digests, and the u8 → [0,1] pixel scaling.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The two magic bytes that start every gzip stream (RFC 1952 §2.3.1).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a whole file; a missing or unreadable file is an I/O error naming it.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

/// Returns `bytes` decompressed when they are a gzip stream, else unchanged.
pub fn gunzip_if_gzip(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4));
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| Error::bad_file(path, format!("corrupt gzip stream: {e}")))?;
    Ok(out)
}

/// Reads a file and gunzips it when it starts with the gzip magic; an empty file is a `BadFile`.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = read_file(path)?;
    if raw.is_empty() {
        return Err(Error::bad_file(path, "file is empty"));
    }
    let out = gunzip_if_gzip(path, raw)?;
    if out.is_empty() {
        return Err(Error::bad_file(path, "gzip stream decompresses to nothing"));
    }
    Ok(out)
}

/// Lower-case hex SHA-256 of `bytes` (FIPS 180-4).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lower-case hex SHA-256 of the concatenation of several byte strings, in order.
pub fn sha256_concat_hex<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Lower-case hex SHA-256 of a file's bytes, streamed (the one implementation: `model` and
/// `evidence` re-export it).
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(hex::encode(h.finalize()))
}

/// 8-bit intensities scaled to [0,1] by /255 (the torchvision `ToTensor` convention).
pub fn u8_to_unit(bytes: &[u8]) -> Vec<f32> {
    const INV: f32 = 1.0 / 255.0;
    bytes.iter().map(|&b| b as f32 * INV).collect()
}

/// Checks that float pixels are finite and already in [0,1]; names the first offender.
pub fn check_unit_floats(path: &Path, values: impl Iterator<Item = f64>) -> Result<()> {
    for (i, v) in values.enumerate() {
        if !v.is_finite() {
            return Err(Error::bad_file(
                path,
                format!("value {i} is {v} (pixels must be finite)"),
            ));
        }
        if !(0.0..=1.0).contains(&v) {
            return Err(Error::bad_file(
                path,
                format!(
                    "value {i} is {v}: float pixels must already be in [0,1] (scale them before saving)"
                ),
            ));
        }
    }
    Ok(())
}

/// Images decoded by a reader: NCHW pixels in [0,1] and the per-image shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    /// `[c, h, w]` of each image.
    pub shape: [usize; 3],
    /// `n * c * h * w` values in [0,1], NCHW.
    pub pixels: Vec<f32>,
}

impl Images {
    /// Number of images.
    pub fn len(&self) -> usize {
        let d: usize = self.shape.iter().product();
        self.pixels.len().checked_div(d).unwrap_or(0)
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Product of dimensions with overflow reported as a `BadFile`.
pub fn checked_product(path: &Path, dims: &[usize]) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| Error::bad_file(path, format!("dimensions {dims:?} overflow")))
    })
}
