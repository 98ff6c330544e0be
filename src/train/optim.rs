//! SGD (momentum, Nesterov, weight decay) and Adam with PyTorch's update rules, with state that can
//! be checkpointed and restored exactly.

use crate::error::{Error, Result};
use crate::train::config::OptimConfig;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use std::collections::HashMap;

/// An optimiser over named variables; `state()`/`load_state()` make it resumable.
pub struct Optimizer {
    cfg: OptimConfig,
    vars: Vec<(String, Var)>,
    /// SGD: momentum buffer; Adam: first moment.
    m: Vec<Option<Tensor>>,
    /// Adam: second moment.
    v: Vec<Option<Tensor>>,
    /// Number of steps taken.
    pub steps: u64,
}

impl Optimizer {
    /// A fresh optimiser over `vars` (names must be unique; order is kept).
    pub fn new(cfg: &OptimConfig, vars: Vec<(String, Var)>) -> Optimizer {
        let n = vars.len();
        Optimizer {
            cfg: cfg.clone(),
            vars,
            m: vec![None; n],
            v: vec![None; n],
            steps: 0,
        }
    }

    /// One update at learning rate `lr` from the gradients in `grads` (variables without a gradient
    /// are left alone, as PyTorch skips parameters whose `.grad` is None).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let wd = self.cfg.weight_decay;
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let p = var.as_tensor().detach();
            let mut g = g.detach();
            if wd != 0.0 {
                g = (g + (&p * wd)?)?;
            }
            let update = match self.cfg.kind.as_str() {
                "sgd" => {
                    let mu = self.cfg.momentum;
                    if mu == 0.0 {
                        g
                    } else {
                        let buf = match &self.m[i] {
                            None => g.clone(),
                            Some(b) => ((b * mu)? + &g)?,
                        };
                        let d = if self.cfg.nesterov {
                            (&g + (&buf * mu)?)?
                        } else {
                            buf.clone()
                        };
                        self.m[i] = Some(buf);
                        d
                    }
                }
                "adam" => {
                    let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
                    let m = match &self.m[i] {
                        None => (&g * (1.0 - b1))?,
                        Some(m) => ((m * b1)? + (&g * (1.0 - b1))?)?,
                    };
                    let g2 = g.sqr()?;
                    let v = match &self.v[i] {
                        None => (&g2 * (1.0 - b2))?,
                        Some(v) => ((v * b2)? + (&g2 * (1.0 - b2))?)?,
                    };
                    let t = self.steps as i32;
                    let bc1 = 1.0 - b1.powi(t);
                    let bc2 = 1.0 - b2.powi(t);
                    let denom = ((&v / bc2)?.sqrt()? + self.cfg.eps)?;
                    let d = ((&m / bc1)? / denom)?;
                    self.m[i] = Some(m);
                    self.v[i] = Some(v);
                    d
                }
                other => {
                    return Err(Error::BadInput(format!(
                        "unknown optimiser `{other}` (sgd or adam)"
                    )));
                }
            };
            let new = (p - (update * lr)?)?;
            var.set(&new)
                .map_err(|e| Error::Internal(format!("updating {name}: {e}")))?;
        }
        Ok(())
    }

    /// The optimiser buffers as named tensors (`m.NAME`, `v.NAME`), for checkpoints.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            if let Some(m) = &self.m[i] {
                out.insert(format!("m.{name}"), m.clone());
            }
            if let Some(v) = &self.v[i] {
                out.insert(format!("v.{name}"), v.clone());
            }
        }
        out
    }

    /// Restores buffers written by [`Optimizer::state`] and the step count.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (slot, prefix) in [(&mut self.m[i], "m"), (&mut self.v[i], "v")] {
                *slot = match state.get(&format!("{prefix}.{name}")) {
                    None => None,
                    Some(t) => {
                        if t.shape() != var.shape() {
                            return Err(Error::BadInput(format!(
                                "checkpoint optimiser state {prefix}.{name} has shape {:?}, the parameter {:?}",
                                t.dims(),
                                var.dims()
                            )));
                        }
                        Some(t.to_device(var.device())?.to_dtype(var.dtype())?)
                    }
                };
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn quad_grads(var: &Var) -> GradStore {
        // loss = Σ (p - 3)² → grad 2(p - 3)
        let l = (var.as_tensor() - 3.0)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        l.backward().unwrap()
    }

    /// Reference values computed by hand from torch.optim.SGD's documented update rule.
    #[test]
    fn sgd_nesterov_weight_decay_matches_pytorch_rule() {
        let cfg = OptimConfig {
            kind: "sgd".into(),
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.01,
            ..OptimConfig::default()
        };
        let var = Var::from_tensor(&Tensor::new(&[1.0f64], &Device::Cpu).unwrap()).unwrap();
        let mut opt = Optimizer::new(&cfg, vec![("p".into(), var.clone())]);
        // Python: p=1; buf=None; for _ in 2: g=2(p-3)+0.01p; buf=g if None else 0.9buf+g; p-=0.1(g+0.9buf)
        let (mut p, mut buf): (f64, Option<f64>) = (1.0, None);
        for _ in 0..3 {
            let g = 2.0 * (p - 3.0) + 0.01 * p;
            let b = buf.map_or(g, |b| 0.9 * b + g);
            buf = Some(b);
            p -= 0.1 * (g + 0.9 * b);
            opt.step(&quad_grads(&var), 0.1).unwrap();
            let got = var.as_tensor().to_vec1::<f64>().unwrap()[0];
            assert!((got - p).abs() < 1e-12, "{got} vs {p}");
        }
    }

    #[test]
    fn adam_matches_pytorch_rule_and_state_round_trips() {
        let cfg = OptimConfig {
            kind: "adam".into(),
            weight_decay: 0.0,
            ..OptimConfig::default()
        };
        let var = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut opt = Optimizer::new(&cfg, vec![("p".into(), var.clone())]);
        let mut p = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=4 {
            for j in 0..2 {
                let g = 2.0 * (p[j] - 3.0);
                m[j] = 0.9 * m[j] + 0.1 * g;
                v[j] = 0.999 * v[j] + 0.001 * g * g;
                let mh = m[j] / (1.0 - 0.9f64.powi(t));
                let vh = v[j] / (1.0 - 0.999f64.powi(t));
                p[j] -= 0.01 * mh / (vh.sqrt() + 1e-8);
            }
            opt.step(&quad_grads(&var), 0.01).unwrap();
        }
        let got = var.as_tensor().to_vec1::<f64>().unwrap();
        for j in 0..2 {
            assert!((got[j] - p[j]).abs() < 1e-12, "{got:?} vs {p:?}");
        }
        // A restored optimiser continues exactly like the original.
        let var2 = Var::from_tensor(var.as_tensor()).unwrap();
        let mut opt2 = Optimizer::new(&cfg, vec![("p".into(), var2.clone())]);
        opt2.load_state(&opt.state(), opt.steps).unwrap();
        opt.step(&quad_grads(&var), 0.01).unwrap();
        opt2.step(&quad_grads(&var2), 0.01).unwrap();
        assert_eq!(
            var.as_tensor().to_vec1::<f64>().unwrap(),
            var2.as_tensor().to_vec1::<f64>().unwrap()
        );
    }
}
