//! CSV image tables: one image per row, its pixels (CHW order, row-major) then an integer label
//! (−1 = no label). An optional header row is recognised by a non-numeric first field.
//! Value convention, decided by content: if any pixel field is written as a float literal
//! (contains `.`, `e` or `E`, or is `nan`/`inf`) the table holds floats that must already be in
//! [0,1]; otherwise every pixel must be an integer 0–255 and is divided by 255.
//! Rows of p = s² pixels are 1×s×s images; p = 3s² gives 3×s×s.

use super::bytes::{Images, read_maybe_gzip};
use crate::error::{Error, Result};
use std::path::Path;

/// The image shape for `p` pixel columns: 1×s×s or 3×s×s.
pub fn shape_for_columns(p: usize) -> Option<[usize; 3]> {
    let sq = |v: usize| {
        let s = (v as f64).sqrt().round() as usize;
        (s > 0 && s * s == v).then_some(s)
    };
    if let Some(s) = sq(p) {
        return Some([1, s, s]);
    }
    if p.is_multiple_of(3) {
        return sq(p / 3).map(|s| [3, s, s]);
    }
    None
}

fn is_float_literal(s: &str) -> bool {
    s.bytes()
        .any(|b| matches!(b, b'.' | b'e' | b'E' | b'n' | b'N' | b'i' | b'I'))
}

/// Parses CSV text (already gunzipped) into images and labels.
pub fn parse_csv_pixels(path: &Path, bytes: &[u8]) -> Result<(Images, Vec<i64>)> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::bad_file(path, "file is empty"));
    }
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut rows: Vec<csv::StringRecord> = Vec::new();
    for (i, r) in rdr.records().enumerate() {
        let r = r.map_err(|e| Error::bad_file(path, format!("line {}: {e}", i + 1)))?;
        if r.iter().all(|f| f.is_empty()) {
            continue;
        }
        rows.push(r);
    }
    let header = rows
        .first()
        .and_then(|r| r.get(0))
        .is_some_and(|f| f.parse::<f64>().is_err());
    let first_line = if header { 2 } else { 1 };
    let data = if header { &rows[1..] } else { &rows[..] };
    let Some(first) = data.first() else {
        return Err(Error::bad_file(path, "no data rows"));
    };
    let cols = first.len();
    if cols < 2 {
        return Err(Error::bad_file(
            path,
            "rows need pixel columns and a label column",
        ));
    }
    let p = cols - 1;
    let shape = shape_for_columns(p).ok_or_else(|| {
        Error::bad_file(
            path,
            format!("{p} pixel columns is neither s² (grey s×s) nor 3s² (RGB s×s)"),
        )
    })?;
    let floats = data.iter().any(|r| r.iter().take(p).any(is_float_literal));
    let mut pixels = Vec::with_capacity(data.len() * p);
    let mut labels = Vec::with_capacity(data.len());
    for (k, r) in data.iter().enumerate() {
        let line = k + first_line;
        if r.len() != cols {
            return Err(Error::bad_file(
                path,
                format!(
                    "line {line}: {} fields, expected {cols} (pixels then label)",
                    r.len()
                ),
            ));
        }
        for (j, f) in r.iter().take(p).enumerate() {
            let v = if floats {
                let v: f64 = f.parse().map_err(|_| {
                    Error::bad_file(
                        path,
                        format!("line {line}, column {}: {f:?} is not a number", j + 1),
                    )
                })?;
                if !v.is_finite() {
                    return Err(Error::bad_file(
                        path,
                        format!("line {line}, column {}: {f} is not finite", j + 1),
                    ));
                }
                if !(0.0..=1.0).contains(&v) {
                    return Err(Error::bad_file(
                        path,
                        format!(
                            "line {line}, column {}: float pixel {v} is outside [0,1] (float tables must be pre-scaled)",
                            j + 1
                        ),
                    ));
                }
                v as f32
            } else {
                let v: u8 = f.parse().map_err(|_| {
                    Error::bad_file(
                        path,
                        format!(
                            "line {line}, column {}: {f:?} is not an integer 0-255",
                            j + 1
                        ),
                    )
                })?;
                v as f32 / 255.0
            };
            pixels.push(v);
        }
        let lf = &r[p];
        let label: i64 = lf.parse().map_err(|_| {
            Error::bad_file(path, format!("line {line}: label {lf:?} is not an integer"))
        })?;
        if label < -1 {
            return Err(Error::bad_file(
                path,
                format!("line {line}: label {label} is negative (use -1 for none)"),
            ));
        }
        labels.push(label);
    }
    Ok((Images { shape, pixels }, labels))
}

/// Reads a CSV image table (raw or gzip'd).
pub fn read_csv_pixels(path: &Path) -> Result<(Images, Vec<i64>)> {
    parse_csv_pixels(path, &read_maybe_gzip(path)?)
}
