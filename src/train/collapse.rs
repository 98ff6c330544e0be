//! Collapse detection (issue #14, item 7): a run whose classifier has collapsed — training-batch
//! accuracy at chance, logits constant over the batch, or every ReLU of a layer dead on the batch —
//! for a window of consecutive checks after a warm-up is stopped with exit 1 and a line saying
//! what to change, as a diverged (NaN) run is. The pilot of issue #14 collapsed 4 of 6 LeNet
//! fine-tunes silently at lr 0.01 (constant output, ID accuracy 18.8 %).

use crate::error::{Error, Result};
use crate::model::layers::Layer;
use crate::model::{Classifier, Model};
use candle_core::{D, DType, Tensor};

/// Steps between two checks.
pub const CHECK_EVERY: usize = 10;
/// Default warm-up: no check before this step.
pub const DEFAULT_WARMUP: usize = 100;
/// Default window: consecutive collapsed checks that stop a run (10 checks = 100 steps).
pub const DEFAULT_WINDOW: usize = 10;
/// Logits count as constant when every class's spread over the batch is at most this fraction of
/// the largest |logit| (plus this absolute floor).
pub const SPREAD_TOL: f64 = 1e-6;
/// Standard errors above chance that still count as "at chance".
pub const CHANCE_SIGMAS: f64 = 3.0;

/// What one check saw on the ID batch.
#[derive(Debug, Clone, PartialEq)]
pub struct CollapseSigns {
    /// Batch accuracy and the chance level 1/K.
    pub accuracy: f64,
    pub chance: f64,
    /// Accuracy within [`CHANCE_SIGMAS`] binomial standard errors above chance.
    pub at_chance: bool,
    /// Largest per-class standard deviation of the logits over the batch.
    pub spread: f64,
    /// The spread is ~0: the same output for every input.
    pub constant: bool,
    /// 1-based positions (among the ReLU layers) of layers whose every unit is 0 on every input.
    pub dead_relu_layers: Vec<usize>,
}

impl CollapseSigns {
    /// Whether any sign of collapse holds.
    pub fn collapsed(&self) -> bool {
        self.at_chance || self.constant || !self.dead_relu_layers.is_empty()
    }

    /// The signs that hold, in words.
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        if self.at_chance {
            v.push(format!(
                "training-batch accuracy {:.3} at chance (1/K = {:.3})",
                self.accuracy, self.chance
            ));
        }
        if self.constant {
            v.push(format!(
                "logits constant over the batch (spread {:.2e})",
                self.spread
            ));
        }
        if !self.dead_relu_layers.is_empty() {
            v.push(format!(
                "every ReLU dead in ReLU layer(s) {:?}",
                self.dead_relu_layers
            ));
        }
        v.join(", ")
    }
}

/// The signs of collapse of `model` on the ID images `x` with labels `y` (evaluation mode; the
/// model's own layers, so every sequential ReLU layer is inspected).
pub fn inspect(model: &Model, x: &Tensor, labels: &[i64]) -> Result<CollapseSigns> {
    let layers = model.layers();
    let mut h = x.to_dtype(model.dtype())?;
    let mut dead = Vec::new();
    let mut relu_pos = 0;
    for layer in layers {
        h = layer.forward(&h, false)?;
        if matches!(layer, Layer::Relu) {
            relu_pos += 1;
            let max = h.abs()?.flatten_all()?.max(0)?;
            if max.to_dtype(DType::F64)?.to_scalar::<f64>()? == 0.0 {
                dead.push(relu_pos);
            }
        }
    }
    let k = model.id_classes();
    let logits = crate::model::absent_class::id_logits(&h, model.has_absent_class())?
        .to_dtype(DType::F64)?;
    let n = labels.len();
    let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let correct = pred
        .iter()
        .zip(labels)
        .filter(|&(&p, &l)| p as i64 == l)
        .count();
    let rows = logits.to_vec2::<f64>()?;
    let mut spread = 0f64;
    let mut largest = 0f64;
    for c in 0..k {
        let col: Vec<f64> = rows.iter().map(|r| r[c]).collect();
        let mean = col.iter().sum::<f64>() / n as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        spread = spread.max(var.sqrt());
        largest = col.iter().fold(largest, |m, v| m.max(v.abs()));
    }
    let chance = 1.0 / k as f64;
    let accuracy = correct as f64 / n as f64;
    let se = (chance * (1.0 - chance) / n as f64).sqrt();
    Ok(CollapseSigns {
        accuracy,
        chance,
        at_chance: accuracy <= chance + CHANCE_SIGMAS * se,
        spread,
        constant: n > 1 && spread <= SPREAD_TOL * (1.0 + largest),
        dead_relu_layers: dead,
    })
}

/// Counts consecutive collapsed checks after the warm-up and stops the run after `window` of
/// them. The count restarts on `--resume` (a resumed run needs a full window to stop).
#[derive(Debug, Clone)]
pub struct CollapseMonitor {
    warmup: usize,
    window: usize,
    run: usize,
}

impl CollapseMonitor {
    /// A monitor; `window` 0 disables it.
    pub fn new(warmup: usize, window: usize) -> Self {
        CollapseMonitor {
            warmup,
            window,
            run: 0,
        }
    }

    /// Whether the 1-based `step` is a check step.
    pub fn due(&self, step: usize) -> bool {
        self.window > 0 && step > self.warmup && step % CHECK_EVERY == 0
    }

    /// Records a check at `step` with learning rate `lr`; an error (exit 1) once `window`
    /// consecutive checks saw collapse.
    pub fn record(&mut self, step: usize, lr: f64, signs: &CollapseSigns) -> Result<()> {
        if !signs.collapsed() {
            self.run = 0;
            return Ok(());
        }
        self.run += 1;
        if self.run < self.window {
            return Ok(());
        }
        Err(Error::CheckFailed(format!(
            "step {step}: training collapsed: {} at {} consecutive checks ({} steps, lr {lr:.3e}); lower `optim.lr` (e.g. --set optim.lr={:.1e}) or check the data (`train.collapse_window = 0` turns this check off)",
            signs.describe(),
            self.window,
            self.window * CHECK_EVERY,
            lr_hint(lr),
        )))
    }
}

/// A tenth of the current rate, or 1e-3 when the schedule has annealed it to 0.
fn lr_hint(lr: f64) -> f64 {
    if lr > 0.0 { lr / 10.0 } else { 1e-3 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signs(at_chance: bool) -> CollapseSigns {
        CollapseSigns {
            accuracy: 0.1,
            chance: 0.1,
            at_chance,
            spread: 1.0,
            constant: false,
            dead_relu_layers: vec![],
        }
    }

    #[test]
    fn the_window_counts_consecutive_collapsed_checks_only() {
        let mut m = CollapseMonitor::new(100, 3);
        assert!(!m.due(100) && m.due(110) && !m.due(115));
        m.record(110, 0.01, &signs(true)).unwrap();
        m.record(120, 0.01, &signs(true)).unwrap();
        m.record(130, 0.01, &signs(false)).unwrap();
        m.record(140, 0.01, &signs(true)).unwrap();
        m.record(150, 0.01, &signs(true)).unwrap();
        let e = m.record(160, 0.01, &signs(true)).unwrap_err();
        assert!(matches!(e, Error::CheckFailed(_)));
        let t = e.to_string();
        assert!(
            t.contains("collapsed") && t.contains("optim.lr=1.0e-3"),
            "{t}"
        );
        assert!(!CollapseMonitor::new(0, 0).due(10), "window 0 disables");
    }
}
