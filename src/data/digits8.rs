//! The UCI optical-recognition 8×8 digits (1,797 images, 10 classes), bundled in the crates.io
//! `smartcore` crate (feature `datasets`, no fetch). Values are integers 0–16, scaled by /16.

use super::bytes::{Images, sha256_concat_hex};
use crate::error::{Error, Result};

/// Maximum intensity in the optdigits bitmaps.
pub const DIGITS8_MAX: f32 = 16.0;

/// All 1,797 digits as 1×8×8 images in [0,1], their labels 0–9, and the SHA-256 of the raw
/// f32 little-endian values (X then y) as smartcore ships them.
pub fn load_digits8() -> Result<(Images, Vec<i64>, String)> {
    let ds = smartcore::dataset::digits::load_dataset();
    if ds.num_features != 64
        || ds.data.len() != ds.num_samples * 64
        || ds.target.len() != ds.num_samples
    {
        return Err(Error::Internal(format!(
            "smartcore digits: {} samples × {} features, {} values, {} targets",
            ds.num_samples,
            ds.num_features,
            ds.data.len(),
            ds.target.len()
        )));
    }
    let xb: Vec<u8> = ds.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let yb: Vec<u8> = ds.target.iter().flat_map(|v| v.to_le_bytes()).collect();
    let sha = sha256_concat_hex([xb.as_slice(), yb.as_slice()]);
    let mut pixels = Vec::with_capacity(ds.data.len());
    for (i, &v) in ds.data.iter().enumerate() {
        if !(0.0..=DIGITS8_MAX).contains(&v) {
            return Err(Error::Internal(format!(
                "smartcore digits: value {i} is {v}, outside 0-16"
            )));
        }
        pixels.push(v / DIGITS8_MAX);
    }
    let labels = ds
        .target
        .iter()
        .map(|&t| {
            if t.fract() == 0.0 && (0.0..10.0).contains(&t) {
                Ok(t as i64)
            } else {
                Err(Error::Internal(format!(
                    "smartcore digits: label {t} is not 0-9"
                )))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((
        Images {
            shape: [1, 8, 8],
            pixels,
        },
        labels,
        sha,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn digits8_shape_and_range() {
        let (im, y, sha) = super::load_digits8().unwrap();
        assert_eq!(y.len(), 1797);
        assert_eq!(im.shape, [1, 8, 8]);
        assert_eq!(im.pixels.len(), 1797 * 64);
        assert!(im.pixels.contains(&1.0));
        assert_eq!(sha.len(), 64);
        let mut counts = [0usize; 10];
        for &l in &y {
            counts[l as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (170..=190).contains(&c)),
            "{counts:?}"
        );
    }
}
