//! In-graph input normalisation: a chain of `Sub`/`Div`/`Mul`/`Add` by per-channel constants right
//! after the graph input, kept as the model's first layer y = (x − μ_c)/σ_c (pixels in [0, 1] stay
//! the model's input, so radii and ε stay in pixel units). The chain is folded in that form:
//! Sub k: μ += k·σ; Add k: μ −= k·σ; Div k: σ *= k; Mul k: σ /= k (k > 0), so the usual
//! `(x − mean) / std` keeps mean and std exactly.

use super::graph::{OnnxGraph, label};
use crate::error::{Error, Result};

/// Per-channel (μ, σ) of the folded chain and the tensor after it.
pub struct Normalisation {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub output: String,
}

impl OnnxGraph<'_> {
    /// Folds the normalisation chain that starts at the graph input `x` (`c` channels).
    pub fn normalisation(&mut self, x: &str, c: usize) -> Result<Normalisation> {
        let (mut mean, mut std) = (vec![0f64; c], vec![1f64; c]);
        let mut t = x.to_string();
        while let [(i, slot)] = *self.uses(&t) {
            let n = &self.nodes[i];
            let op = n.op_type.as_deref().unwrap_or("");
            if !matches!(op, "Sub" | "Div" | "Mul" | "Add") || self.dynamic_slots(i).len() != 1 {
                break;
            }
            let lab = label(self.nodes, i);
            if slot != 0 && matches!(op, "Sub" | "Div") {
                return Err(Error::BadInput(format!(
                    "{lab}: constant {op} x is not a normalisation (x must be the first input)"
                )));
            }
            super::constants::Attrs::new(n, &lab, &[])?;
            let k = self
                .constant(&n.input[1 - slot.min(1)])
                .cloned()
                .ok_or_else(|| Error::Internal(format!("{lab}: constant operand missing")))?;
            let v = k.floats().ok_or_else(|| {
                Error::BadInput(format!(
                    "{lab}: normalisation constant is not floating point"
                ))
            })?;
            let per_channel: Vec<f64> = match (&k.dims[..], v.len()) {
                (_, 1) => vec![v[0] as f64; c],
                ([cc, 1, 1] | [1, cc, 1, 1], n) if *cc == c && n == c => {
                    v.iter().map(|&x| x as f64).collect()
                }
                (d, _) => {
                    return Err(Error::BadInput(format!(
                        "{lab}: normalisation constant of shape {d:?} is not per-channel \
                         (expected a scalar, [{c}, 1, 1] or [1, {c}, 1, 1])"
                    )));
                }
            };
            for ch in 0..c {
                let k = per_channel[ch];
                match op {
                    "Sub" => mean[ch] += k * std[ch],
                    "Add" => mean[ch] -= k * std[ch],
                    "Div" | "Mul" => {
                        if !(k > 0.0 && k.is_finite()) {
                            return Err(Error::BadInput(format!(
                                "{lab}: {op} by {k}: normalisation scales must be positive"
                            )));
                        }
                        if op == "Div" {
                            std[ch] *= k;
                        } else {
                            std[ch] /= k;
                        }
                    }
                    _ => unreachable!("matched above"),
                }
            }
            self.done[i] = true;
            t = n.output[0].clone();
        }
        Ok(Normalisation {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: std.iter().map(|&s| s as f32).collect(),
            output: t,
        })
    }
}
