//! SGD (momentum, Nesterov, weight decay) and Adam with PyTorch's update rules, with state that can
//! be checkpointed and restored exactly.

use crate::error::{Error, Result};
use crate::model::layers::cpu_op::CpuFloat;
use crate::train::config::OptimConfig;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp3, Layout, Tensor, Var, WithDType};
use std::collections::HashMap;

/// Where an optimiser step reads each variable's gradient from: autograd's [`GradStore`], or the
/// closed-form gradients of a dense step (keyed by the variable's tensor id).
pub trait Gradients {
    /// The gradient of the loss with respect to `var`, if it has one.
    fn grad(&self, var: &Var) -> Option<Tensor>;
}

impl Gradients for GradStore {
    fn grad(&self, var: &Var) -> Option<Tensor> {
        self.get(var.as_tensor()).cloned()
    }
}

impl Gradients for HashMap<candle_core::TensorId, Tensor> {
    fn grad(&self, var: &Var) -> Option<Tensor> {
        self.get(&var.as_tensor().id()).cloned()
    }
}

/// One step's update rule with its scalars.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// torch.optim.SGD: momentum μ, Nesterov, weight decay.
    Sgd {
        lr: f64,
        wd: f64,
        mu: f64,
        nesterov: bool,
    },
    /// torch.optim.Adam with bias corrections `bc1 = 1 − β₁ᵗ`, `bc2 = 1 − β₂ᵗ`.
    Adam {
        lr: f64,
        wd: f64,
        b1: f64,
        b2: f64,
        bc1: f64,
        bc2: f64,
        eps: f64,
    },
}

impl Rule {
    fn lr_wd(&self) -> (f64, f64) {
        match *self {
            Rule::Sgd { lr, wd, .. } | Rule::Adam { lr, wd, .. } => (lr, wd),
        }
    }
}

/// Which tensor an in-place pass writes, and from what.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// SGD's momentum buffer or Adam's first moment, from (p, g).
    FirstMoment,
    /// Adam's second moment, from (p, g).
    SecondMoment,
    /// SGD's parameter update, from (g, momentum buffer) (the buffer is unused without momentum).
    SgdParam,
    /// Adam's parameter update, from (m, v).
    AdamParam,
}

/// One element-wise pass of an update rule, in place on the CPU: each line is the scalar form of
/// a line of [`Optimizer::tensor_update`] — candle's `x * c` is `x·T(c) + T(0)` and `x / c` is
/// `x·T(1/c) + T(0)` (its affine op) — so the same roundings happen in the same order and the
/// result has the same bits (tested). Passes that need g' = g + wd·p recompute it from p, which
/// the parameter pass (the last) is the only one to change.
struct InPlace {
    rule: Rule,
    part: Part,
}

fn in_place_kernel<T: CpuFloat + WithDType>(
    op: &InPlace,
    dst: &mut [T],
    a: &[T],
    b: &[T],
) -> candle_core::Result<()> {
    if a.len() != dst.len() || b.len() != dst.len() {
        candle_core::bail!(
            "optimiser update: {} elements against {} and {}",
            dst.len(),
            a.len(),
            b.len()
        );
    }
    let c = <T as WithDType>::from_f64;
    let scale = |x: T, k: T| x * k + T::default();
    let (lr, wd) = op.rule.lr_wd();
    let (lr_t, wd_t) = (c(lr), c(wd));
    // g' = g + p·wd (the tensor route skips the term when wd = 0).
    let decayed = |p: T, g: T| if wd != 0.0 { g + scale(p, wd_t) } else { g };
    match (op.part, op.rule) {
        (Part::FirstMoment, Rule::Sgd { mu, .. }) => {
            let mu_t = c(mu);
            for ((m, &p), &g) in dst.iter_mut().zip(a).zip(b) {
                *m = scale(*m, mu_t) + decayed(p, g);
            }
        }
        (Part::FirstMoment, Rule::Adam { b1, .. }) => {
            let (b1_t, nb1) = (c(b1), c(1.0 - b1));
            for ((m, &p), &g) in dst.iter_mut().zip(a).zip(b) {
                *m = scale(*m, b1_t) + scale(decayed(p, g), nb1);
            }
        }
        (Part::SecondMoment, Rule::Adam { b2, .. }) => {
            let (b2_t, nb2) = (c(b2), c(1.0 - b2));
            for ((v, &p), &g) in dst.iter_mut().zip(a).zip(b) {
                let g = decayed(p, g);
                *v = scale(*v, b2_t) + scale(g * g, nb2);
            }
        }
        (Part::SgdParam, Rule::Sgd { mu, nesterov, .. }) => {
            let mu_t = c(mu);
            for ((p, &g), &buf) in dst.iter_mut().zip(a).zip(b) {
                let g = decayed(*p, g);
                let d = if mu == 0.0 {
                    g
                } else if nesterov {
                    g + scale(buf, mu_t)
                } else {
                    buf
                };
                *p -= scale(d, lr_t);
            }
        }
        (Part::AdamParam, Rule::Adam { bc1, bc2, eps, .. }) => {
            let (ibc1, ibc2, eps_t) = (c(1.0 / bc1), c(1.0 / bc2), c(eps));
            for ((p, &m), &v) in dst.iter_mut().zip(a).zip(b) {
                // (v/bc2).sqrt() + eps is affine(1, eps): x·1 + eps.
                let denom = scale(v, ibc2).sqrt() * T::ONE + eps_t;
                *p -= scale(scale(m, ibc1) / denom, lr_t);
            }
        }
        (part, rule) => candle_core::bail!("optimiser update: no pass {part:?} for {rule:?}"),
    }
    Ok(())
}

fn contiguous<'a, T>(v: &'a [T], l: &Layout) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("optimiser update: operands must be contiguous"),
    }
}

impl InplaceOp3 for InPlace {
    fn name(&self) -> &'static str {
        "optimiser-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        let Some((start, end)) = l1.contiguous_offsets() else {
            candle_core::bail!("optimiser update: the destination must be contiguous");
        };
        match (s1, s2, s3) {
            (CpuStorage::F32(d), CpuStorage::F32(a), CpuStorage::F32(b)) => in_place_kernel(
                self,
                &mut d[start..end],
                contiguous(a, l2)?,
                contiguous(b, l3)?,
            ),
            (CpuStorage::F64(d), CpuStorage::F64(a), CpuStorage::F64(b)) => in_place_kernel(
                self,
                &mut d[start..end],
                contiguous(a, l2)?,
                contiguous(b, l3)?,
            ),
            _ => candle_core::bail!("optimiser update: f32 or f64 operands of one dtype"),
        }
    }
}

/// Whether the in-place CPU passes can update `p` from `g` and the buffers.
fn fusable(p: &Tensor, g: &Tensor, buffers: [&Option<Tensor>; 2]) -> bool {
    let ok = |t: &Tensor| {
        t.device().is_cpu() && t.dtype() == p.dtype() && t.is_contiguous() && t.shape() == p.shape()
    };
    matches!(p.dtype(), DType::F32 | DType::F64)
        && ok(p)
        && ok(g)
        && buffers.iter().all(|b| b.as_ref().is_none_or(ok))
}

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
    /// are left alone, as PyTorch skips parameters whose `.grad` is None). On the CPU the
    /// parameters and buffers are updated in place, one pass each ([`InPlace`]), with the same
    /// bits as the tensor route ([`Self::tensor_update`]) that other devices take (tested).
    pub fn step(&mut self, grads: &impl Gradients, lr: f64) -> Result<()> {
        self.step_with(grads, lr, true)
    }

    /// [`Self::step`], with the in-place CPU passes allowed or not.
    fn step_with(&mut self, grads: &impl Gradients, lr: f64, fused: bool) -> Result<()> {
        self.steps += 1;
        for i in 0..self.vars.len() {
            let (name, var) = self.vars[i].clone();
            let Some(g) = grads.grad(&var) else {
                continue;
            };
            let p = var.as_tensor().detach();
            let g = g.detach();
            if g.shape() != p.shape() {
                return Err(Error::Internal(format!(
                    "the gradient of {name} has shape {:?}, the parameter {:?}",
                    g.dims(),
                    p.dims()
                )));
            }
            let rule = self.rule(lr)?;
            if fused && fusable(&p, &g, [&self.m[i], &self.v[i]]) {
                self.in_place_update(rule, var.as_tensor(), &g, i)
                    .map_err(|e| Error::Internal(format!("updating {name}: {e}")))?;
                continue;
            }
            let (new, m, v) = self.tensor_update(&rule, &p, g, i)?;
            self.m[i] = m;
            self.v[i] = v;
            var.set(&new)
                .map_err(|e| Error::Internal(format!("updating {name}: {e}")))?;
        }
        Ok(())
    }

    /// The update rule of this step (bias corrections use the step count).
    fn rule(&self, lr: f64) -> Result<Rule> {
        let c = &self.cfg;
        let t = self.steps as i32;
        Ok(match c.kind.as_str() {
            "sgd" => Rule::Sgd {
                lr,
                wd: c.weight_decay,
                mu: c.momentum,
                nesterov: c.nesterov,
            },
            "adam" => Rule::Adam {
                lr,
                wd: c.weight_decay,
                b1: c.beta1,
                b2: c.beta2,
                bc1: 1.0 - c.beta1.powi(t),
                bc2: 1.0 - c.beta2.powi(t),
                eps: c.eps,
            },
            other => {
                return Err(Error::BadInput(format!(
                    "unknown optimiser `{other}` (sgd or adam)"
                )));
            }
        })
    }

    /// The update on the CPU: buffers, then the parameter, each in one in-place pass ([`InPlace`]);
    /// a buffer's first value comes from the tensor route (a new tensor).
    fn in_place_update(&mut self, rule: Rule, p: &Tensor, g: &Tensor, i: usize) -> Result<()> {
        let pass = |part| InPlace { rule, part };
        let (_, wd) = rule.lr_wd();
        let decayed = || -> Result<Tensor> {
            Ok(if wd != 0.0 {
                (g + (p * wd)?)?
            } else {
                g.copy()?
            })
        };
        match rule {
            Rule::Sgd { mu, .. } => {
                if mu == 0.0 {
                    p.inplace_op3(g, g, &pass(Part::SgdParam))?;
                    return Ok(());
                }
                let buf = match &self.m[i] {
                    Some(b) => {
                        b.inplace_op3(p, g, &pass(Part::FirstMoment))?;
                        b.clone()
                    }
                    None => decayed()?,
                };
                p.inplace_op3(g, &buf, &pass(Part::SgdParam))?;
                self.m[i] = Some(buf);
            }
            Rule::Adam { b1, b2, .. } => {
                let m = match &self.m[i] {
                    Some(m) => {
                        m.inplace_op3(p, g, &pass(Part::FirstMoment))?;
                        m.clone()
                    }
                    None => (decayed()? * (1.0 - b1))?,
                };
                let v = match &self.v[i] {
                    Some(v) => {
                        v.inplace_op3(p, g, &pass(Part::SecondMoment))?;
                        v.clone()
                    }
                    None => (decayed()?.sqr()? * (1.0 - b2))?,
                };
                p.inplace_op3(&m, &v, &pass(Part::AdamParam))?;
                self.m[i] = Some(m);
                self.v[i] = Some(v);
            }
        }
        Ok(())
    }

    /// The update with candle's tensor ops (any device): returns (new weights, m, v).
    fn tensor_update(
        &self,
        rule: &Rule,
        p: &Tensor,
        g: Tensor,
        i: usize,
    ) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
        let (lr, wd) = rule.lr_wd();
        let g = if wd != 0.0 { (g + (p * wd)?)? } else { g };
        let (update, m, v) = match *rule {
            Rule::Sgd { mu, nesterov, .. } => {
                if mu == 0.0 {
                    (g, None, None)
                } else {
                    let buf = match &self.m[i] {
                        None => g.clone(),
                        Some(b) => ((b * mu)? + &g)?,
                    };
                    let d = if nesterov {
                        (&g + (&buf * mu)?)?
                    } else {
                        buf.clone()
                    };
                    (d, Some(buf), None)
                }
            }
            Rule::Adam {
                b1,
                b2,
                bc1,
                bc2,
                eps,
                ..
            } => {
                let m = match &self.m[i] {
                    None => (&g * (1.0 - b1))?,
                    Some(m) => ((m * b1)? + (&g * (1.0 - b1))?)?,
                };
                let g2 = g.sqr()?;
                let v = match &self.v[i] {
                    None => (&g2 * (1.0 - b2))?,
                    Some(v) => ((v * b2)? + (&g2 * (1.0 - b2))?)?,
                };
                let denom = ((&v / bc2)?.sqrt()? + eps)?;
                let d = ((&m / bc1)? / denom)?;
                (d, Some(m), Some(v))
            }
        };
        Ok(((p - (update * lr)?)?, m, v))
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
    use candle_core::Device;

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

    /// The in-place CPU passes give the tensor route's bits, step after step, for every rule.
    #[test]
    fn in_place_update_equals_tensor_route_bitwise() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let base = OptimConfig::default();
        let cfgs = [
            OptimConfig {
                kind: "sgd".into(),
                momentum: 0.0,
                weight_decay: 0.0,
                ..base.clone()
            },
            OptimConfig {
                kind: "sgd".into(),
                momentum: 0.9,
                nesterov: true,
                weight_decay: 5e-4,
                ..base.clone()
            },
            OptimConfig {
                kind: "sgd".into(),
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.0,
                ..base.clone()
            },
            OptimConfig {
                kind: "adam".into(),
                weight_decay: 1e-2,
                ..base.clone()
            },
            OptimConfig {
                kind: "adam".into(),
                weight_decay: 0.0,
                ..base.clone()
            },
        ];
        for dtype in [DType::F32, DType::F64] {
            for cfg in &cfgs {
                let init: Vec<f64> = (0..257).map(|_| rng.random_range(-1.0..1.0)).collect();
                let t = Tensor::from_vec(init, (257,), &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let (a, b) = (Var::from_tensor(&t).unwrap(), Var::from_tensor(&t).unwrap());
                let mut fa = Optimizer::new(cfg, vec![("p".into(), a.clone())]);
                let mut fb = Optimizer::new(cfg, vec![("p".into(), b.clone())]);
                // (The in-place passes do run on CPU tensors: this test compares two routes.)
                assert!(fusable(&t, &t, [&None, &None]));
                for step in 0..4 {
                    let g: Vec<f64> = (0..257).map(|_| rng.random_range(-3.0..3.0)).collect();
                    let g = Tensor::from_vec(g, (257,), &Device::Cpu)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap();
                    let ga: HashMap<_, _> = [(a.as_tensor().id(), g.clone())].into();
                    let gb: HashMap<_, _> = [(b.as_tensor().id(), g)].into();
                    let lr = 0.05 / (step + 1) as f64;
                    fa.step_with(&ga, lr, true).unwrap();
                    fb.step_with(&gb, lr, false).unwrap();
                    let bits = |v: &Var| {
                        v.as_tensor()
                            .to_dtype(DType::F64)
                            .unwrap()
                            .to_vec1::<f64>()
                            .unwrap()
                            .iter()
                            .map(|x| x.to_bits())
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(bits(&a), bits(&b), "{cfg:?} {dtype:?} step {step}");
                    for (k, sa) in fa.state() {
                        let sb = &fb.state()[&k];
                        let d = (&sa - sb).unwrap().abs().unwrap().max_all().unwrap();
                        let d = d.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
                        assert_eq!(d, 0.0, "{k} {cfg:?} {dtype:?}");
                    }
                }
            }
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
