//! The exact training step of a dense ReLU network (Normalize → Flatten → (Linear → ReLU)* →
//! Linear) in closed form on the CPU: the forward pass, the input gradient ∇ₓS of every row, the
//! reverse of that gradient (the second-order terms of GReg's penalty, Sharifi et al. 2024 eq. 5)
//! and the ordinary backward pass, each a few GEMMs on contiguous buffers.
//!
//! The same numbers as [`super::step::graph_step`] (tested to rounding, every loss term, both
//! penalty forms and norms, absent-class models), without a graph: candle's reverse pass allocates
//! and accumulates a tensor per node, and a double-backprop graph of an MLP has hundreds.
//!
//! Notation (0-based layers l = 0..L−1, `W_l (out_l × in_l)`): `h_0` is the normalised input,
//! `a_l = h_l W_lᵀ + b_l`, `h_{l+1} = relu(a_l)`, logits `z = a_{L−1}`. With `u = ∂S/∂z = −softmax(z_{<K}/T)`
//! (zero on an absent class) the input gradient is the chain `δ_{L−1} = u`,
//! `δ_{l−1} = (δ_l W_l) ⊙ 1{h_l > 0}`, `G = (δ_0 W_0)/σ`, one row per sample: row i is ∇ₓS(x_i).
//! The penalty weighs row i by a constant c_i (its mask, divided by the group size in the
//! group-scaled form), P = λ_∇ Σ ω_i ‖c_i G_i‖; its reverse runs the chain forwards:
//! `γ_0 = ∂P/∂G / σ`, `W̄_l += δ_lᵀ γ_l`, `γ_{l+1} = (γ_l W_lᵀ) ⊙ 1{h_{l+1} > 0}`, and ends in
//! `ū = γ_{L−1} W_{L−1}ᵀ`, which reaches the logits through the softmax Jacobian. The masks
//! 1{h > 0} are locally constant (ReLU'' = 0 almost everywhere), as in autograd.

use super::losses::{PenaltyForm, PenaltyNorm};
use super::step::{LossTerms, StepGrads, StepInput, StepResult};
use crate::error::{Error, Result};
use crate::model::layers::cpu_op::CpuFloat;
use crate::model::layers::gemm::{Mat, gemm_into};
use crate::model::layers::relu::{mask_in_place, relu_in_place};
use crate::model::layers::{Layer, Linear};
use crate::model::{Classifier, Model};
use crate::score::{energy_f64, softmax_f64};
use candle_core::{DType, Device, Tensor, TensorId, WithDType};
use std::collections::HashMap;

/// A dense ReLU network on the CPU, read off a [`Model`].
pub struct DenseNet<'m> {
    linears: Vec<&'m Linear>,
    /// Per-channel normalisation and the pixels per channel (`h·w`).
    mean: &'m [f32],
    std: &'m [f32],
    plane: usize,
    dtype: DType,
    /// Outputs K+1 with the absent class last (DOS), or K.
    absent_class: bool,
}

impl<'m> DenseNet<'m> {
    /// The model as a dense ReLU network, if it is one (`Normalize → Flatten → Linear (→ ReLU →
    /// Linear)*`) on the CPU in f32 or f64.
    pub fn of(model: &'m Model) -> Option<DenseNet<'m>> {
        if !model.device().is_cpu() || !matches!(model.dtype(), DType::F32 | DType::F64) {
            return None;
        }
        let layers = model.layers();
        let (Layer::Normalize(norm), Layer::Flatten) = (layers.first()?, layers.get(1)?) else {
            return None;
        };
        let mut linears = Vec::new();
        for (j, layer) in layers[2..].iter().enumerate() {
            match (j % 2, layer) {
                (0, Layer::Linear(l)) => linears.push(l),
                (1, Layer::Relu) => {}
                _ => return None,
            }
        }
        // Ends in a Linear: an odd number of layers after the flatten.
        if (layers.len() - 2).is_multiple_of(2) {
            return None;
        }
        let [c, h, w] = model.spec().input_shape;
        if norm.std().len() != c || linears[0].in_features() != c * h * w {
            return None;
        }
        Some(DenseNet {
            linears,
            mean: norm.mean(),
            std: norm.std(),
            plane: h * w,
            dtype: model.dtype(),
            absent_class: model.has_absent_class(),
        })
    }

    /// The linear layers, input first.
    pub(crate) fn linears(&self) -> &[&'m Linear] {
        &self.linears
    }

    /// Per-channel mean and std of the normalisation, and the pixels per channel.
    pub(crate) fn normalisation(&self) -> (&'m [f32], &'m [f32], usize) {
        (self.mean, self.std, self.plane)
    }

    /// The parameters' dtype.
    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }
}

/// One step of L = CE + λ_S·L_S + λ_OE·L_OE + λ_∇·L_∇ (or DOS's objective) with every gradient in
/// closed form; ‖∇ₓS‖ and the accuracy come with it (`stats` only decides whether the input
/// gradient is formed when no penalty needs it).
pub fn dense_step(
    net: &DenseNet<'_>,
    t: &LossTerms,
    b: &StepInput,
    stats: bool,
) -> Result<StepResult> {
    match net.dtype {
        DType::F32 => run::<f32>(net, t, b, stats),
        DType::F64 => run::<f64>(net, t, b, stats),
        other => Err(Error::Internal(format!("dense step in {other:?}"))),
    }
}

// Every GEMM runs on rayon's threads: they split the output, never the inner dimension, so the
// result has the same bits for any thread count (tested). (Running a weight gradient and the next
// chain step side by side on one thread each instead was measured: no faster on 2 cores.)

/// `dst (n × out) [+]= src (n × in) · W (out × in)ᵀ`.
fn times_wt<T: CpuFloat>(
    dst: &mut [T],
    src: &[T],
    w: &[T],
    n: usize,
    inp: usize,
    out: usize,
    acc: bool,
) -> Result<()> {
    let w = Mat::row_major(w, out, inp).t();
    Ok(gemm_into(dst, Mat::row_major(src, n, inp), w, acc, true)?)
}

/// `src (n × out) · W (out × in)`.
fn times_w<T: CpuFloat>(src: &[T], w: &[T], n: usize, inp: usize, out: usize) -> Result<Vec<T>> {
    let mut dst = vec![T::default(); n * inp];
    let (a, w) = (Mat::row_major(src, n, out), Mat::row_major(w, out, inp));
    gemm_into(&mut dst, a, w, false, true)?;
    Ok(dst)
}

/// `dst (out × in) += A (n × out)ᵀ · B (n × in)`: a weight gradient, summed over the rows.
fn add_at_b<T: CpuFloat>(
    dst: &mut [T],
    a: &[T],
    b: &[T],
    n: usize,
    out: usize,
    inp: usize,
) -> Result<()> {
    let (a, b) = (Mat::row_major(a, n, out).t(), Mat::row_major(b, n, inp));
    Ok(gemm_into(dst, a, b, true, true)?)
}

/// Per-row quantities of the logits: energies, the ID softmax p (at T) and the full softmax q
/// (at 1) with its log-normaliser.
struct Heads {
    k: usize,
    s: Vec<f64>,
    p: Vec<f64>,
    q: Vec<f64>,
    lse: Vec<f64>,
}

fn heads<T: CpuFloat + WithDType>(z: &[T], n: usize, kt: usize, k: usize, temp: f64) -> Heads {
    let mut h = Heads {
        k,
        s: Vec::with_capacity(n),
        p: Vec::with_capacity(n * k),
        q: Vec::with_capacity(n * kt),
        lse: Vec::with_capacity(n),
    };
    for row in z.chunks(kt) {
        let row: Vec<f64> = row.iter().map(|v| v.to_f64()).collect();
        h.s.push(energy_f64(&row[..k], temp));
        h.p.extend(softmax_f64(&row[..k], temp));
        h.q.extend(softmax_f64(&row, 1.0));
        h.lse.push(-energy_f64(&row, 1.0));
    }
    h
}

/// Which rows the penalty covers and with what constants: `c` scales row i of the input gradient,
/// `omega` is ∂L_∇/∂‖c_i G_i‖ before λ_∇.
fn penalty_weights(
    t: &LossTerms,
    s: &[f64],
    n_in: usize,
    pen: std::ops::Range<usize>,
) -> (Vec<f64>, Vec<f64>) {
    let n = s.len();
    let n_pen = pen.len();
    let mut c = vec![0.0; n];
    let mut omega = vec![0.0; n];
    for i in 0..n {
        let hit = if i < n_in {
            s[i] <= t.m_in
        } else {
            pen.contains(&i) && s[i] >= t.m_out
        };
        if !hit {
            continue;
        }
        let group = if i < n_in { n_in } else { n_pen } as f64;
        (c[i], omega[i]) = match t.form {
            PenaltyForm::PerSample => (1.0, 1.0 / group),
            PenaltyForm::GroupScaled => (1.0 / group, 1.0 / (n_in + n_pen) as f64),
        };
    }
    (c, omega)
}

fn run<T: CpuFloat + WithDType>(
    net: &DenseNet<'_>,
    t: &LossTerms,
    b: &StepInput,
    stats: bool,
) -> Result<StepResult> {
    let (n, n_in, n_low) = (b.n(), b.n_in, b.n_low);
    let n_aux = n - n_in;
    let layers = net.linears.len();
    let dims: Vec<(usize, usize)> = net
        .linears
        .iter()
        .map(|l| (l.in_features(), l.out_features()))
        .collect();
    let d0 = dims[0].0;
    let x = b.x.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1::<T>()?;
    let y = b.y.to_vec1::<u32>()?;
    if x.len() != n * d0 || y.len() != n_in {
        return Err(Error::Internal(format!(
            "dense step: {} inputs and {} labels for {n} rows of {d0} ({n_in} labelled)",
            x.len(),
            y.len()
        )));
    }
    let weights = net
        .linears
        .iter()
        .map(|l| Ok(l.weight().flatten_all()?.to_vec1::<T>()?))
        .collect::<Result<Vec<_>>>()?;

    // Forward: h[l] is the input of layer l; z the logits. (x − μ)/σ as candle's Normalize does,
    // with μ and σ spread over the columns of a row.
    let per_column = |v: &[f32]| -> Vec<T> {
        (0..d0)
            .map(|j| T::from_f64(v[j / net.plane].into()))
            .collect()
    };
    let (mean, std) = (per_column(net.mean), per_column(net.std));
    let mut x0 = x;
    for row in x0.chunks_mut(d0) {
        for ((v, &m), &s) in row.iter_mut().zip(&mean).zip(&std) {
            *v = (*v - m) / s;
        }
    }
    let mut h = vec![x0];
    let mut z = Vec::new();
    for (l, lin) in net.linears.iter().enumerate() {
        let (inp, out) = dims[l];
        let mut a = match lin.bias() {
            Some(bias) => bias.to_vec1::<T>()?.repeat(n),
            None => vec![T::default(); n * out],
        };
        times_wt(&mut a, &h[l], &weights[l], n, inp, out, true)?;
        if l + 1 < layers {
            relu_in_place(&mut a);
            h.push(a);
        } else {
            z = a;
        }
    }
    let kt = dims[layers - 1].1;
    let k = kt - usize::from(net.absent_class);
    let hd = heads(&z, n, kt, k, t.temperature);

    // The loss terms and their gradient in the logits, zbar (n × kt).
    let mut zbar = vec![0f64; n * kt];
    let mut ce = 0.0;
    for (i, &yi) in y.iter().enumerate() {
        let yi = yi as usize;
        if yi >= kt {
            return Err(Error::BadInput(format!(
                "label {yi} is out of range for a model with {kt} outputs"
            )));
        }
        ce += hd.lse[i] - z[i * kt + yi].to_f64();
        for j in 0..kt {
            let e = f64::from(u8::from(j == yi));
            zbar[i * kt + j] += (hd.q[i * kt + j] - e) / n_in as f64;
        }
    }
    ce /= n_in as f64;
    let mut loss = ce;
    let loss_absent = if net.absent_class {
        let mut term = 0.0;
        if n_aux > 0 {
            let w = t.lambda_absent / n_aux as f64;
            for i in n_in..n {
                term += hd.lse[i] - z[i * kt + kt - 1].to_f64();
                for j in 0..kt {
                    let e = f64::from(u8::from(j == kt - 1));
                    zbar[i * kt + j] += w * (hd.q[i * kt + j] - e);
                }
            }
            term *= w;
        }
        loss += term;
        Some(term)
    } else {
        None
    };
    // ∂S_i/∂z_{ij} = −p_ij for j < K: adds sbar_i·∂S_i/∂z_i to zbar.
    let add_energy_grad = |zbar: &mut [f64], i: usize, sbar: f64| {
        for j in 0..hd.k {
            zbar[i * kt + j] -= sbar * hd.p[i * hd.k + j];
        }
    };
    let mut loss_energy = 0.0;
    if n_aux > 0 && t.lambda_energy > 0.0 {
        let groups = [(0..n_in, 1.0, t.m_in), (n_in..n_in + n_low, -1.0, t.m_out)];
        for (rows, sign, margin) in groups {
            let len = rows.len().max(1) as f64;
            for i in rows {
                // relu(±(S − m))², gradient ±2·relu(±(S − m)).
                let gap = (sign * (hd.s[i] - margin)).max(0.0);
                loss_energy += t.lambda_energy * gap * gap / len;
                add_energy_grad(&mut zbar, i, t.lambda_energy * sign * 2.0 * gap / len);
            }
        }
        loss += loss_energy;
    }
    if n_aux > 0 && t.lambda_oe > 0.0 {
        let w = t.lambda_oe / n_aux as f64;
        for i in n_in..n {
            let row = &z[i * kt..(i + 1) * kt];
            let mean = row.iter().map(|v| v.to_f64()).sum::<f64>() / kt as f64;
            loss += w * (hd.lse[i] - mean);
            for j in 0..kt {
                zbar[i * kt + j] += w * (hd.q[i * kt + j] - 1.0 / kt as f64);
            }
        }
    }

    // The input gradient of every row: δ_l (gradient of S in a_l) for l = L−1 … 0, then G.
    let penalty = n_aux > 0 && t.lambda_grad > 0.0;
    let mut loss_grad = 0.0;
    let mut grad_norms = None;
    let mut wbar: Vec<Vec<T>> = dims
        .iter()
        .map(|&(i, o)| vec![T::default(); i * o])
        .collect();
    if penalty || stats {
        let mut u = vec![T::default(); n * kt];
        for i in 0..n {
            for j in 0..k {
                u[i * kt + j] = T::from_f64(-hd.p[i * k + j]);
            }
        }
        let mut deltas = vec![Vec::new(); layers];
        deltas[layers - 1] = u;
        for l in (1..layers).rev() {
            let (inp, out) = dims[l];
            let mut d = times_w(&deltas[l], &weights[l], n, inp, out)?;
            mask_in_place(&mut d, &h[l]);
            deltas[l - 1] = d;
        }
        let mut g = times_w(&deltas[0], &weights[0], n, d0, dims[0].1)?;
        for row in g.chunks_mut(d0) {
            for (v, &s) in row.iter_mut().zip(&std) {
                *v /= s;
            }
        }
        let sq: Vec<f64> = g
            .chunks(d0)
            .map(|r| r.iter().map(|v| v.to_f64() * v.to_f64()).sum())
            .collect();
        grad_norms = Some(sq.iter().map(|v: &f64| v.sqrt()).collect::<Vec<f64>>());
        if penalty {
            let (c, omega) = penalty_weights(t, &hd.s, n_in, b.penalised());
            // γ_0 = ∂P/∂G / σ, row by row (zero rows where ω_i c_i = 0).
            let mut gamma = vec![T::default(); n * d0];
            for i in 0..n {
                if omega[i] * c[i] == 0.0 {
                    continue;
                }
                let row = &g[i * d0..(i + 1) * d0];
                let out = &mut gamma[i * d0..(i + 1) * d0];
                let (r, scale) = match t.norm {
                    // ‖c g‖ = sqrt(c²Σg² + 1e-12) (differentiable at 0, as the graph's).
                    PenaltyNorm::L2 => {
                        let r = (c[i] * c[i] * sq[i] + 1e-12).sqrt();
                        (r, t.lambda_grad * omega[i] * c[i] * c[i] / r)
                    }
                    PenaltyNorm::L1 => {
                        let r = c[i] * row.iter().map(|v| v.to_f64().abs()).sum::<f64>();
                        (r, t.lambda_grad * omega[i] * c[i])
                    }
                };
                loss_grad += t.lambda_grad * omega[i] * r;
                let scale_t = T::from_f64(scale);
                for ((o, &gv), &s) in out.iter_mut().zip(row).zip(&std) {
                    let d = match t.norm {
                        PenaltyNorm::L2 => gv * scale_t,
                        // d|v|/dv = 1 at v = 0 (candle's abs rule).
                        PenaltyNorm::L1 if gv >= T::default() => scale_t,
                        PenaltyNorm::L1 => -scale_t,
                    };
                    *o = d / s;
                }
            }
            loss += loss_grad;
            // The chain run forwards: W̄_l += δ_lᵀ γ_l, γ_{l+1} = (γ_l W_lᵀ) ⊙ 1{h_{l+1} > 0}.
            for l in 0..layers {
                let (inp, out) = dims[l];
                let mut next = vec![T::default(); n * out];
                add_at_b(&mut wbar[l], &deltas[l], &gamma, n, out, inp)?;
                times_wt(&mut next, &gamma, &weights[l], n, inp, out, false)?;
                if l + 1 < layers {
                    mask_in_place(&mut next, &h[l + 1]);
                }
                gamma = next;
            }
            // ū = γ_{L−1}; u_i = −softmax(z_{i,<K}/T): z̄ += −(1/T)(p ⊙ ū − p (p·ū)).
            for i in 0..n {
                let p = &hd.p[i * k..(i + 1) * k];
                let ub: Vec<f64> = gamma[i * kt..i * kt + k]
                    .iter()
                    .map(|v| v.to_f64())
                    .collect();
                let dot: f64 = p.iter().zip(&ub).map(|(a, b)| a * b).sum();
                for j in 0..k {
                    zbar[i * kt + j] -= p[j] * (ub[j] - dot) / t.temperature;
                }
            }
        }
    }
    let correct = (0..n_in)
        .filter(|&i| {
            let row = &z[i * kt..i * kt + k];
            let best = (0..k).fold(0, |m, j| if row[j] > row[m] { j } else { m });
            best == y[i] as usize
        })
        .count();
    // (A non-finite loss stops the run: no gradient is needed.)
    let grads = if loss.is_finite() {
        backward(net, &dims, &weights, &h, &zbar, wbar)?
    } else {
        HashMap::new()
    };
    Ok(StepResult {
        grads: StepGrads::Closed(grads),
        loss,
        ce,
        loss_energy,
        loss_grad,
        loss_absent,
        energies: hd.s,
        grad_norms,
        correct: Some(correct),
    })
}

/// The ordinary backward from the logit gradient `zbar`: b̄_l = Σ_i e_i, W̄_l += eᵀ h_l,
/// e ← (e W_l) ⊙ 1{h_l > 0}; `wbar` holds the penalty's part of each W̄_l already.
fn backward<T: CpuFloat + WithDType>(
    net: &DenseNet<'_>,
    dims: &[(usize, usize)],
    weights: &[Vec<T>],
    h: &[Vec<T>],
    zbar: &[f64],
    mut wbar: Vec<Vec<T>>,
) -> Result<HashMap<TensorId, Tensor>> {
    let n = h[0].len() / dims[0].0;
    let layers = dims.len();
    let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
    let mut e: Vec<T> = zbar.iter().map(|&v| T::from_f64(v)).collect();
    for l in (0..layers).rev() {
        let (inp, out) = dims[l];
        let lin = net.linears[l];
        if let Some(bias) = lin.bias() {
            let mut bbar = vec![0f64; out];
            for row in e.chunks(out) {
                for (s, v) in bbar.iter_mut().zip(row) {
                    *s += v.to_f64();
                }
            }
            let bbar: Vec<T> = bbar.into_iter().map(T::from_f64).collect();
            grads.insert(bias.id(), Tensor::from_vec(bbar, out, &Device::Cpu)?);
        }
        add_at_b(&mut wbar[l], &e, &h[l], n, out, inp)?;
        if l > 0 {
            e = times_w(&e, &weights[l], n, inp, out)?;
            mask_in_place(&mut e, &h[l]);
        }
    }
    for (l, w) in wbar.into_iter().enumerate() {
        let (inp, out) = dims[l];
        let id = net.linears[l].weight().id();
        grads.insert(id, Tensor::from_vec(w, (out, inp), &Device::Cpu)?);
    }
    Ok(grads)
}
