//! NumPy `.npy` files (format versions 1.0, 2.0, 3.0; NEP 1): magic `\x93NUMPY`, a Python-dict
//! header with `descr`, `fortran_order`, `shape`, then the C-ordered payload.
//! Accepted dtypes: `|u1` (pixels /255), `<f4`/`<f8` (pixels already in [0,1]), `<i8`/`<i4`
//! (labels). Fortran order is refused: convert with `np.ascontiguousarray` first.

use super::bytes::{Images, check_unit_floats, checked_product, read_maybe_gzip, u8_to_unit};
use crate::error::{Error, Result};
use std::path::Path;

/// The six bytes that start every `.npy` file.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The typed payload of an `.npy` array.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `|u1`
    U8(Vec<u8>),
    /// `<f4`
    F32(Vec<f32>),
    /// `<f8`
    F64(Vec<f64>),
    /// `<i4` or `<i8`, widened
    I64(Vec<i64>),
}

/// A parsed `.npy` array (always C order).
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The array shape.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: NpyData,
}

/// The three header fields we need.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the Python dict literal of an `.npy` header.
fn parse_header(path: &Path, text: &str) -> Result<Header> {
    let bad = |m: String| Error::bad_file(path, format!("bad NPY header: {m}"));
    let t = text.trim_end_matches(['\n', ' ', '\0']).trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| bad(format!("not a dict literal: {t:?}")))?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let q = rest.chars().next().unwrap_or(' ');
        if q != '\'' && q != '"' {
            return Err(bad(format!("expected a quoted key at {rest:?}")));
        }
        let end = rest[1..]
            .find(q)
            .ok_or_else(|| bad("unterminated key".into()))?
            + 1;
        let key = &rest[1..end];
        rest = rest[end + 1..].trim_start();
        rest = rest
            .strip_prefix(':')
            .ok_or_else(|| bad(format!("expected ':' after key {key:?}")))?
            .trim_start();
        // The value runs to the matching ',' at depth 0 (tuples may contain commas).
        let mut depth = 0i32;
        let mut quote: Option<char> = None;
        let mut cut = rest.len();
        for (i, c) in rest.char_indices() {
            match (quote, c) {
                (Some(qq), c) if c == qq => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '(' | '[' | '{') => depth += 1,
                (None, ')' | ']' | '}') => depth -= 1,
                (None, ',') if depth == 0 => {
                    cut = i;
                    break;
                }
                _ => {}
            }
        }
        let value = rest[..cut].trim();
        rest = rest.get(cut + 1..).unwrap_or("").trim_start();
        match key {
            "descr" => {
                let v = value
                    .strip_prefix(['\'', '"'])
                    .and_then(|s| s.strip_suffix(['\'', '"']))
                    .ok_or_else(|| {
                        bad(format!("descr {value} is not a simple dtype string (structured dtypes are not supported)"))
                    })?;
                descr = Some(v.to_string());
            }
            "fortran_order" => {
                fortran = Some(match value {
                    "True" => true,
                    "False" => false,
                    v => {
                        return Err(bad(format!(
                            "fortran_order is {v:?}, expected True or False"
                        )));
                    }
                })
            }
            "shape" => {
                let body = value
                    .strip_prefix('(')
                    .and_then(|s| s.strip_suffix(')'))
                    .ok_or_else(|| bad(format!("shape {value:?} is not a tuple")))?;
                let dims = body
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.trim_end_matches('L').parse::<usize>().map_err(|_| {
                            bad(format!("shape entry {s:?} is not a non-negative integer"))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                shape = Some(dims);
            }
            _ => {}
        }
    }
    Ok(Header {
        descr: descr.ok_or_else(|| bad("missing 'descr'".into()))?,
        fortran_order: fortran.ok_or_else(|| bad("missing 'fortran_order'".into()))?,
        shape: shape.ok_or_else(|| bad("missing 'shape'".into()))?,
    })
}

/// Parses `.npy` bytes; `path` only names the file in errors.
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<NpyArray> {
    if bytes.is_empty() {
        return Err(Error::bad_file(path, "file is empty"));
    }
    if bytes.len() < 10 || &bytes[..6] != NPY_MAGIC {
        return Err(Error::bad_file(
            path,
            "not an NPY file (magic \\x93NUMPY missing)",
        ));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(Error::bad_file(path, "NPY header truncated"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => {
            return Err(Error::bad_file(
                path,
                format!(
                    "NPY format version {v}.{} is not supported (1, 2 or 3)",
                    bytes[7]
                ),
            ));
        }
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            Error::bad_file(
                path,
                format!("NPY header truncated (declares {hlen} bytes)"),
            )
        })?;
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| Error::bad_file(path, "bad NPY header: not valid text"))?;
    let h = parse_header(path, text)?;
    if h.fortran_order {
        return Err(Error::bad_file(
            path,
            "fortran_order is True; only C-ordered arrays are supported (save np.ascontiguousarray(a))",
        ));
    }
    let n = checked_product(path, &h.shape)?;
    let payload = &bytes[end..];
    let item = match h.descr.as_str() {
        "|u1" | "u1" | "<u1" => 1,
        "<f4" => 4,
        "<f8" | "<i8" => 8,
        "<i4" => 4,
        d => {
            return Err(Error::bad_file(
                path,
                format!(
                    "NPY dtype {d:?} is not supported (|u1, <f4, <f8 for images; <i8, <i4 for labels)"
                ),
            ));
        }
    };
    let want = n
        .checked_mul(item)
        .ok_or_else(|| Error::bad_file(path, "NPY shape overflows"))?;
    if payload.len() != want {
        let what = if payload.len() < want {
            "truncated"
        } else {
            "oversized"
        };
        return Err(Error::bad_file(
            path,
            format!(
                "NPY payload {what}: shape {:?} of {} needs {want} bytes, found {}",
                h.shape,
                h.descr,
                payload.len()
            ),
        ));
    }
    let data = match h.descr.as_str() {
        "<f4" => NpyData::F32(
            payload
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        "<f8" => NpyData::F64(
            payload
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        "<i8" => NpyData::I64(
            payload
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        "<i4" => NpyData::I64(
            payload
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
        ),
        _ => NpyData::U8(payload.to_vec()),
    };
    Ok(NpyArray {
        shape: h.shape,
        data,
    })
}

/// Reads an `.npy` file (raw or gzip'd).
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    parse_npy(path, &read_maybe_gzip(path)?)
}

/// Pixels of an array as [0,1] floats in its own (row-major) order.
fn unit_values(path: &Path, data: &NpyData) -> Result<Vec<f32>> {
    match data {
        NpyData::U8(v) => Ok(u8_to_unit(v)),
        NpyData::F32(v) => {
            check_unit_floats(path, v.iter().map(|&x| x as f64))?;
            Ok(v.clone())
        }
        NpyData::F64(v) => {
            check_unit_floats(path, v.iter().copied())?;
            Ok(v.iter().map(|&x| x as f32).collect())
        }
        NpyData::I64(_) => Err(Error::bad_file(
            path,
            "integer NPY arrays hold labels, not images (images are |u1, <f4 or <f8)",
        )),
    }
}

/// Interprets an array as images: `(n,h,w)`, `(n,h,w,c)` with c∈{1,3} (transposed to NCHW),
/// or `(n,c,h,w)` with c∈{1,3}; when both readings fit, `(n,c,h,w)` wins.
pub fn npy_to_images(path: &Path, a: &NpyArray) -> Result<Images> {
    let chw = |c: usize| c == 1 || c == 3;
    let values = unit_values(path, &a.data)?;
    let nonzero = a.shape.iter().all(|&d| d > 0);
    match a.shape.as_slice() {
        &[_, h, w] if nonzero => Ok(Images {
            shape: [1, h, w],
            pixels: values,
        }),
        &[_, c, h, w] if nonzero && chw(c) => Ok(Images {
            shape: [c, h, w],
            pixels: values,
        }),
        &[n, h, w, c] if nonzero && chw(c) => {
            let mut out = vec![0f32; values.len()];
            for i in 0..n {
                let base = i * h * w * c;
                for y in 0..h {
                    for x in 0..w {
                        for k in 0..c {
                            out[base + (k * h + y) * w + x] = values[base + (y * w + x) * c + k];
                        }
                    }
                }
            }
            Ok(Images {
                shape: [c, h, w],
                pixels: out,
            })
        }
        s => Err(Error::bad_file(
            path,
            format!(
                "NPY image array has shape {s:?}; expected non-empty (n,h,w), (n,h,w,c) or (n,c,h,w) with c in {{1,3}}"
            ),
        )),
    }
}

/// Interprets a 1-d integer (or u8) array as class labels.
pub fn npy_to_labels(path: &Path, a: &NpyArray) -> Result<Vec<i64>> {
    if a.shape.len() != 1 {
        return Err(Error::bad_file(
            path,
            format!("NPY labels must be 1-d, found shape {:?}", a.shape),
        ));
    }
    match &a.data {
        NpyData::I64(v) => Ok(v.clone()),
        NpyData::U8(v) => Ok(v.iter().map(|&b| b as i64).collect()),
        _ => Err(Error::bad_file(
            path,
            "NPY labels must be an integer array (<i8, <i4 or |u1)",
        )),
    }
}

/// Serialises an array as a version-1.0 `.npy` file (used by tests and conversions).
pub fn encode_npy(descr: &str, shape: &[usize], fortran: bool, payload: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let f = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {shape_txt}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = NPY_MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_variants() {
        let p = Path::new("a.npy");
        let h = parse_header(
            p,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (200, 25, 25), }   \n",
        )
        .unwrap();
        assert_eq!(h.shape, vec![200, 25, 25]);
        assert_eq!(h.descr, "<f8");
        let h = parse_header(
            p,
            "{\"shape\": (3,), \"fortran_order\": True, \"descr\": \"|u1\"}",
        )
        .unwrap();
        assert_eq!(h.shape, vec![3]);
        assert!(h.fortran_order);
        assert!(parse_header(p, "{'descr': '<f8'}").is_err());
        assert!(parse_header(p, "'descr'").is_err());
        assert!(
            parse_header(
                p,
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': ()}"
            )
            .is_err()
        );
    }

    #[test]
    fn nhwc_is_transposed_and_ambiguous_is_nchw() {
        let p = Path::new("a.npy");
        // one 2x1 RGB image (n,h,w,c): pixel0 = (0,1,2), pixel1 = (3,4,5)
        let a = NpyArray {
            shape: vec![1, 2, 1, 3],
            data: NpyData::U8(vec![0, 1, 2, 3, 4, 5]),
        };
        let im = npy_to_images(p, &a).unwrap();
        assert_eq!(im.shape, [3, 2, 1]);
        let back: Vec<u8> = im
            .pixels
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect();
        assert_eq!(back, vec![0, 3, 1, 4, 2, 5]);
        // (1,1,2,3) fits both readings: documented to be (n,c,h,w)
        let b = NpyArray {
            shape: vec![1, 1, 2, 3],
            data: NpyData::U8(vec![0, 1, 2, 3, 4, 5]),
        };
        assert_eq!(npy_to_images(p, &b).unwrap().shape, [1, 2, 3]);
    }
}
