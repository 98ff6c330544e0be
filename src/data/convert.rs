//! Shape conversions that let any image set meet a model's input: channel count (RGB → grey by
//! ITU-R BT.601 luma Y = 0.299R + 0.587G + 0.114B; grey → RGB by replication) and size
//! (bilinear with `align_corners=False`, matching PyTorch's `F.interpolate(mode="bilinear")`
//! without antialiasing).

use super::Dataset;
use crate::error::{Error, Result};

/// ITU-R BT.601 luma weights for R, G, B.
pub const BT601_LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Source coordinate and weights for one output index: PyTorch's
/// `area_pixel_compute_source_index` with `align_corners=False` (negative sources clamp to 0).
fn source_taps(out_len: usize, in_len: usize) -> Vec<(usize, usize, f32)> {
    let scale = in_len as f64 / out_len as f64;
    (0..out_len)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(in_len - 1);
            let i1 = (i0 + 1).min(in_len - 1);
            let l = (src - i0 as f64) as f32;
            (i0, i1, l)
        })
        .collect()
}

/// Bilinear resize of one `c×h×w` image to `c×oh×ow` (align_corners=False).
pub fn resize_bilinear(img: &[f32], [c, h, w]: [usize; 3], oh: usize, ow: usize) -> Vec<f32> {
    let ty = source_taps(oh, h);
    let tx = source_taps(ow, w);
    let mut out = Vec::with_capacity(c * oh * ow);
    for k in 0..c {
        let plane = &img[k * h * w..(k + 1) * h * w];
        for &(y0, y1, ly) in &ty {
            for &(x0, x1, lx) in &tx {
                let top = plane[y0 * w + x0] * (1.0 - lx) + plane[y0 * w + x1] * lx;
                let bot = plane[y1 * w + x0] * (1.0 - lx) + plane[y1 * w + x1] * lx;
                out.push((top * (1.0 - ly) + bot * ly).clamp(0.0, 1.0));
            }
        }
    }
    out
}

/// Converts one `c×h×w` image to `target_c` channels (1 → 3, 3 → 1, or unchanged).
pub fn convert_channels(img: &[f32], [c, h, w]: [usize; 3], target_c: usize) -> Result<Vec<f32>> {
    let hw = h * w;
    Ok(match (c, target_c) {
        (a, b) if a == b => img.to_vec(),
        (3, 1) => (0..hw)
            .map(|i| {
                (BT601_LUMA[0] * img[i]
                    + BT601_LUMA[1] * img[hw + i]
                    + BT601_LUMA[2] * img[2 * hw + i])
                    .clamp(0.0, 1.0)
            })
            .collect(),
        (1, 3) => img.iter().chain(img).chain(img).copied().collect(),
        _ => {
            return Err(Error::BadInput(format!(
                "cannot convert {c} channels to {target_c} (only 1 <-> 3)"
            )));
        }
    })
}

/// Returns `ds` converted to `shape` (`[c, h, w]`, c ∈ {1,3}); the name records each step,
/// e.g. `lfw:test|bilinear 25x25->28x28` or `cifar:…|luma601`.
pub fn to_shape(ds: &Dataset, shape: [usize; 3]) -> Result<Dataset> {
    let [tc, th, tw] = shape;
    let [c, h, w] = ds.shape;
    if !matches!(tc, 1 | 3) || th == 0 || tw == 0 {
        return Err(Error::BadInput(format!(
            "target shape {tc}x{th}x{tw}: channels must be 1 or 3 and sizes non-zero"
        )));
    }
    if !matches!(c, 1 | 3) {
        return Err(Error::BadInput(format!(
            "dataset {} has {c} channels; only 1 or 3 can be converted",
            ds.name
        )));
    }
    let mut name = ds.name.clone();
    if tc != c {
        name.push_str(if tc == 1 { "|luma601" } else { "|grey2rgb" });
    }
    if (th, tw) != (h, w) {
        name.push_str(&format!("|bilinear {h}x{w}->{th}x{tw}"));
    }
    if name == ds.name {
        return Ok(ds.clone());
    }
    let mut images = Vec::with_capacity(ds.len() * tc * th * tw);
    for i in 0..ds.len() {
        let chans = convert_channels(ds.image(i), [c, h, w], tc)?;
        if (th, tw) == (h, w) {
            images.extend(chans);
        } else {
            images.extend(resize_bilinear(&chans, [tc, h, w], th, tw));
        }
    }
    Ok(Dataset {
        name,
        images,
        labels: ds.labels.clone(),
        shape,
        sha256: ds.sha256.clone(),
        selection: ds.selection.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_resize_and_constant_image() {
        let img: Vec<f32> = (0..12).map(|i| i as f32 / 11.0).collect();
        assert_eq!(resize_bilinear(&img, [1, 3, 4], 3, 4), img);
        let flat = vec![0.25f32; 9];
        assert!(
            resize_bilinear(&flat, [1, 3, 3], 7, 5)
                .iter()
                .all(|&v| (v - 0.25).abs() < 1e-7)
        );
    }

    #[test]
    fn luma_and_replication() {
        let rgb = vec![1.0, 0.0, 0.0];
        assert!((convert_channels(&rgb, [3, 1, 1], 1).unwrap()[0] - 0.299).abs() < 1e-7);
        assert_eq!(
            convert_channels(&[0.5], [1, 1, 1], 3).unwrap(),
            vec![0.5, 0.5, 0.5]
        );
        assert!(convert_channels(&[0.5; 2], [2, 1, 1], 1).is_err());
    }
}
