//! The RecurJac recursion (Zhang, Zhang & Hsieh, AAAI 2019, backward direction): boxes of the
//! partial Jacobian products of a ReLU network over a ball, for one top row — dense and
//! convolutional layers, max-pools (any window, overlapping or padded), residual blocks and
//! concatenations ([`super::jacobian_ops`]).
//!
//! A top row t — e_k for class k, or −p with p in the softmax box ∩ simplex — is carried
//! backwards: a = t at the logits, a ↦ Aᵀa through an affine node, a ↦ D a through a ReLU (d in
//! {0}, {1} or [0, 1]), a ↦ Pᵀa through a max-pool (P routes each window to one of the entries
//! that can be maximal), and the two branch images add at a residual block's input. FastLip
//! bounds each a by interval arithmetic. RecurJac bounds an entry aᵀe_r at a node's input by
//! pushing the direction c = e_r *forward* to the logits ([`Recursion::ub`]): through an affine
//! node c ↦ A c (exact up to rounding); through a ReLU, the terms a_i d_i c_i whose factor a_i
//! (the gradient at the ReLU output) has a known sign become c'_i a_i with c'_i = d*_i c_i, the
//! others are bounded by the box of a; through a max-pool, window k contributes a_k·s with
//! s ∈ [min, max] of c over its candidates, which is ≤ a_k·(that end) when a_k has a known sign,
//! else bounded by the box; through a residual block, c is pushed through both branches and the
//! two results add; through a concatenation, c is pushed through every branch and the results
//! sit side by side (a row started inside a branch is embedded at the branch's offset before
//! it continues after the concatenation). What is left reaches the head, φ(c) ≥ max_t tᵀc. The boxes are built from
//! the output backwards and intersected with FastLip's step at every level.
//! Proof and rounding: proofs/lipschitz_recurjac.md.

use super::jacobian_ops::{Op, apply_sparse, forward_work, plan, pool_back, scale_box};
use crate::bounds::Interval;
use crate::bounds::crown::tighten;
use crate::bounds::ibp::Trace;
use crate::bounds::linear_map::adjoint_image;
use crate::bounds::net::{LinearOp, Net};
use crate::bounds::round::{ABS_FLOOR, dot_err, next_up};
use crate::bounds::softmax::max_linear_box_simplex;
use crate::error::{Error, Result};
use rayon::prelude::*;

pub use super::jacobian_ops::unsupported;

/// The recursion's view of a network on the traced boxes, shared by every top row.
pub(crate) struct Plan<'a> {
    ops: Vec<Op<'a>>,
    slots: usize,
    k: usize,
}

impl<'a> Plan<'a> {
    /// The ops of a supported network with the derivative sets from `traces`.
    pub(crate) fn new(net: &'a Net, traces: &[Trace]) -> Result<Self> {
        if let Some(why) = unsupported(net) {
            return Err(Error::BadInput(format!("RecurJac does not support {why}")));
        }
        let mut slots = 0;
        let (ops, out) = plan(&net.nodes, traces, net.input_dim(), &mut slots)?;
        if out != net.num_classes {
            return Err(Error::Internal("RecurJac: output size ≠ classes".into()));
        }
        Ok(Plan {
            ops,
            slots,
            k: net.num_classes,
        })
    }
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

    /// The box of t, for `k` logits.
    fn top_box(&self, k: usize) -> Interval {
        match self {
            Top::Class(c) => {
                let mut e = vec![0.0; k];
                if let Some(v) = e.get_mut(*c) {
                    *v = 1.0;
                }
                Interval::point(&e)
            }
            Top::Energy(p) => Interval {
                lo: p.hi.iter().map(|v| -v).collect(),
                hi: p.lo.iter().map(|v| -v).collect(),
            },
        }
    }
}

/// A certified upper bound being summed: terms (rounded once each), their magnitudes and the
/// rounding slack of the merges.
#[derive(Default)]
struct Acc {
    val: f64,
    mag: f64,
    slack: f64,
    terms: usize,
}

impl Acc {
    fn term(&mut self, t: f64) {
        self.val += t;
        self.mag += t.abs();
        self.terms += 1;
    }

    /// The sum rounded up: any order errs by ≤ γ_N Σ|terms| (+ the slack's own rounding).
    fn finish(&self) -> f64 {
        next_up(self.val + self.slack + dot_err(self.terms) * (self.mag + self.slack) + ABS_FLOOR)
    }
}

/// Where a forward push starts: (ops, first index, embedding) per nesting level, innermost
/// first; the last entry is the top level (its end is the logits). The embedding (offset,
/// length) of a concatenation branch's level places its output in the concatenation's output
/// (zeros elsewhere) before the push continues at the next level.
type Path<'a> = Vec<Level<'a>>;

/// One level of a [`Path`].
type Level<'a> = (&'a [Op<'a>], usize, Embed);

/// Where a concatenation branch's output sits in the concatenation's output: (offset, length).
type Embed = Option<(usize, usize)>;

/// The boxes of the gradient a = ∂(tᵀf)/∂y at every nonlinearity output over the ball for one
/// top row, built backwards, and the box at the network input.
pub(crate) struct Recursion<'a> {
    plan: &'a Plan<'a>,
    top: Top<'a>,
    /// Per slot: the gradient box at a ReLU / max-pool output.
    boxes: Vec<Interval>,
    /// Per slot: h = |A|ᵀM for an affine node, M for a residual join (M ≥ |gradient| there).
    weights: Vec<Vec<f64>>,
    /// Levels whose recursion would cost more multiply-adds use FastLip's step (the cost guard).
    max_work: f64,
    /// Box entries bounded by the recursion.
    pub(crate) recursed: usize,
    /// Levels left to FastLip's step by the cost guard.
    pub(crate) skipped: usize,
    /// The box of the gradient with respect to the input.
    pub(crate) input: Interval,
}

impl<'a> Recursion<'a> {
    /// Builds the boxes from the head down; a level whose recursion would cost more than
    /// `max_work` multiply-adds (entries × a dense forward pass of the rest of the network) is
    /// left to FastLip's step.
    pub(crate) fn new(plan: &'a Plan<'a>, top: Top<'a>, max_work: f64) -> Result<Self> {
        let empty = Interval {
            lo: Vec::new(),
            hi: Vec::new(),
        };
        let mut r = Recursion {
            plan,
            top,
            boxes: vec![empty.clone(); plan.slots],
            weights: vec![Vec::new(); plan.slots],
            max_work,
            recursed: 0,
            skipped: 0,
            input: empty,
        };
        r.input = r.build(&plan.ops, &[], top.top_box(plan.k), false, None)?;
        Ok(r)
    }

    /// Walks `ops` backwards from the box `b` at their output (`outer`: where a push continues
    /// after them); returns the box at their input. Recursion at the input of every affine node
    /// that mixes entries (dense, convolution) and of every residual block — except the first
    /// node of a branch, whose box only enters the sum that the block's own level refines.
    fn build(
        &mut self,
        ops: &'a [Op<'a>],
        outer: &[Level<'a>],
        mut b: Interval,
        in_branch: bool,
        embed: Embed,
    ) -> Result<Interval> {
        for i in (0..ops.len()).rev() {
            b = match &ops[i] {
                Op::Affine { op, id } => {
                    let map = op.map();
                    self.weights[*id] = map.apply_t(&b.abs_max(), true);
                    let naive = adjoint_image(map, &b)?;
                    // A diagonal, padding or non-overlapping averaging step maps the box exactly
                    // (each input entry reads one output entry): nothing to refine.
                    let exact = match op {
                        LinearOp::Diag(_) | LinearOp::Pad(_) => true,
                        LinearOp::AvgPool(p) => p.max_cover() <= 1,
                        _ => false,
                    };
                    if exact || (in_branch && i == 0) {
                        naive
                    } else {
                        self.refine((ops, i, embed), outer, naive)?
                    }
                }
                Op::Relu { dl, du, id } => {
                    let g = scale_box(dl, du, &b);
                    self.boxes[*id] = b;
                    g
                }
                Op::Pool { cand, in_dim, id } => {
                    let g = pool_back(cand, *in_dim, &b);
                    self.boxes[*id] = b;
                    g
                }
                Op::Residual { main, shortcut, id } => {
                    self.weights[*id] = b.abs_max();
                    let mut after: Path<'a> = vec![(ops, i + 1, embed)];
                    after.extend_from_slice(outer);
                    let gm = self.build(main, &after, b.clone(), true, None)?;
                    let gs = self.build(shortcut, &after, b, true, None)?;
                    let naive = gm.add(&gs)?;
                    self.refine((ops, i, embed), outer, naive)?
                }
                Op::Concat { branches, dims, .. } => {
                    // The output box splits by branch; the branch images add at the fork.
                    let total: usize = dims.iter().sum();
                    if b.len() != total {
                        return Err(Error::Internal(
                            "RecurJac: concatenation box of the wrong length".into(),
                        ));
                    }
                    let mut after: Path<'a> = vec![(ops, i + 1, embed)];
                    after.extend_from_slice(outer);
                    let mut sum: Option<Interval> = None;
                    let mut off = 0;
                    for (br, &d) in branches.iter().zip(dims) {
                        let part = Interval {
                            lo: b.lo[off..off + d].to_vec(),
                            hi: b.hi[off..off + d].to_vec(),
                        };
                        let g = self.build(br, &after, part, true, Some((off, total)))?;
                        sum = Some(match sum {
                            Some(s) => s.add(&g)?,
                            None => g,
                        });
                        off += d;
                    }
                    let naive = sum.ok_or_else(|| {
                        Error::Internal("RecurJac: a concatenation without branches".into())
                    })?;
                    self.refine((ops, i, embed), outer, naive)?
                }
            };
        }
        Ok(b)
    }

    /// `naive` (FastLip's box at the input of `ops[i]`) ∩ the recursion's box there.
    fn refine(&mut self, at: Level<'a>, outer: &[Level<'a>], naive: Interval) -> Result<Interval> {
        let n = naive.len();
        let mut path: Path<'a> = vec![at];
        path.extend_from_slice(outer);
        let rest: f64 = path.iter().map(|(o, k, _)| forward_work(&o[*k..])).sum();
        if n as f64 * rest > self.max_work {
            self.skipped += 1;
            return Ok(naive);
        }
        let unit = |q: usize, s: f64| {
            let mut e = vec![0.0; n];
            e[q] = s;
            e
        };
        let this = &*self;
        let (lo, hi): (Vec<f64>, Vec<f64>) = (0..n)
            .into_par_iter()
            .map(|q| (-this.ub(&path, unit(q, -1.0)), this.ub(&path, unit(q, 1.0))))
            .unzip();
        self.recursed += n;
        tighten(&naive, &Interval { lo, hi })
    }

    /// A certified upper bound of aᵀc over the ball (all admissible derivatives, routes and top
    /// rows) for a the gradient at the network input.
    pub(crate) fn ub_input(&self, c: Vec<f64>) -> f64 {
        self.ub(&vec![(&self.plan.ops[..], 0, None)], c)
    }

    /// A certified upper bound of aᵀc for a the gradient at the start of `path`: c pushed
    /// forward to the logits, then the head φ.
    fn ub(&self, path: &Path<'a>, c: Vec<f64>) -> f64 {
        let mut acc = Acc::default();
        let mut c = Some(c);
        for (ops, start, embed) in path {
            let Some(v) = c else { break };
            c = self.push(&ops[*start..], v, &mut acc);
            if let (Some(v), Some((off, total))) = (&mut c, embed) {
                let mut w = vec![0.0; *total];
                w[*off..*off + v.len()].copy_from_slice(v);
                *v = w;
            }
        }
        if let Some(v) = c {
            acc.term(self.top.phi(&v));
        }
        acc.finish()
    }

    /// Pushes the direction c through `ops`: returns c' with aᵀc ≤ (terms added to `acc`) +
    /// a'ᵀc' for a, a' the gradients at the input and output of `ops` (None: c' = 0).
    fn push(&self, ops: &[Op<'a>], mut c: Vec<f64>, acc: &mut Acc) -> Option<Vec<f64>> {
        for op in ops {
            c = match op {
                Op::Affine { op, id } => {
                    // fl(A c) is within γ|A||c| of A c, and |a'| ≤ M: error ≤ γ hᵀ|c|.
                    let map = op.map();
                    let e = 2.0 * dot_err(map.fan_in().max(map.fan_out()));
                    let hc: f64 = c
                        .iter()
                        .zip(&self.weights[*id])
                        .map(|(c, h)| c.abs() * h)
                        .sum();
                    acc.slack += e * hc;
                    apply_sparse(op, &c)
                }
                Op::Relu { dl, du, id } => {
                    let a = &self.boxes[*id];
                    let mut next = vec![0.0; c.len()];
                    for (i, &w) in c.iter().enumerate() {
                        if w == 0.0 {
                            continue;
                        }
                        let (dl, du, lo, hi) = (dl[i], du[i], a.lo[i], a.hi[i]);
                        if dl == du || lo >= 0.0 || hi <= 0.0 {
                            // a d w ≤ (w d*) a with d* the end of [dl, du] that maximises it.
                            let up = if lo >= 0.0 { w > 0.0 } else { w < 0.0 };
                            next[i] = w * if up { du } else { dl }; // exact: d ∈ {0, 1}
                        } else {
                            // lo < 0 < hi: max over d ∈ [dl, du] ⊆ [0, 1] and a ∈ [lo, hi].
                            acc.term(du * (w * hi).max(w * lo));
                        }
                    }
                    next
                }
                Op::Pool { cand, id, .. } => {
                    let a = &self.boxes[*id];
                    let mut next = vec![0.0; cand.len()];
                    for (k, cs) in cand.iter().enumerate() {
                        // Window k gives a_k·s, s = Σ λ_i c_i over candidates ∈ [wl, wh].
                        let (wl, wh) =
                            cs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |m, &i| {
                                (m.0.min(c[i]), m.1.max(c[i]))
                            });
                        if wl == wh {
                            next[k] = wl; // one candidate, or all equal: s is fixed
                        } else if a.lo[k] >= 0.0 {
                            next[k] = wh;
                        } else if a.hi[k] <= 0.0 {
                            next[k] = wl;
                        } else {
                            acc.term((a.hi[k] * wh).max(a.lo[k] * wl));
                        }
                    }
                    next
                }
                Op::Concat { branches, dims, .. } => {
                    // The direction goes into every branch; the images sit side by side.
                    let mut out = Vec::with_capacity(dims.iter().sum());
                    let mut any = false;
                    for (br, &d) in branches.iter().zip(dims) {
                        match self.push(br, c.clone(), acc) {
                            Some(v) => {
                                any = true;
                                out.extend(v);
                            }
                            None => out.extend(std::iter::repeat_n(0.0, d)),
                        }
                    }
                    if !any {
                        return None;
                    }
                    out
                }
                Op::Residual { main, shortcut, id } => {
                    let cm = self.push(main, c.clone(), acc);
                    let cs = self.push(shortcut, c, acc);
                    match (cm, cs) {
                        (None, None) => return None,
                        (Some(v), None) | (None, Some(v)) => v,
                        (Some(u), Some(v)) => {
                            let s: Vec<f64> = u.iter().zip(&v).map(|(u, v)| u + v).collect();
                            // fl(u + v) errs by ≤ 2u|fl(u + v)| per entry, and |a'| ≤ M.
                            let m: f64 = s
                                .iter()
                                .zip(&self.weights[*id])
                                .map(|(s, m)| s.abs() * m)
                                .sum();
                            acc.slack += 2.0 * f64::EPSILON * m;
                            s
                        }
                    }
                }
            };
            if c.iter().all(|v| *v == 0.0) {
                return None;
            }
        }
        Some(c)
    }
}
