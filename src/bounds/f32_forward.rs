//! Forward error of the float32 detector (Higham 2002, Thm 3.1 / eq. 3.5; proofs/f32_detector.md):
//! a per-entry bound e with |ẑ − z| ≤ e between the logits ẑ the candle f32 model computes (any
//! GEMM/convolution summation order, FMA or not, any batch size or thread count) and the exact
//! logits z of the [`Net`], for every float32 input in a box, propagated layer by layer as
//! e_out = |A|·e + γ_k·(|A|·(M + e) + c), M ≥ |exact input| from interval bounds of the box.

use super::ibp::{Trace, ibp_node};
use super::interval::Interval;
use super::linear_map::{LinearMap, adjoint_image};
use super::net::{LinearOp, Net, Node, branch_dims, split_box};
use super::round::{dot_err, next_down, next_up, widen_up};
use super::{max_pool, relu};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::model::layers::{BatchNorm2d, Layer};
use candle_core::DType;
use std::collections::HashMap;

/// Unit roundoff of IEEE binary32, u = 2⁻²⁴.
pub const U32: f64 = 1.0 / 16_777_216.0;

/// Absolute error of one f32 product that underflows (half the spacing of subnormals, 2⁻¹⁵⁰),
/// doubled: gradual underflow makes additions exact, products lose at most this much.
const UNDERFLOW: f64 = 2.0 * 7.006_492_321_624_085e-46;

/// Largest magnitude allowed anywhere in the f32 forward pass: a quarter of f32::MAX, so that no
/// intermediate (sums of the bounded terms included) can overflow; beyond it the bound is ∞.
pub const F32_SAFE_MAX: f64 = (f32::MAX as f64) / 4.0;

/// γ_n = n·u/(1 − n·u) for float32 rounding, rounded up; ∞ when n·u ≥ 1/2.
pub fn gamma32(n: usize) -> f64 {
    let nu = n as f64 * U32;
    if nu >= 0.5 {
        return f64::INFINITY;
    }
    next_up(next_up(nu / (1.0 - nu)) * (1.0 + 4.0 * f64::EPSILON))
}

/// How the f32 model evaluates one [`Net`] node, beyond its exact map.
#[derive(Debug, Clone)]
pub enum F32Rule {
    /// ŷ = A ĥ + b with each entry's error ≤ |A|e + γ·(|A|(|h| + e) + extra).
    Affine { gamma: f64, extra: Vec<f64> },
    /// ReLU and max-pool: computed exactly on the f32 values; 1-Lipschitz entrywise.
    Exact,
    /// fl(main + shortcut).
    Residual {
        main: Vec<F32Rule>,
        shortcut: Vec<F32Rule>,
    },
    /// A channel concatenation: the branches' f32 outputs copied side by side (no rounding).
    Concat { branches: Vec<Vec<F32Rule>> },
}

/// The float32 evaluation rules of a network, node for node parallel to [`Net::nodes`].
#[derive(Debug, Clone)]
pub struct F32Plan {
    pub rules: Vec<F32Rule>,
}

fn collect_bn<'a>(layers: &'a [Layer], out: &mut HashMap<String, &'a BatchNorm2d>) {
    for l in layers {
        match l {
            Layer::BatchNorm2d(bn) => {
                out.insert(bn.name().to_string(), bn);
            }
            Layer::Residual(r) => {
                collect_bn(&r.main, out);
                collect_bn(&r.shortcut, out);
            }
            Layer::Concat(c) => c.branches.iter().for_each(|b| collect_bn(b, out)),
            Layer::BasicBlock(b) => {
                out.insert(b.bn1().name().to_string(), b.bn1());
                out.insert(b.bn2().name().to_string(), b.bn2());
                if let Some((_, bn)) = b.shortcut() {
                    out.insert(bn.name().to_string(), bn);
                }
            }
            _ => {}
        }
    }
}

fn host(t: &candle_core::Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

/// BatchNorm in eval mode as candle computes it in f32: fl(fl(fl(x − μ)/fl(√fl(v + ε)))·w) + β).
/// With s = w/√(v + ε): |ŷ − (s x + β − sμ)| ≤ |s|e + γ_8(|s|(|x| + e) + |s||μ| + |β|)
/// (ε rounded to f32, five roundings and a square root; proofs/f32_detector.md §2).
fn bn_rule(bn: &BatchNorm2d, len: usize) -> Result<F32Rule> {
    let w = host(bn.weight())?;
    let b = host(bn.bias())?;
    let mu = host(bn.running_mean())?;
    let var = host(bn.running_var())?;
    let c = w.len();
    if c == 0 || !len.is_multiple_of(c) {
        return Err(Error::Internal(format!(
            "{}: {c} channels for {len} entries",
            bn.name()
        )));
    }
    let hw = len / c;
    let extra = (0..c)
        .flat_map(|k| {
            let s = (w[k] / (var[k] + bn.eps()).sqrt()).abs();
            let v = widen_up(s * mu[k].abs() + b[k].abs(), 16.0 * f64::EPSILON);
            std::iter::repeat_n(v, hw)
        })
        .collect();
    Ok(F32Rule::Affine {
        gamma: gamma32(8),
        extra,
    })
}

fn plan_nodes(nodes: &[Node], bns: &HashMap<String, &BatchNorm2d>) -> Result<Vec<F32Rule>> {
    nodes
        .iter()
        .map(|node| {
            Ok(match node {
                Node::Relu | Node::MaxPool2 { .. } | Node::MaxPool { .. } => F32Rule::Exact,
                Node::Concat { branches } => F32Rule::Concat {
                    branches: branches
                        .iter()
                        .map(|b| plan_nodes(b, bns))
                        .collect::<Result<_>>()?,
                },
                Node::Residual { main, shortcut } => F32Rule::Residual {
                    main: plan_nodes(main, bns)?,
                    shortcut: plan_nodes(shortcut, bns)?,
                },
                Node::Affine(a) => {
                    let bias_abs = |n: usize| a.bias.as_ref().map_or(vec![0.0; n], |b| abs_vec(b));
                    let out = a.op.map().out_dim();
                    match &a.op {
                        // One GEMM (or im2col + GEMM) in any order, then one bias addition.
                        LinearOp::Dense(_) | LinearOp::Conv(_) => F32Rule::Affine {
                            gamma: gamma32(a.op.map().fan_in() + 1),
                            extra: bias_abs(out),
                        },
                        // Σ of the window's n terms in any order, then times fl32(1/n) or divided
                        // by n: n terms and two roundings. Without count_include_pad, two more
                        // (e.g. the padded mean rescaled by fl32(area/n)).
                        LinearOp::AvgPool(p) => F32Rule::Affine {
                            gamma: gamma32(
                                p.max_window() + if p.count_include_pad { 3 } else { 5 },
                            ),
                            extra: vec![0.0; out],
                        },
                        // Zero padding copies values: exact.
                        LinearOp::Pad(_) => F32Rule::Affine {
                            gamma: 0.0,
                            extra: vec![0.0; out],
                        },
                        LinearOp::Diag(_) => match bns.get(&a.name) {
                            Some(bn) => bn_rule(bn, out)?,
                            // The input normalisation fl(fl(x − μ)/σ): two roundings; the Net
                            // holds 1/σ and −μ/σ rounded in f64 (absorbed by γ_3).
                            None if a.name == "normalize" => F32Rule::Affine {
                                gamma: gamma32(3),
                                extra: bias_abs(out),
                            },
                            None => {
                                return Err(Error::Internal(format!(
                                    "f32 error bound: no rule for diagonal layer `{}`",
                                    a.name
                                )));
                            }
                        },
                    }
                }
            })
        })
        .collect()
}

fn abs_vec(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

impl F32Plan {
    /// The rules of `net`, built from the same (f32 or f64) `model` (BatchNorm statistics).
    pub fn new(model: &Model, net: &Net) -> Result<F32Plan> {
        let mut bns = HashMap::new();
        collect_bn(model.layers(), &mut bns);
        Ok(F32Plan {
            rules: plan_nodes(&net.nodes, &bns)?,
        })
    }

    /// The rules of a `net` without BatchNorm (its only diagonal node, if any, the input
    /// normalisation named "normalize"): dense/convolution as one GEMM plus bias, pools, pads,
    /// ReLU, residual sums and concatenations as [`F32Plan::new`] treats them.
    pub fn without_batch_norm(net: &Net) -> Result<F32Plan> {
        Ok(F32Plan {
            rules: plan_nodes(&net.nodes, &HashMap::new())?,
        })
    }
}

/// max(a, b) that returns NaN when either is NaN.
fn max_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn check_safe(what: &str, v: &[f64]) -> Result<()> {
    if let Some(x) = v.iter().find(|x| x.is_nan()) {
        return Err(Error::CheckFailed(format!(
            "f32 error bound: {what} is {x} (NaN)"
        )));
    }
    Ok(())
}

/// Entries above [`F32_SAFE_MAX`] (the f32 pass might overflow) become +∞.
fn cap(v: Vec<f64>) -> Vec<f64> {
    v.into_iter()
        .map(|x| if x <= F32_SAFE_MAX { x } else { f64::INFINITY })
        .collect()
}

/// e_out = |A|e + ρ with ρ = γ(|A|(M + e) + extra) + (n+2)·underflow, the rounding this layer
/// adds; both rounded up.
fn affine_err(
    map: &dyn LinearMap,
    gamma: f64,
    extra: &[f64],
    mag: &[f64],
    e: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let n = map.fan_in();
    let ae = map.apply(e, true);
    let me: Vec<f64> = mag.iter().zip(e).map(|(m, e)| next_up(m + e)).collect();
    let am = map.apply(&me, true);
    let rel = dot_err(n + 4);
    let rho: Vec<f64> = am
        .iter()
        .zip(extra)
        .map(|(am, c)| {
            let v = gamma * widen_up(widen_up(*am, rel) + c, rel) + (n + 2) as f64 * UNDERFLOW;
            widen_up(v, 4.0 * f64::EPSILON)
        })
        .collect();
    let err = ae
        .iter()
        .zip(&rho)
        .map(|(ae, r)| widen_up(widen_up(*ae, rel) + r, 4.0 * f64::EPSILON))
        .collect();
    (err, rho)
}

/// What the backward refinement needs of one node: its input box widened by the input error
/// (the points where the exact network's derivatives are taken) and the bound on the rounding
/// it adds at its output, ρ ≥ |fl(F(ĥ)) − F(ĥ)|.
#[derive(Debug, Clone)]
pub enum Tape {
    Node {
        pre: Interval,
        rho: Option<Vec<f64>>,
    },
    Residual {
        main: Vec<Tape>,
        shortcut: Vec<Tape>,
        rho: Vec<f64>,
    },
    /// A concatenation of input length `in_dim`: each branch's tapes (the concatenation itself
    /// adds no rounding).
    Concat {
        in_dim: usize,
        branches: Vec<Vec<Tape>>,
    },
}

/// The forward pass of the error analysis: exact logit box, logit error, per-node tapes.
#[derive(Debug, Clone)]
pub struct F32Walk {
    pub logits: Interval,
    pub err: Vec<f64>,
    pub tapes: Vec<Tape>,
}

fn widen_box(b: &Interval, e: &[f64]) -> Interval {
    Interval {
        lo: b.lo.iter().zip(e).map(|(l, e)| next_down(l - e)).collect(),
        hi: b.hi.iter().zip(e).map(|(h, e)| next_up(h + e)).collect(),
    }
}

/// Walks `nodes` from the input box `cur` (exact values) with input error `e`: returns the exact
/// output box, the output error and the tapes. With `tight`, the pre-activation trace of the same
/// nodes over the same set (IBP/CROWN, `lipschitz::local::pre_bounds`), each node's input box is
/// intersected with the trace's: both enclose the exact values, so their intersection does too.
fn walk(
    nodes: &[Node],
    rules: &[F32Rule],
    mut cur: Interval,
    mut e: Vec<f64>,
    tight: Option<&[Trace]>,
) -> Result<(Interval, Vec<f64>, Vec<Tape>)> {
    if nodes.len() != rules.len() || tight.is_some_and(|t| t.len() != nodes.len()) {
        return Err(Error::Internal(
            "f32 plan does not match the network".into(),
        ));
    }
    let mut tapes = Vec::with_capacity(nodes.len());
    for (i, (node, rule)) in nodes.iter().zip(rules).enumerate() {
        let trace = tight.map(|t| &t[i]);
        if let Some(t) = trace {
            cur = crate::bounds::crown::tighten(&cur, t.input())?;
        }
        let mag = cur.abs_max();
        check_safe("an input magnitude", &mag)?;
        let pre = widen_box(&cur, &e);
        let (next, next_e, tape) = match (node, rule) {
            (
                Node::Residual { main, shortcut },
                F32Rule::Residual {
                    main: rm,
                    shortcut: rs,
                },
            ) => {
                let (tm, ts) = match trace {
                    Some(Trace::Residual { main, shortcut, .. }) => {
                        (Some(main.as_slice()), Some(shortcut.as_slice()))
                    }
                    Some(_) => {
                        return Err(Error::Internal(
                            "f32 bound: residual node without its branch traces".into(),
                        ));
                    }
                    None => (None, None),
                };
                let (ma, ea, ta) = walk(main, rm, cur.clone(), e.clone(), tm)?;
                let (mb, eb, tb) = walk(shortcut, rs, cur, e, ts)?;
                let (aa, ab) = (ma.abs_max(), mb.abs_max());
                let out = ma.add(&mb)?;
                let rho: Vec<f64> = (0..ea.len())
                    .map(|i| widen_up(U32 * (aa[i] + ab[i] + ea[i] + eb[i]), 8.0 * f64::EPSILON))
                    .collect();
                let err = (0..ea.len())
                    .map(|i| widen_up(ea[i] + eb[i] + rho[i], 8.0 * f64::EPSILON))
                    .collect();
                let tape = Tape::Residual {
                    main: ta,
                    shortcut: tb,
                    rho,
                };
                (out, err, tape)
            }
            (Node::Affine(a), F32Rule::Affine { gamma, extra }) => {
                let (err, rho) = affine_err(a.op.map(), *gamma, extra, &mag, &e);
                let tape = Tape::Node {
                    pre,
                    rho: Some(rho),
                };
                (ibp_node(node, cur)?.1, err, tape)
            }
            (Node::Relu, F32Rule::Exact) => {
                (ibp_node(node, cur)?.1, e, Tape::Node { pre, rho: None })
            }
            (Node::MaxPool2 { .. } | Node::MaxPool { .. }, F32Rule::Exact) => {
                // max is 1-Lipschitz in ℓ∞ and computed exactly: the window's largest error.
                let out = ibp_node(node, cur)?.1;
                let err = node
                    .pool_windows()
                    .iter()
                    .map(|win| win.iter().map(|&i| e[i]).fold(0.0, max_nan))
                    .collect();
                (out, err, Tape::Node { pre, rho: None })
            }
            (Node::Concat { branches }, F32Rule::Concat { branches: rb }) => {
                let tb: Vec<Option<&[Trace]>> = match trace {
                    Some(Trace::Concat { branches: tb, .. }) if tb.len() == branches.len() => {
                        tb.iter().map(|t| Some(t.as_slice())).collect()
                    }
                    Some(_) => {
                        return Err(Error::Internal(
                            "f32 bound: concatenation without its branch traces".into(),
                        ));
                    }
                    None => vec![None; branches.len()],
                };
                if rb.len() != branches.len() {
                    return Err(Error::Internal(
                        "f32 plan does not match the network".into(),
                    ));
                }
                let mut out = Interval::point(&[]);
                let mut err = Vec::new();
                let mut tapes = Vec::with_capacity(branches.len());
                for ((b, r), t) in branches.iter().zip(rb).zip(tb) {
                    let (o, eb, tp) = walk(b, r, cur.clone(), e.clone(), t)?;
                    out.lo.extend(o.lo);
                    out.hi.extend(o.hi);
                    err.extend(eb);
                    tapes.push(tp);
                }
                let in_dim = cur.len();
                (
                    out,
                    err,
                    Tape::Concat {
                        in_dim,
                        branches: tapes,
                    },
                )
            }
            _ => {
                return Err(Error::Internal(
                    "f32 plan does not match the network".into(),
                ));
            }
        };
        check_safe("a propagated error", &next_e)?;
        tapes.push(tape);
        cur = next;
        e = cap(next_e);
        if cur
            .abs_max()
            .iter()
            .any(|m| m.is_nan() || *m > F32_SAFE_MAX)
        {
            e = vec![f64::INFINITY; e.len()];
        }
    }
    Ok((cur, e, tapes))
}

/// For every float32 input in `input` (exact values, e.g. a point or a ball's box): the box of
/// the exact logits of `net`, a bound e on |f32 logits − exact logits| entry by entry (+∞ where
/// the f32 pass might overflow; NaN anywhere is an error) and the tapes for [`backward_error`].
pub fn f32_walk(net: &Net, plan: &F32Plan, input: &Interval) -> Result<F32Walk> {
    f32_walk_within(net, plan, input, None)
}

/// [`f32_walk`] with every node's exact input box intersected with `tight`'s (a pre-activation
/// trace of `net` over a set containing every input of `input` that the bound must cover).
pub fn f32_walk_within(
    net: &Net,
    plan: &F32Plan,
    input: &Interval,
    tight: Option<&[Trace]>,
) -> Result<F32Walk> {
    if input.len() != net.input_dim() {
        return Err(Error::Internal(format!(
            "f32 error bound: input box of {} entries, the network takes {}",
            input.len(),
            net.input_dim()
        )));
    }
    check_safe("an input bound", &input.abs_max())?;
    let (z, e, tapes) = walk(
        &net.nodes,
        &plan.rules,
        input.clone(),
        vec![0.0; input.len()],
        tight,
    )?;
    check_safe("a logit bound", &z.abs_max())?;
    Ok(F32Walk {
        logits: z,
        err: e,
        tapes,
    })
}

/// [`f32_walk`]'s logit box and logit error.
pub fn logit_error(net: &Net, plan: &F32Plan, input: &Interval) -> Result<(Interval, Vec<f64>)> {
    let w = f32_walk(net, plan, input)?;
    Ok((w.logits, w.err))
}

/// Σ |g|·ρ over a node's output, rounded up.
fn contribution(g: &Interval, rho: &[f64]) -> f64 {
    let a = g.abs_max();
    let s: f64 = a.iter().zip(rho).map(|(g, r)| g * r).sum();
    widen_up(s, dot_err(rho.len()))
}

fn back(nodes: &[Node], tapes: &[Tape], mut g: Interval) -> Result<(Interval, f64)> {
    let mut total = 0.0;
    for (node, tape) in nodes.iter().zip(tapes).rev() {
        g = match (node, tape) {
            (Node::Affine(a), Tape::Node { rho: Some(rho), .. }) => {
                total += contribution(&g, rho);
                adjoint_image(a.op.map(), &g)?
            }
            (Node::Relu, Tape::Node { pre, rho: None }) => relu::grad_back(pre, &g),
            (Node::MaxPool2 { .. } | Node::MaxPool { .. }, Tape::Node { pre, rho: None }) => {
                max_pool::grad_back(pre, &g, &node.pool_windows())
            }
            (
                Node::Concat { branches },
                Tape::Concat {
                    in_dim,
                    branches: tb,
                },
            ) if tb.len() == branches.len() => {
                // The branches' gradient boxes add at the fork (outward-rounded sums).
                let dims = branch_dims(branches, *in_dim)?;
                let mut sum: Option<Interval> = None;
                for ((b, t), part) in branches.iter().zip(tb).zip(split_box(&g, &dims)?) {
                    let (gb, cb) = back(b, t, part)?;
                    total += cb;
                    sum = Some(match sum {
                        Some(s) => s.add(&gb)?,
                        None => gb,
                    });
                }
                sum.ok_or_else(|| Error::Internal("a concatenation without branches".into()))?
            }
            (
                Node::Residual { main, shortcut },
                Tape::Residual {
                    main: tm,
                    shortcut: ts,
                    rho,
                },
            ) => {
                total += contribution(&g, rho);
                let (ga, ca) = back(main, tm, g.clone())?;
                let (gb, cb) = back(shortcut, ts, g)?;
                total += ca + cb;
                ga.add(&gb)?
            }
            _ => {
                return Err(Error::Internal(
                    "f32 tape does not match the network".into(),
                ));
            }
        };
    }
    Ok((g, next_up(total)))
}

/// The backward refinement (proofs/f32_detector.md §2.3): with G_j ⊇ the Clarke gradients of the
/// score w.r.t. node j's output over the error-widened boxes (interval backward pass from
/// `g_logits`, the gradient box of the score w.r.t. the logits), the propagated error of the
/// score is at most Σ_j ⟨max|G_j|, ρ_j⟩. NaN is an error.
pub fn backward_error(net: &Net, walk: &F32Walk, g_logits: Interval) -> Result<f64> {
    let (_, total) = back(&net.nodes, &walk.tapes, g_logits)?;
    if total.is_nan() {
        return Err(Error::CheckFailed("f32 backward error bound is NaN".into()));
    }
    Ok(total)
}
