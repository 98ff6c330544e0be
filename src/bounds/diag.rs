//! Diagonal affine maps x ↦ s ⊙ x + t: the input normalisation (x − μ)/σ and BatchNorm in
//! evaluation mode (γ/√(σ²+ε), β − γμ/√(σ²+ε)), expanded to one scale per entry.

use super::linear_map::LinearMap;

/// The diagonal part s of x ↦ s ⊙ x + t (one entry per input coordinate).
#[derive(Debug, Clone, PartialEq)]
pub struct Diag {
    pub scale: Vec<f64>,
}

impl LinearMap for Diag {
    fn in_dim(&self) -> usize {
        self.scale.len()
    }
    fn out_dim(&self) -> usize {
        self.scale.len()
    }
    fn apply(&self, x: &[f64], abs: bool) -> Vec<f64> {
        self.scale
            .iter()
            .zip(x)
            .map(|(s, x)| if abs { s.abs() * x } else { s * x })
            .collect()
    }
    fn apply_t(&self, y: &[f64], abs: bool) -> Vec<f64> {
        self.apply(y, abs)
    }
    fn fan_in(&self) -> usize {
        1
    }
    fn fan_out(&self) -> usize {
        1
    }
}
