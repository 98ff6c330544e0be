//! Row-wise L2 normalisation, x / max(‖x‖₂, ε) with ε = 1e-12 (PyTorch's `F.normalize`), as GReg+
//! and DOS apply to penultimate features before clustering.

use crate::bad_input;
use crate::error::Result;

/// Smallest norm divided by; a zero row stays zero (PyTorch's `F.normalize` default eps).
pub const NORM_EPS: f64 = 1e-12;

/// Returns a copy of the n×d row-major `features` with every row scaled to unit L2 norm (norms in
/// f64; rows of norm below [`NORM_EPS`] are divided by `NORM_EPS`).
pub fn l2_normalise_rows(features: &[f32], n: usize, d: usize) -> Result<Vec<f32>> {
    let len = n
        .checked_mul(d)
        .ok_or_else(|| bad_input!("l2 normalisation: n·d = {n}·{d} overflows"))?;
    if features.len() != len {
        return Err(bad_input!(
            "l2 normalisation: features hold {} values, expected n·d = {n}·{d} = {len}",
            features.len()
        ));
    }
    if d == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(len);
    for row in features.chunks_exact(d) {
        let norm = row
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        let scale = 1.0 / norm.max(NORM_EPS);
        out.extend(row.iter().map(|&v| (f64::from(v) * scale) as f32));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_get_unit_norm_and_direction_is_kept() {
        let x = [3.0f32, 4.0, 0.0, 0.0, -1.0, 0.0];
        let y = l2_normalise_rows(&x, 3, 2).unwrap();
        assert_eq!(y, vec![0.6, 0.8, 0.0, 0.0, -1.0, 0.0]);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let err = l2_normalise_rows(&[1.0; 5], 3, 2).unwrap_err().to_string();
        assert!(err.contains("expected n·d = 3·2 = 6"), "{err}");
    }
}
