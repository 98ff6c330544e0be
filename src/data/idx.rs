//! IDX files (LeCun et al., the MNIST format), raw or gzip'd: magic `00 00 08 ndim`, `ndim`
//! big-endian u32 dimensions, then the unsigned-byte payload. Only dtype 0x08 (u8) is accepted.

use super::bytes::{Images, checked_product, read_maybe_gzip, u8_to_unit};
use crate::error::{Error, Result};
use std::path::Path;

/// The IDX dtype code for unsigned bytes.
pub const IDX_U8: u8 = 0x08;

/// An IDX array: dimensions and the raw u8 payload (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Dimension sizes, outermost first.
    pub dims: Vec<usize>,
    /// `dims.product()` bytes.
    pub data: Vec<u8>,
}

/// Parses IDX bytes (already gunzipped); `path` only names the file in errors.
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    let (dims, data) = parse_idx_view(path, bytes)?;
    Ok(IdxArray {
        dims,
        data: data.to_vec(),
    })
}

/// Parses IDX bytes without copying: the dimensions and the payload slice.
pub fn parse_idx_view<'a>(path: &Path, bytes: &'a [u8]) -> Result<(Vec<usize>, &'a [u8])> {
    if bytes.is_empty() {
        return Err(Error::bad_file(path, "file is empty"));
    }
    if bytes.len() < 4 {
        return Err(Error::bad_file(
            path,
            "IDX header truncated (under 4 bytes)",
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::bad_file(
            path,
            format!(
                "not an IDX file: magic starts {:02x} {:02x}, expected 00 00",
                bytes[0], bytes[1]
            ),
        ));
    }
    let dtype = bytes[2];
    if dtype != IDX_U8 {
        let name = match dtype {
            0x09 => "i8",
            0x0B => "i16",
            0x0C => "i32",
            0x0D => "f32",
            0x0E => "f64",
            _ => "unknown",
        };
        return Err(Error::bad_file(
            path,
            format!("IDX dtype 0x{dtype:02x} ({name}) is not supported; only 0x08 (unsigned byte)"),
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(Error::bad_file(path, "IDX header declares 0 dimensions"));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(Error::bad_file(
            path,
            format!(
                "IDX header truncated: {ndim} dimensions need {header} bytes, file has {}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let want = checked_product(path, &dims)?;
    let have = bytes.len() - header;
    if have < want {
        return Err(Error::bad_file(
            path,
            format!("IDX payload truncated: dims {dims:?} need {want} bytes, found {have}"),
        ));
    }
    if have > want {
        return Err(Error::bad_file(
            path,
            format!(
                "IDX payload oversized: dims {dims:?} need {want} bytes, found {have} (trailing data)"
            ),
        ));
    }
    Ok((dims, &bytes[header..]))
}

/// Reads an IDX file (raw or gzip'd).
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let bytes = read_maybe_gzip(path)?;
    parse_idx(path, &bytes)
}

/// Interprets an IDX array of shape `(n, h, w)` as grey images scaled by /255.
pub fn idx_to_images(path: &Path, a: &IdxArray) -> Result<Images> {
    idx_view_to_images(path, &a.dims, &a.data)
}

/// [`idx_to_images`] on a borrowed payload.
pub fn idx_view_to_images(path: &Path, dims: &[usize], data: &[u8]) -> Result<Images> {
    match dims {
        &[n, h, w] if n > 0 && h > 0 && w > 0 => Ok(Images {
            shape: [1, h, w],
            pixels: u8_to_unit(data),
        }),
        d => Err(Error::bad_file(
            path,
            format!("IDX images must have 3 non-zero dimensions (n, h, w), found {d:?}"),
        )),
    }
}

/// Interprets an IDX array of shape `(n,)` as class labels.
pub fn idx_to_labels(path: &Path, a: &IdxArray) -> Result<Vec<i64>> {
    match a.dims.as_slice() {
        &[_] => Ok(a.data.iter().map(|&b| b as i64).collect()),
        d => Err(Error::bad_file(
            path,
            format!("IDX labels must have 1 dimension (n,), found {d:?}"),
        )),
    }
}

/// Reads an `(n, h, w)` IDX image file.
pub fn read_idx_images(path: &Path) -> Result<Images> {
    idx_to_images(path, &read_idx(path)?)
}

/// Reads an `(n,)` IDX label file.
pub fn read_idx_labels(path: &Path) -> Result<Vec<i64>> {
    idx_to_labels(path, &read_idx(path)?)
}

/// Serialises a u8 array as IDX bytes (used by tests and by format conversions).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, IDX_U8, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_defects() {
        let p = Path::new("x.idx");
        let data: Vec<u8> = (0..24).map(|i| (i * 10) as u8).collect();
        let a = parse_idx(p, &encode_idx(&[2, 3, 4], &data)).unwrap();
        assert_eq!(a.dims, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        let mut long = encode_idx(&[2, 3, 4], &data);
        long.push(0);
        assert!(
            parse_idx(p, &long)
                .unwrap_err()
                .to_string()
                .contains("oversized")
        );
        let short = &encode_idx(&[2, 3, 4], &data)[..20];
        assert!(
            parse_idx(p, short)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        let mut f32_kind = encode_idx(&[1], &[0, 0, 0, 0]);
        f32_kind[2] = 0x0D;
        assert!(
            parse_idx(p, &f32_kind)
                .unwrap_err()
                .to_string()
                .contains("f32")
        );
        // Overflowing dimensions must not panic or allocate.
        let huge = encode_idx(
            &[u32::MAX as usize, u32::MAX as usize, u32::MAX as usize],
            &[],
        );
        assert!(parse_idx(p, &huge).is_err());
    }
}
