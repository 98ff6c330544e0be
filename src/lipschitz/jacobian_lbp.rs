//! Linear bound propagation on the backward (Jacobian) graph (Shi, Wang, Zhang, Kolter & Hsieh,
//! "Efficiently Computing Local Lipschitz Constants of Neural Networks via Bound Propagation",
//! NeurIPS 2022): a certified bound of sup_{x'∈B} ‖∇ₓS(x')‖_q with ∇ₓS = −J_fᵀp.
//!
//! The norm is first relaxed linearly over a box of the gradient ([`norm`]): ‖g‖₁ ≤ vᵀg + b,
//! ‖g‖₂² ≤ vᵀg + b. The form vᵀg at the input is then walked forward through the backward graph
//! ("pass A"): an affine node maps μ ↦ Aμ exactly ([`affine`]); a ReLU's bilinear terms
//! μ·relu'(z)·g are bounded by McCormick planes with relu'(z) relaxed linearly in z ([`relu`]);
//! a max-pool's routing by the chord of a convex function of the window gradient ([`max_pool`]);
//! residual blocks walk both branches and add; the softmax head −p is bounded over the softmax
//! box ∩ simplex ([`head`]). The z terms left at every level are back-substituted to the input
//! through the forward network as one CROWN row ("pass B", [`forward`]) and concretised over
//! the ball with the dual norm. The gradient boxes the relaxations need come from FastLip's
//! backward interval pass, tightened level by level (from the logits down) by the same
//! propagation where the level is small enough. The reported value is the minimum with FastLip
//! (and RecurJac when asked), with the winning rule recorded.
//! Proof and rounding: proofs/lipschitz_jacobian_lbp.md.

mod affine;
mod forward;
mod head;
mod max_pool;
mod norm;
mod relu;

use crate::bounds::crown::tighten;
use crate::bounds::ibp::Trace;
use crate::bounds::linear_map::adjoint_image;
use crate::bounds::net::{Net, Node, branch_dims, split_box};
use crate::bounds::round::{ABS_FLOOR, dot_err, next_up};
use crate::bounds::softmax::{simplex_tighten, softmax_box};
use crate::bounds::{Ball, Interval, Norm};
use crate::error::{Error, Result};
use crate::lipschitz::local::{Head, PreBounds, box_dual_norm, fastlip_on, pre_bounds};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::VecDeque;

/// Which McCormick plane the ReLU rule uses for an unstable neuron.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plane {
    /// The plane tight at u = 1 when the pre-activation box is mostly positive, else at u = 0.
    Adaptive,
    /// Always the plane tight at u = 0.
    Zero,
    /// Always the plane tight at u = 1.
    One,
}

/// A certified upper bound being summed: terms, their magnitudes and the rounding slack.
#[derive(Default)]
pub(crate) struct Acc {
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

/// The pre-activation coefficients α each ReLU leaves for pass B, parallel to the nodes.
#[derive(Debug, Clone)]
pub(crate) enum Side {
    None,
    Relu(Vec<f64>),
    Residual {
        main: Vec<Side>,
        shortcut: Vec<Side>,
    },
    Concat(Vec<Vec<Side>>),
}

/// The gradient box at a node's output (and |A|ᵀM for an affine node's rounding budget).
#[derive(Debug, Clone)]
enum GBox {
    Leaf {
        out: Interval,
        wt: Vec<f64>,
    },
    Residual {
        out: Interval,
        main: Vec<GBox>,
        shortcut: Vec<GBox>,
    },
    Concat {
        out: Interval,
        branches: Vec<Vec<GBox>>,
    },
}

/// One FastLip step backwards through `node`: its gradient box record and the box at its input.
fn step(node: &Node, trace: &Trace, g: Interval) -> Result<(GBox, Interval)> {
    Ok(match (node, trace) {
        (Node::Affine(a), _) => {
            let map = a.op.map();
            let wt = map.apply_t(&g.abs_max(), true);
            let gin = adjoint_image(map, &g)?;
            (GBox::Leaf { out: g, wt }, gin)
        }
        (Node::Relu, t) => {
            let gin = crate::bounds::relu::grad_back(t.input(), &g);
            (
                GBox::Leaf {
                    out: g,
                    wt: Vec::new(),
                },
                gin,
            )
        }
        (Node::MaxPool2 { .. } | Node::MaxPool { .. }, t) => {
            let gin = crate::bounds::max_pool::grad_back(t.input(), &g, &node.pool_windows());
            (
                GBox::Leaf {
                    out: g,
                    wt: Vec::new(),
                },
                gin,
            )
        }
        (
            Node::Residual { main, shortcut },
            Trace::Residual {
                main: tm,
                shortcut: ts,
                ..
            },
        ) => {
            let (gm, im) = boxes(main, tm, g.clone())?;
            let (gs, is) = boxes(shortcut, ts, g.clone())?;
            let gin = im.add(&is)?;
            (
                GBox::Residual {
                    out: g,
                    main: gm,
                    shortcut: gs,
                },
                gin,
            )
        }
        (
            Node::Concat { branches },
            Trace::Concat {
                input,
                branches: tb,
            },
        ) if tb.len() == branches.len() => {
            // The output box splits by branch; the branch images add at the fork.
            let dims = branch_dims(branches, input.len())?;
            let mut gbs = Vec::with_capacity(branches.len());
            let mut gin = Interval::point(&vec![0.0; input.len()]);
            for ((b, t), part) in branches.iter().zip(tb).zip(split_box(&g, &dims)?) {
                let (gb, ib) = boxes(b, t, part)?;
                gin = gin.add(&ib)?;
                gbs.push(gb);
            }
            (
                GBox::Concat {
                    out: g,
                    branches: gbs,
                },
                gin,
            )
        }
        (Node::Residual { .. } | Node::Concat { .. }, _) => {
            return Err(Error::Internal(
                "residual or concatenation node without its branch traces".into(),
            ));
        }
    })
}

/// FastLip's boxes through `nodes` from the box `g` at their output (forward order) and the box
/// at their input.
fn boxes(nodes: &[Node], traces: &[Trace], mut g: Interval) -> Result<(Vec<GBox>, Interval)> {
    if nodes.len() != traces.len() {
        return Err(Error::Internal("trace does not match the network".into()));
    }
    let mut out = Vec::with_capacity(nodes.len());
    for (node, trace) in nodes.iter().zip(traces).rev() {
        let (b, gin) = step(node, trace, g)?;
        out.push(b);
        g = gin;
    }
    out.reverse();
    Ok((out, g))
}

/// Pass A through `nodes`: μ on the gradient at their input ↦ μ on the gradient at their
/// output, pushing each node's α (or `Side::None`) onto `side`.
fn walk(
    nodes: &[Node],
    traces: &[Trace],
    gb: &[GBox],
    mut mu: Vec<f64>,
    plane: Plane,
    acc: &mut Acc,
    side: &mut Vec<Side>,
) -> Result<Vec<f64>> {
    if nodes.len() != traces.len() || nodes.len() != gb.len() {
        return Err(Error::Internal("Jacobian bound: boxes do not match".into()));
    }
    for ((node, trace), g) in nodes.iter().zip(traces).zip(gb) {
        let z = trace.input();
        if mu.len() != z.len() {
            return Err(Error::Internal("Jacobian bound: coefficient size".into()));
        }
        let mut s = Side::None;
        mu = match (node, g) {
            (Node::Affine(a), GBox::Leaf { wt, .. }) => affine::forward_coef(&a.op, &mu, wt, acc),
            (Node::Relu, GBox::Leaf { out, .. }) => {
                let (m, alpha) = relu::bilinear(&mu, z, out, plane, acc);
                s = Side::Relu(alpha);
                m
            }
            (Node::MaxPool2 { .. } | Node::MaxPool { .. }, GBox::Leaf { out, .. }) => {
                max_pool::route(&mu, z, out, &node.pool_windows(), acc)
            }
            (Node::Concat { branches }, GBox::Concat { out, branches: gbs }) => {
                // μᵀg_in = Σ_b μᵀ(J_bᵀ g_b): each branch walked from the same μ, the branch
                // forms side by side on the concatenated output (no arithmetic).
                let tb = match trace {
                    Trace::Concat { branches, .. } if branches.len() == gbs.len() => branches,
                    _ => {
                        return Err(Error::Internal(
                            "Jacobian bound: concatenation without its branch traces".into(),
                        ));
                    }
                };
                if gbs.len() != branches.len() {
                    return Err(Error::Internal("Jacobian bound: boxes do not match".into()));
                }
                let mut sides = Vec::with_capacity(branches.len());
                let mut m = Vec::with_capacity(out.len());
                for ((b, t), gb) in branches.iter().zip(tb).zip(gbs) {
                    let mut sb = Vec::new();
                    m.extend(walk(b, t, gb, mu.clone(), plane, acc, &mut sb)?);
                    sides.push(sb);
                }
                if m.len() != out.len() {
                    return Err(Error::Internal(
                        "Jacobian bound: concatenation output size".into(),
                    ));
                }
                s = Side::Concat(sides);
                m
            }
            (
                Node::Residual { main, shortcut },
                GBox::Residual {
                    out,
                    main: gm,
                    shortcut: gs,
                },
            ) => {
                let (tm, ts) = match trace {
                    Trace::Residual { main, shortcut, .. } => (main, shortcut),
                    _ => {
                        return Err(Error::Internal(
                            "residual node without its branch traces".into(),
                        ));
                    }
                };
                let (mut sm, mut ss) = (Vec::new(), Vec::new());
                let a = walk(main, tm, gm, mu.clone(), plane, acc, &mut sm)?;
                let b = walk(shortcut, ts, gs, mu, plane, acc, &mut ss)?;
                if a.len() != b.len() || a.len() != out.len() {
                    return Err(Error::Internal("residual branches differ in length".into()));
                }
                // fl(a + b) errs by ≤ u|a + b| per entry, times |g_out| ≤ M.
                let m = out.abs_max();
                let sum: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
                acc.slack +=
                    2.0 * f64::EPSILON * sum.iter().zip(&m).map(|(v, m)| v.abs() * m).sum::<f64>();
                s = Side::Residual {
                    main: sm,
                    shortcut: ss,
                };
                sum
            }
            _ => return Err(Error::Internal("Jacobian bound: boxes do not match".into())),
        };
        side.push(s);
    }
    Ok(mu)
}

/// Settings of the Jacobian bound propagation.
#[derive(Debug, Clone, Copy)]
pub struct LbpConfig {
    /// Gradient boxes (at ReLU / max-pool outputs of the top level, and at the input) of at most
    /// this many entries are tightened by the propagation itself (two rows per entry)...
    pub refine_max_dim: usize,
    /// ... while the estimated multiply-adds of all tightening rows stay within this budget
    /// (levels are taken from the logits down; a level that would exceed it is skipped).
    pub refine_max_work: f64,
    /// Also compute RecurJac on the same boxes and report the minimum.
    pub recurjac: bool,
}

impl Default for LbpConfig {
    fn default() -> Self {
        LbpConfig {
            refine_max_dim: 1024,
            refine_max_work: 3e9,
            recurjac: false,
        }
    }
}

/// Multiply-adds of one dense pass through `nodes` (the cost model of the refinement budget).
fn work(nodes: &[Node]) -> f64 {
    nodes
        .iter()
        .map(|n| match n {
            Node::Affine(a) => {
                let m = a.op.map();
                m.out_dim() as f64 * m.fan_in() as f64
            }
            Node::Relu | Node::MaxPool2 { .. } | Node::MaxPool { .. } => 0.0,
            Node::Residual { main, shortcut } => work(main) + work(shortcut),
            Node::Concat { branches } => branches.iter().map(|b| work(b)).sum(),
        })
        .sum()
}

/// Which sound rule gave the reported local bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JacobianRule {
    /// The linear relaxation of the norm, propagated through the Jacobian graph.
    JacobianLbp,
    /// ‖·‖_q of the gradient box tightened by the propagation.
    JacobianBox,
    /// FastLip (box ∩ simplex head, local product included) was not beaten.
    Fastlip,
    /// RecurJac was not beaten.
    Recurjac,
}

impl JacobianRule {
    /// The name written to CSV files.
    pub fn name(self) -> &'static str {
        match self {
            JacobianRule::JacobianLbp => "jacobian-lbp",
            JacobianRule::JacobianBox => "jacobian-box",
            JacobianRule::Fastlip => "fastlip",
            JacobianRule::Recurjac => "recurjac",
        }
    }
}

/// A certified local bound by Jacobian bound propagation, with the rules it was compared with.
#[derive(Debug, Clone)]
pub struct JacobianBound {
    /// The minimum of the sound rules: the certified bound on sup ‖∇ₓS‖_q over the ball.
    pub value: f64,
    /// This rule alone: min(linear norm relaxation, norm of its tightened gradient box).
    pub lbp_value: f64,
    /// FastLip (box ∩ simplex head, local product included) on the same pre-activation boxes.
    pub fastlip_value: f64,
    /// RecurJac, when asked for.
    pub recurjac_value: Option<f64>,
    /// The rule that gave `value`.
    pub rule: JacobianRule,
    /// The box of ∇ₓS over the ball (FastLip ∩ the propagation's per-coordinate bounds).
    pub grad: Interval,
    /// Gradient-box entries tightened by the propagation (all levels).
    pub refined_entries: usize,
}

/// The network, its traced boxes and the softmax box: what every row of the propagation reads.
struct Engine<'a> {
    net: &'a Net,
    traces: &'a [Trace],
    info: Vec<forward::Mags>,
    ball: &'a Ball,
    p: Interval,
}

impl Engine<'_> {
    /// A certified upper bound of vᵀg over the ball, g the gradient of S at the input of
    /// top-level node `start` (`gb`: the gradient boxes of nodes `start..`).
    fn upper(&self, start: usize, gb: &[GBox], v: Vec<f64>, plane: Plane) -> Result<f64> {
        let nodes = &self.net.nodes;
        let mut acc = Acc::default();
        let mut side = vec![Side::None; start];
        let mu = walk(
            &nodes[start..],
            &self.traces[start..],
            gb,
            v,
            plane,
            &mut acc,
            &mut side,
        )?;
        if mu.len() != self.p.len() {
            return Err(Error::Internal(
                "Jacobian bound: output size ≠ classes".into(),
            ));
        }
        acc.term(head::upper(&mu, &self.p));
        acc.term(forward::upper(
            nodes,
            &self.info,
            &side,
            self.ball,
            self.net.num_classes,
        )?);
        Ok(acc.finish())
    }

    /// The box of the gradient at the input of node `start` by two rows per entry.
    fn refine(&self, start: usize, gb: &[GBox], dim: usize) -> Result<Interval> {
        let unit = |j: usize, s: f64| {
            let mut e = vec![0.0; dim];
            e[j] = s;
            e
        };
        let rows: Vec<(f64, f64)> = (0..dim)
            .into_par_iter()
            .map(|j| {
                let lo = -self.upper(start, gb, unit(j, -1.0), Plane::Adaptive)?;
                let hi = self.upper(start, gb, unit(j, 1.0), Plane::Adaptive)?;
                Ok((lo, hi))
            })
            .collect::<Result<_>>()?;
        let (lo, hi) = rows.into_iter().unzip();
        Ok(Interval { lo, hi })
    }

    /// Every gradient box, from the logits down, tightened where small enough; returns them
    /// (forward order), the input box and the number of tightened entries.
    fn gradient_boxes(&self, cfg: &LbpConfig) -> Result<(Vec<GBox>, Interval, usize)> {
        let nodes = &self.net.nodes;
        let n = nodes.len();
        let all = work(nodes);
        let mut budget = cfg.refine_max_work;
        // Two rows per entry, each a walk from `start` (pass A) and one through all (pass B).
        let mut afford = |start: usize, dim: usize| {
            let cost = 2.0 * dim as f64 * (work(&nodes[start..]) + all);
            let ok = dim <= cfg.refine_max_dim && cost <= budget;
            if ok {
                budget -= cost;
            }
            ok
        };
        let mut gb: VecDeque<GBox> = VecDeque::with_capacity(n);
        let mut g = Interval {
            lo: self.p.hi.iter().map(|v| -v).collect(),
            hi: self.p.lo.iter().map(|v| -v).collect(),
        };
        let mut refined = 0;
        for i in (0..n).rev() {
            if (matches!(nodes[i], Node::Relu) || nodes[i].is_max_pool())
                && i + 1 < n
                && afford(i + 1, g.len())
            {
                let r = self.refine(i + 1, gb.make_contiguous(), g.len())?;
                refined += g.len();
                g = tighten(&g, &r)?;
            }
            let (b, gin) = step(&nodes[i], &self.traces[i], g)?;
            gb.push_front(b);
            g = gin;
        }
        let mut gb: Vec<GBox> = gb.into();
        if afford(0, g.len()) {
            let r = self.refine(0, &gb, g.len())?;
            refined += g.len();
            g = tighten(&g, &r)?;
        }
        gb.shrink_to_fit();
        Ok((gb, g, refined))
    }
}

/// A certified upper bound of vᵀ∇ₓS(x') over x' in the ball (every Clarke gradient): one row of
/// the propagation, on gradient boxes tightened as `cfg` allows, the minimum over the three
/// plane policies. The building block of [`jacobian_lbp`], exposed for directional bounds.
pub fn directional_upper(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    pre: PreBounds,
    cfg: LbpConfig,
    v: &[f64],
) -> Result<f64> {
    crate::lipschitz::local::check_query(net, ball, temperature)?;
    check_net(net)?;
    if v.len() != net.input_dim() {
        return Err(Error::BadInput(format!(
            "direction has {} coordinates, network {}",
            v.len(),
            net.input_dim()
        )));
    }
    let (traces, logits) = pre_bounds(net, ball, pre)?;
    let eng = Engine {
        net,
        traces: &traces,
        info: forward::mags(&net.nodes, &traces)?,
        ball,
        p: simplex_tighten(&softmax_box(&logits, temperature)),
    };
    let (gb, _, _) = eng.gradient_boxes(&cfg)?;
    let mut best = f64::INFINITY;
    for plane in [Plane::Adaptive, Plane::Zero, Plane::One] {
        best = best.min(eng.upper(0, &gb, v.to_vec(), plane)?);
    }
    Ok(best)
}

fn check_net(net: &Net) -> Result<()> {
    if !matches!(net.nodes.last(), Some(Node::Affine(_))) {
        return Err(Error::BadInput(
            "the Jacobian bound needs a network whose last node is affine (the logits)".into(),
        ));
    }
    Ok(())
}

/// The Jacobian bound propagation's local Lipschitz bound of S on the ball (module doc), with
/// the pre-activation boxes from `pre`.
pub fn jacobian_lbp(
    net: &Net,
    ball: &Ball,
    temperature: f64,
    pre: PreBounds,
    cfg: LbpConfig,
) -> Result<JacobianBound> {
    crate::lipschitz::local::check_query(net, ball, temperature)?;
    check_net(net)?;
    let (traces, logits) = pre_bounds(net, ball, pre)?;
    jacobian_lbp_on(net, ball, &traces, logits, temperature, cfg)
}

/// [`jacobian_lbp`] on given pre-activation traces and logit box of the ball (from
/// [`pre_bounds`], or a trace shared with the other bounds of the same ball).
pub fn jacobian_lbp_on(
    net: &Net,
    ball: &Ball,
    traces: &[crate::bounds::Trace],
    logits: Interval,
    temperature: f64,
    cfg: LbpConfig,
) -> Result<JacobianBound> {
    crate::lipschitz::local::check_query(net, ball, temperature)?;
    check_net(net)?;
    let p = simplex_tighten(&softmax_box(&logits, temperature));
    let fl = fastlip_on(
        net,
        traces,
        logits.clone(),
        ball.norm,
        temperature,
        Head::Simplex,
    )?;
    let eng = Engine {
        net,
        traces,
        info: forward::mags(&net.nodes, traces)?,
        ball,
        p,
    };
    let (gb, g_in, refined_entries) = eng.gradient_boxes(&cfg)?;
    let grad = tighten(&g_in, &fl.grad)?;
    let box_value = box_dual_norm(&grad, ball.norm);
    let (v, b) = match ball.norm {
        Norm::Linf => norm::l1(&grad),
        Norm::L2 => norm::l2_squared(&grad),
    };
    let mut lin = f64::INFINITY;
    for plane in [Plane::Adaptive, Plane::Zero, Plane::One] {
        lin = lin.min(eng.upper(0, &gb, v.clone(), plane)?);
    }
    let s = next_up(lin + b + 4.0 * f64::EPSILON * (lin.abs() + b.abs()) + ABS_FLOOR).max(0.0);
    let relaxed = match ball.norm {
        Norm::Linf => s,
        Norm::L2 => next_up(s.sqrt() * (1.0 + 4.0 * f64::EPSILON)),
    };
    let recurjac_value = if cfg.recurjac {
        Some(
            crate::lipschitz::recurjac::recurjac_on(
                net,
                traces,
                logits,
                ball.norm,
                temperature,
                f64::INFINITY,
            )?
            .value,
        )
    } else {
        None
    };
    let (value, rule) = [
        // Ties go to the earlier rule: a Jacobian rule is named only when strictly tighter.
        (fl.value, JacobianRule::Fastlip),
        (
            recurjac_value.unwrap_or(f64::INFINITY),
            JacobianRule::Recurjac,
        ),
        (box_value, JacobianRule::JacobianBox),
        (relaxed, JacobianRule::JacobianLbp),
    ]
    .into_iter()
    .fold((f64::INFINITY, JacobianRule::Fastlip), |best, cur| {
        if cur.0 < best.0 { cur } else { best }
    });
    Ok(JacobianBound {
        value,
        lbp_value: relaxed.min(box_value),
        fastlip_value: fl.value,
        recurjac_value,
        rule,
        grad,
        refined_entries,
    })
}
