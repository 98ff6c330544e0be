//! Collapse detection (issue #14, item 7): a run whose classifier has collapsed — training-batch
//! accuracy at chance over a window of consecutive checks after a warm-up (pooled over the window,
//! so a model that learns something on a hard task is not mistaken for one at chance), or logits
//! constant over the batch / every ReLU of a layer dead on the batch at every check of the window —
//! is stopped with exit 1 and a line saying what to change, as a diverged (NaN) run is. The pilot of issue #14 collapsed 4 of 6 LeNet
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
/// Standard errors above chance that still count as "at chance" (the window's pooled accuracy).
pub const CHANCE_SIGMAS: f64 = 3.0;

/// What one check saw on the ID batch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CollapseSigns {
    /// Correct predictions among `n` batch images, and the chance level 1/K.
    pub correct: usize,
    pub n: usize,
    pub chance: f64,
    /// Largest per-class standard deviation of the logits over the batch.
    pub spread: f64,
    /// The spread is ~0: the same output for every input.
    pub constant: bool,
    /// 1-based positions (among the ReLU layers) of layers whose every unit is 0 on every input.
    pub dead_relu_layers: Vec<usize>,
}

impl CollapseSigns {
    /// Whether the network itself is dead on the batch (constant output or a dead layer).
    pub fn dead(&self) -> bool {
        self.constant || !self.dead_relu_layers.is_empty()
    }

    /// The structural signs that hold, in words.
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
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
    Ok(CollapseSigns {
        correct,
        n,
        chance: 1.0 / k as f64,
        spread,
        constant: n > 1 && spread <= SPREAD_TOL * (1.0 + largest),
        dead_relu_layers: dead,
    })
}

/// Keeps the last `window` checks after the warm-up and stops the run when their pooled accuracy
/// is at chance (within [`CHANCE_SIGMAS`] binomial standard errors of 1/K over all their images)
/// or every one of them saw a dead network. Checkpoints store the window ([`Self::window_signs`]) and
/// `--resume` restores it ([`Self::restore`]), so a resumed run stops where the uninterrupted one
/// would.
#[derive(Debug, Clone)]
pub struct CollapseMonitor {
    warmup: usize,
    window: usize,
    last: std::collections::VecDeque<CollapseSigns>,
}

impl CollapseMonitor {
    /// A monitor; `window` 0 disables it.
    pub fn new(warmup: usize, window: usize) -> Self {
        CollapseMonitor {
            warmup,
            window,
            last: std::collections::VecDeque::new(),
        }
    }

    /// The checks of the current window, oldest first (what a checkpoint stores).
    pub fn window_signs(&self) -> Vec<CollapseSigns> {
        self.last.iter().cloned().collect()
    }

    /// Continues from the checks `signs` of a checkpoint (the last `window` of them are kept).
    pub fn restore(&mut self, signs: Vec<CollapseSigns>) {
        let skip = signs.len().saturating_sub(self.window);
        self.last = signs.into_iter().skip(skip).collect();
    }

    /// Whether the 1-based `step` is a check step.
    pub fn due(&self, step: usize) -> bool {
        self.window > 0 && step > self.warmup && step.is_multiple_of(CHECK_EVERY)
    }

    /// Records a check at `step` with learning rate `lr`; an error (exit 1) once `window`
    /// consecutive checks saw collapse.
    pub fn record(&mut self, step: usize, lr: f64, signs: &CollapseSigns) -> Result<()> {
        self.last.push_back(signs.clone());
        if self.last.len() > self.window {
            self.last.pop_front();
        }
        if self.last.len() < self.window {
            return Ok(());
        }
        let correct: usize = self.last.iter().map(|s| s.correct).sum();
        let n: usize = self.last.iter().map(|s| s.n).sum();
        let chance = signs.chance;
        let acc = correct as f64 / n.max(1) as f64;
        let at_chance = acc <= chance + CHANCE_SIGMAS * (chance * (1.0 - chance) / n as f64).sqrt();
        let dead = self.last.iter().all(CollapseSigns::dead);
        if !at_chance && !dead {
            return Ok(());
        }
        let mut what = Vec::new();
        if at_chance {
            what.push(format!(
                "training-batch accuracy {acc:.3} at chance (1/K = {chance:.3})"
            ));
        }
        if dead {
            what.push(signs.describe());
        }
        Err(Error::CheckFailed(format!(
            "step {step}: training collapsed: {} over the last {} checks ({} steps, lr {lr:.3e}); lower `optim.lr` (e.g. --set optim.lr={:.1e}) or check the data (`train.collapse_window = 0` turns this check off)",
            what.join(", "),
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

    /// A check of 40 images of K = 2 with `correct` right; `dead` a constant output.
    fn signs(correct: usize, dead: bool) -> CollapseSigns {
        CollapseSigns {
            correct,
            n: 40,
            chance: 0.5,
            spread: if dead { 0.0 } else { 1.0 },
            constant: dead,
            dead_relu_layers: vec![],
        }
    }

    #[test]
    fn the_window_pools_accuracy_and_needs_every_check_dead() {
        let mut m = CollapseMonitor::new(100, 3);
        assert!(!m.due(100) && m.due(110) && !m.due(115));
        // Pooled over 120 images the chance bound is 0.5 + 3·√(0.25/120) ≈ 0.637: a learner
        // at 0.7 (28/40) is never stopped, even when single batches dip to chance.
        for (k, c) in [20, 30, 34, 20, 30, 34].into_iter().enumerate() {
            m.record(110 + 10 * k, 0.01, &signs(c, false)).unwrap();
        }
        // A dead network at every check of the window stops it, whatever its accuracy.
        let mut m = CollapseMonitor::new(0, 3);
        m.record(10, 0.01, &signs(30, true)).unwrap();
        m.record(20, 0.01, &signs(30, false)).unwrap();
        m.record(30, 0.01, &signs(30, true)).unwrap();
        m.record(40, 0.01, &signs(30, true)).unwrap();
        assert!(m.record(50, 0.01, &signs(30, true)).is_err());
        // Pooled accuracy at chance stops it.
        let mut m = CollapseMonitor::new(0, 3);
        m.record(10, 0.01, &signs(22, false)).unwrap();
        m.record(20, 0.01, &signs(24, false)).unwrap();
        let e = m.record(30, 0.01, &signs(23, false)).unwrap_err();
        assert!(matches!(e, Error::CheckFailed(_)));
        let t = e.to_string();
        assert!(
            t.contains("collapsed") && t.contains("optim.lr=1.0e-3"),
            "{t}"
        );
        assert!(!CollapseMonitor::new(0, 0).due(10), "window 0 disables");
        // A restored window continues: two stored checks at chance + one more stop the run.
        let mut m = CollapseMonitor::new(0, 3);
        m.record(10, 0.01, &signs(22, false)).unwrap();
        m.record(20, 0.01, &signs(24, false)).unwrap();
        let mut r = CollapseMonitor::new(0, 3);
        r.restore(m.window_signs());
        assert!(r.record(30, 0.01, &signs(23, false)).is_err());
        // Only the last `window` restored checks count.
        let mut r = CollapseMonitor::new(0, 2);
        r.restore(vec![signs(22, false), signs(40, false), signs(40, false)]);
        assert_eq!(r.window_signs(), vec![signs(40, false), signs(40, false)]);
    }
}
