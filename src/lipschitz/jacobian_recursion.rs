//! The RecurJac recursion (Zhang, Zhang & Hsieh, AAAI 2019, backward direction): boxes of the
//! partial Jacobian products of a dense ReLU chain over a ball, for one top row.
//!
//! Stages z_j = A_j h_{j−1} + b_j, h_j = σ_j(z_j) for j = 0..m−1 (h_{−1} = x, z_{m−1} the logits,
//! σ_j a ReLU or the identity). A top row t — e_k for class k, or −p with p in the softmax
//! box ∩ simplex — is carried backwards: g_{m−1} = t, a_{j−1} = A_jᵀ g_j, g_j = d_j ⊙ a_j with d_j in
//! the derivative box of σ_j on the ball ({0}, {1} or [0, 1]). FastLip bounds every a_j by interval
//! arithmetic. RecurJac bounds each entry a_{j−1,r} = g_jᵀ(A_j e_r) by [`Recursion::ub_from`]: of
//! the terms a_{j,i} d_{j,i} w_i of g_jᵀw, those whose factor a_{j,i} has a known sign on the ball
//! (or whose d_{j,i} is fixed) are ≤ c_i a_{j,i} with c_i = w_i d*_i (d*_i the end of the derivative
//! set that makes the term largest), and Σ c_i a_{j,i} = g_{j+1}ᵀ(A_{j+1} c) is bounded by the same
//! rule one level up, down to the head; the sign-uncertain terms use the box of a_j. The boxes are
//! built from the output backwards and intersected with FastLip's step at every level.
//! Proof and rounding: proofs/lipschitz_recurjac.md.

use crate::bounds::crown::tighten;
use crate::bounds::ibp::Trace;
use crate::bounds::linear_map::adjoint_image;
use crate::bounds::net::{LinearOp, Net, Node};
use crate::bounds::round::{ABS_FLOOR, dot_err, next_up};
use crate::bounds::softmax::max_linear_box_simplex;
use crate::bounds::{Interval, relu};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Why RecurJac does not apply to `net` (`None` when it does): it needs a chain of affine
/// layers, each optionally followed by a ReLU, ending in an affine layer.
pub fn unsupported(net: &Net) -> Option<String> {
    let n = net.nodes.len();
    for (i, node) in net.nodes.iter().enumerate() {
        match node {
            Node::Affine(_) => {}
            Node::Relu if i == 0 || !matches!(net.nodes[i - 1], Node::Affine(_)) => {
                return Some("a ReLU not preceded by an affine layer".into());
            }
            Node::Relu if i + 1 == n => return Some("a network ending in a ReLU".into()),
            Node::Relu => {}
            Node::MaxPool2 { .. } => return Some("max-pool layers (LeNet)".into()),
            Node::Residual { .. } => return Some("residual blocks (ResNet)".into()),
        }
    }
    match net.nodes.last() {
        Some(Node::Affine(_)) => None,
        _ => Some("a network without a final affine layer".into()),
    }
}

/// One affine stage and the derivative box [dl, du] of the activation after it (endpoints in
/// {0, 1}; empty for the logits).
pub(crate) struct Stage<'a> {
    op: &'a LinearOp,
    dl: Vec<f64>,
    du: Vec<f64>,
}

/// The stages of a supported network with their derivative boxes from the traced ReLU inputs.
pub(crate) fn stages<'a>(net: &'a Net, traces: &[Trace]) -> Result<Vec<Stage<'a>>> {
    if let Some(why) = unsupported(net) {
        return Err(Error::BadInput(format!("RecurJac does not support {why}")));
    }
    if traces.len() != net.nodes.len() {
        return Err(Error::Internal(
            "RecurJac: trace does not match the network".into(),
        ));
    }
    let (nodes, mut out, mut dim, mut i) = (&net.nodes, Vec::new(), net.input_dim(), 0);
    while i < nodes.len() {
        let Node::Affine(a) = &nodes[i] else {
            return Err(Error::Internal("RecurJac: expected an affine node".into()));
        };
        if a.op.map().in_dim() != dim {
            return Err(Error::Internal(format!("RecurJac: {} input size", a.name)));
        }
        dim = a.op.map().out_dim();
        let (dl, du): (Vec<f64>, Vec<f64>) = match nodes.get(i + 1) {
            Some(Node::Relu) => {
                let z = traces[i + 1].input();
                if z.len() != dim {
                    return Err(Error::Internal("RecurJac: ReLU box size".into()));
                }
                i += 2;
                (0..dim)
                    .map(|j| relu::derivative_set(z.lo[j], z.hi[j]))
                    .unzip()
            }
            Some(_) => {
                i += 1;
                (vec![1.0; dim], vec![1.0; dim])
            }
            None => {
                i += 1;
                (Vec::new(), Vec::new())
            }
        };
        out.push(Stage { op: &a.op, dl, du });
    }
    if dim != net.num_classes {
        return Err(Error::Internal("RecurJac: output size ≠ classes".into()));
    }
    Ok(out)
}

/// The top row t of the backward recursion.
#[derive(Clone, Copy)]
pub(crate) enum Top<'a> {
    /// t = e_k: row k of the Jacobian.
    Class(usize),
    /// t = −p, p in the given softmax box ∩ simplex: the gradient of S itself.
    Energy(&'a Interval),
}

impl Top<'_> {
    /// An upper bound of max_t tᵀv (exact for a class row, the box ∩ simplex optimum for −p).
    fn phi(&self, v: &[f64]) -> f64 {
        match self {
            Top::Class(k) => v.get(*k).copied().unwrap_or(f64::INFINITY),
            Top::Energy(p) => {
                let neg: Vec<f64> = v.iter().map(|x| -x).collect();
                max_linear_box_simplex(&neg, p)
            }
        }
    }

    /// The box of t and a bound on |t| (entrywise), for `k` logits.
    fn boxes(&self, k: usize) -> (Interval, Vec<f64>) {
        match self {
            Top::Class(c) => {
                let mut e = vec![0.0; k];
                if let Some(v) = e.get_mut(*c) {
                    *v = 1.0;
                }
                (Interval::point(&e), e)
            }
            Top::Energy(p) => (
                Interval {
                    lo: p.hi.iter().map(|v| -v).collect(),
                    hi: p.lo.iter().map(|v| -v).collect(),
                },
                p.hi.clone(),
            ),
        }
    }
}

/// A·c, touching only the non-zero entries of c for a dense A (the order of the sum does not
/// change its rounding bound).
fn apply_sparse(op: &LinearOp, c: &[f64]) -> Vec<f64> {
    match op {
        LinearOp::Dense(d) => {
            let mut v = vec![0.0; d.out];
            for (i, &ci) in c.iter().enumerate().take(d.inp) {
                if ci != 0.0 {
                    for (o, vo) in v.iter_mut().enumerate() {
                        *vo += d.w[o * d.inp + i] * ci;
                    }
                }
            }
            v
        }
        _ => op.map().apply(c, false),
    }
}

/// {d ⊙ a : d ∈ [dl, du] ⊆ [0, 1], a ∈ box} (exact).
fn scale_box(dl: &[f64], du: &[f64], a: &Interval) -> Interval {
    let f = |d0: f64, d1: f64, v: f64, lo: bool| {
        if lo {
            (d0 * v).min(d1 * v)
        } else {
            (d0 * v).max(d1 * v)
        }
    };
    Interval {
        lo: (0..a.len())
            .map(|i| f(dl[i], du[i], a.lo[i], true))
            .collect(),
        hi: (0..a.len())
            .map(|i| f(dl[i], du[i], a.hi[i], false))
            .collect(),
    }
}

/// The boxes of a_j = ∂(tᵀz_{m−1})/∂h_j over the ball for one top row, built backwards.
pub(crate) struct Recursion<'a> {
    stages: &'a [Stage<'a>],
    top: Top<'a>,
    /// a[j] for j = 0..m−2.
    a: Vec<Interval>,
    /// h[j] = |A_j|ᵀ M_j with M_j ≥ |g_j| entrywise: the rounding weights of merges through A_j.
    h: Vec<Vec<f64>>,
    /// The box of a_{−1} = the gradient with respect to the input.
    pub(crate) input: Interval,
}

impl<'a> Recursion<'a> {
    /// Builds the boxes from the head down (`k` logits).
    pub(crate) fn new(stages: &'a [Stage<'a>], top: Top<'a>, k: usize) -> Result<Self> {
        let m = stages.len();
        let empty = Interval {
            lo: Vec::new(),
            hi: Vec::new(),
        };
        let mut r = Recursion {
            stages,
            top,
            a: vec![empty.clone(); m.saturating_sub(1)],
            h: vec![Vec::new(); m],
            input: empty,
        };
        let (mut g, mag) = top.boxes(k);
        r.h[m - 1] = stages[m - 1].op.map().apply_t(&mag, true);
        for j in (0..m).rev() {
            let map = stages[j].op.map();
            let naive = adjoint_image(map, &g)?;
            let b = if matches!(stages[j].op, LinearOp::Diag(_)) {
                naive // a diagonal step maps the box exactly: the recursion cannot improve it
            } else {
                let n = map.in_dim();
                let unit = |q: usize, s: f64| {
                    let mut e = vec![0.0; n];
                    e[q] = s;
                    e
                };
                let (lo, hi): (Vec<f64>, Vec<f64>) = (0..n)
                    .into_par_iter()
                    .map(|q| (-r.ub_from(j, unit(q, -1.0)), r.ub_from(j, unit(q, 1.0))))
                    .unzip();
                tighten(&naive, &Interval { lo, hi })?
            };
            if j == 0 {
                r.input = b;
                break;
            }
            let st = &stages[j - 1];
            g = scale_box(&st.dl, &st.du, &b);
            let mg: Vec<f64> = b.abs_max().iter().zip(&st.du).map(|(v, d)| v * d).collect();
            r.h[j - 1] = st.op.map().apply_t(&mg, true);
            r.a[j - 1] = b;
        }
        Ok(r)
    }

    /// A certified upper bound of g_jᵀ(A_j c) over the ball (all admissible derivatives and
    /// top rows): the RecurJac recursion from level j to the head, rounded up.
    pub(crate) fn ub_from(&self, mut j: usize, mut c: Vec<f64>) -> f64 {
        let m = self.stages.len();
        let (mut val, mut mag, mut slack, mut terms) = (0.0f64, 0.0f64, 0.0f64, 0usize);
        loop {
            let st = &self.stages[j];
            let map = st.op.map();
            // fl(A_j c) is within γ|A_j||c| of A_j c, and |g_j| ≤ M_j: error ≤ γ h_jᵀ|c|.
            let e = 2.0 * dot_err(map.fan_in().max(map.fan_out()));
            let hc: f64 = c.iter().zip(&self.h[j]).map(|(c, h)| c.abs() * h).sum();
            slack += e * hc;
            let v = apply_sparse(st.op, &c);
            if j + 1 == m {
                let t = self.top.phi(&v);
                val += t;
                mag += t.abs();
                terms += 1;
                break;
            }
            let a = &self.a[j];
            let mut next = vec![0.0; v.len()];
            let mut any = false;
            for (i, &w) in v.iter().enumerate() {
                if w == 0.0 {
                    continue;
                }
                let (dl, du, lo, hi) = (st.dl[i], st.du[i], a.lo[i], a.hi[i]);
                if dl == du || lo >= 0.0 || hi <= 0.0 {
                    // a_i d w ≤ (w d*) a_i with d* the end of [dl, du] that maximises it.
                    let up = if lo >= 0.0 { w > 0.0 } else { w < 0.0 };
                    next[i] = w * if up { du } else { dl }; // exact: d ∈ {0, 1}
                    any |= next[i] != 0.0;
                } else {
                    // lo < 0 < hi: max over d ∈ [dl, du] ⊆ [0, 1] and a ∈ [lo, hi].
                    let t = du * (w * hi).max(w * lo);
                    val += t;
                    mag += t.abs();
                    terms += 1;
                }
            }
            if !any {
                break;
            }
            c = next;
            j += 1;
        }
        next_up(val + slack + dot_err(terms) * (mag + slack) + ABS_FLOOR)
    }
}
