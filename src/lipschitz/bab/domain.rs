//! One domain of the Lipschitz branch and bound (LipBaB, Bhowmick et al. 2021): some unstable
//! ReLUs fixed active (z ≥ 0) or inactive (z ≤ 0). Its pre-activation boxes are re-propagated
//! with every split box clamped (IBP, ∩ CROWN where the layer is small enough: a relaxation valid
//! on the domain, concretised over the whole ball, bounds the domain), and the gradient is bounded
//! with the split neurons' derivatives fixed to 1 or 0 (FastLip box ∩ simplex head, RecurJac where
//! supported; for ℓ2 balls on dense ReLU chains the pattern-Gram bound, [`super::pattern_gram`]).
//! Proofs: proofs/lipschitz_bab.md, proofs/lipschitz_pattern_gram.md.

use super::emptiness;
use super::pattern_gram::{self, Reference, pattern_gram_bound};
use super::split_cuts::{first_layer_cuts, first_relu};
use crate::bounds::ball_cuts::CutBall;
use crate::bounds::crown::{crown_box, crown_lower, crown_lower_cut};
use crate::bounds::ibp::{Trace, ibp, ibp_node};
use crate::bounds::softmax::{simplex_tighten, softmax_box};
use crate::bounds::{Ball, Interval, Net, Node, Norm};
use crate::error::{Error, Result};
use crate::lipschitz::local::{Head, fastlip_heads_on, fastlip_on, grad_backward};
use crate::lipschitz::recurjac::{recurjac_energy_on, recurjac_on, unsupported};

/// A neuron left to the relaxation (split states are `i8`: FREE, ACTIVE or INACTIVE).
pub const FREE: i8 = 0;
/// A neuron fixed to z ≥ 0 (derivative 1).
pub const ACTIVE: i8 = 1;
/// A neuron fixed to z ≤ 0 (derivative 0).
pub const INACTIVE: i8 = -1;

/// Which RecurJac rows bound a domain (where RecurJac is used at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DomainRows {
    /// The energy row and the K class rows in every domain.
    All,
    /// The energy row only, in every domain (about K + 1 times cheaper per domain).
    Energy,
    /// All rows at the root, the energy row in the children.
    AllAtRoot,
    /// All rows at the root; in a child the energy row, then all rows when the energy row does
    /// not beat the parent's bound.
    Adaptive,
}

/// The network, ball and settings every domain is bounded with.
pub struct Problem<'a> {
    pub net: &'a Net,
    pub ball: &'a Ball,
    pub temperature: f64,
    /// CROWN ∩ IBP for ReLU inputs and logits of at most this dimension (None: IBP only).
    pub crown_max_dim: Option<usize>,
    /// RecurJac with this cost guard where the network is supported (None: FastLip only).
    pub recurjac_max_work: Option<f64>,
    /// Which RecurJac rows bound a domain.
    pub rows: DomainRows,
    /// Per top-level node feeding a ReLU: the ℓ1 norm of each row of the affine map before it
    /// (the branching weight); empty for other nodes.
    row_weight: Vec<Vec<f64>>,
    /// The centre's pattern and softmax for the ℓ2 pattern-Gram bound (None: ℓ∞ ball or a
    /// network the rule does not handle).
    reference: Option<Reference>,
    /// Exact affine rows of pre-activations whose prefix has no ReLU (domain-independent).
    pub(crate) row_cache: super::column_cache::ColumnCache,
}

/// A domain: split states per top-level node (empty for non-ReLU nodes and untouched ReLUs),
/// its clamped node-input boxes, logit box and certified bound.
#[derive(Clone)]
pub struct Domain {
    pub splits: Vec<Vec<i8>>,
    pub traces: Vec<Trace>,
    pub logits: Interval,
    pub ub: f64,
    pub depth: usize,
    /// The neuron the pattern-Gram bound would split first (ℓ2), if it gave the bound.
    pub pick: Option<(usize, usize)>,
}

/// What bounding a domain gave.
pub enum Outcome {
    /// A split constraint contradicts a sound box (IBP / CROWN): no point of the ball is in it.
    EmptyByBounds,
    /// A Lagrangian (Farkas) certificate over exact affine constraints proves it empty.
    EmptyByDual,
    /// A bounded domain.
    Bounded(Domain),
}

/// The split state of neuron `j` of node `i` (free when never split).
pub fn state(splits: &[Vec<i8>], i: usize, j: usize) -> i8 {
    splits[i].get(j).copied().unwrap_or(FREE)
}

/// Clamps a ReLU input box by the node's splits; false when a split contradicts it (empty).
fn clamp(b: &mut Interval, s: &[i8]) -> bool {
    for (j, &st) in s.iter().enumerate() {
        if st == ACTIVE {
            if b.hi[j] < 0.0 {
                return false;
            }
            b.lo[j] = b.lo[j].max(0.0);
        } else if st == INACTIVE {
            if b.lo[j] > 0.0 {
                return false;
            }
            b.hi[j] = b.hi[j].min(0.0);
        }
    }
    true
}

/// Intersects the ReLU input box `cur` with CROWN bounds of every entry (`all`: at the root, as
/// `crown_trace` does) or of its unstable or split entries only (in a child, whose other entries
/// keep the parent's CROWN box); false when the two enclosures are disjoint (empty domain).
fn crown_tighten(
    prefix: &[Node],
    traces: &[Trace],
    cut: &CutBall,
    cur: &mut Interval,
    splits: &[i8],
    all: bool,
) -> Result<bool> {
    const CHUNK: usize = 128;
    let idx: Vec<usize> = (0..cur.len())
        .filter(|&j| {
            all || (cur.lo[j] <= 0.0 && cur.hi[j] >= 0.0)
                || splits.get(j).is_some_and(|s| *s != FREE)
        })
        .collect();
    for chunk in idx.chunks(CHUNK) {
        let mut q = Vec::with_capacity(2 * chunk.len());
        for &j in chunk {
            let mut e = vec![0.0; cur.len()];
            e[j] = 1.0;
            q.push(e.clone());
            e[j] = -1.0;
            q.push(e);
        }
        let b = if cut.is_empty() {
            crown_lower(prefix, traces, cut.ball, q)?
        } else {
            crown_lower_cut(prefix, traces, cut, q)?
        };
        for (k, &j) in chunk.iter().enumerate() {
            let (lo, hi) = (b[2 * k], -b[2 * k + 1]);
            if lo.is_nan() || hi.is_nan() {
                return Err(Error::Internal("BaB: a NaN CROWN bound".into()));
            }
            cur.lo[j] = cur.lo[j].max(lo);
            cur.hi[j] = cur.hi[j].min(hi);
            if cur.lo[j] > cur.hi[j] {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The intersection of two enclosures of one set; None when disjoint (the set is empty), an
/// error on NaN.
fn meet(a: &Interval, b: &Interval) -> Result<Option<Interval>> {
    let t = a.intersect(b);
    if t.lo.iter().chain(&t.hi).any(|v| v.is_nan()) {
        return Err(Error::Internal("BaB: a NaN bound".into()));
    }
    Ok((0..t.len()).all(|j| t.lo[j] <= t.hi[j]).then_some(t))
}

impl<'a> Problem<'a> {
    /// The problem on a supported query (see [`crate::lipschitz::local::check_query`]).
    pub fn new(
        net: &'a Net,
        ball: &'a Ball,
        temperature: f64,
        crown_max_dim: Option<usize>,
        recurjac_max_work: Option<f64>,
        rows: DomainRows,
    ) -> Result<Self> {
        let (traces, _) = ibp(&net.nodes, ball.to_box())?;
        let mut row_weight = vec![Vec::new(); net.nodes.len()];
        for i in 1..net.nodes.len() {
            if let (Node::Relu, Node::Affine(a)) = (&net.nodes[i], &net.nodes[i - 1]) {
                let ones = vec![1.0; traces[i - 1].input().len()];
                row_weight[i] = a.op.map().apply(&ones, true);
            }
        }
        let recurjac_max_work = recurjac_max_work.filter(|_| unsupported(net).is_none());
        let reference = match ball.norm {
            Norm::L2 if pattern_gram::supported(net) => {
                Some(Reference::at(net, &ball.center, temperature)?)
            }
            _ => None,
        };
        Ok(Problem {
            reference,
            net,
            ball,
            temperature,
            crown_max_dim,
            recurjac_max_work,
            rows,
            row_weight,
            row_cache: Default::default(),
        })
    }

    /// Propagates from node `start` (input box `cur`) to the logits, clamping split ReLU inputs;
    /// None when proven empty. `parent`: the parent domain's node-input boxes, valid on this
    /// subset too (intersected in; `cur` is already CROWN-tightened then); None at the root.
    fn propagate(
        &self,
        splits: &[Vec<i8>],
        traces: &mut Vec<Trace>,
        start: usize,
        mut cur: Interval,
        parent: Option<&[Trace]>,
    ) -> Result<Option<Interval>> {
        // The split cuts of the first ReLU layer (empty for ℓ∞ balls and other networks); a
        // new cut there re-tightens its own node's boxes too.
        let cuts = match parent {
            Some(_) => first_layer_cuts(self, splits, traces)?,
            None => Vec::new(),
        };
        let cut = CutBall::new(self.ball, &cuts);
        let crown_at_start =
            parent.is_none() || (!cut.is_empty() && first_relu(&self.net.nodes) == Some(start));
        let nodes = &self.net.nodes;
        traces.truncate(start);
        for (i, node) in nodes.iter().enumerate().skip(start) {
            if let Some(pt) = parent.filter(|_| i > start) {
                match meet(&cur, pt[i].input())? {
                    Some(t) => cur = t,
                    None => return Ok(None),
                }
            }
            if let Node::Relu = node {
                let crown = self
                    .crown_max_dim
                    .is_some_and(|m| i > 0 && cur.len() <= m && (i > start || crown_at_start));
                let all = parent.is_none();
                if crown && !crown_tighten(&nodes[..i], traces, &cut, &mut cur, &splits[i], all)? {
                    return Ok(None);
                }
                if !clamp(&mut cur, &splits[i]) {
                    return Ok(None);
                }
            }
            let (t, next) = ibp_node(node, cur)?;
            traces.push(t);
            cur = next;
        }
        if self.crown_max_dim.is_some_and(|m| cur.len() <= m) {
            let c = if cut.is_empty() {
                crown_box(nodes, traces, self.ball, cur.len())?
            } else {
                let k = cur.len();
                let mut q = Vec::with_capacity(2 * k);
                for j in 0..k {
                    let mut e = vec![0.0; k];
                    e[j] = 1.0;
                    q.push(e.clone());
                    e[j] = -1.0;
                    q.push(e);
                }
                let b = crown_lower_cut(nodes, traces, &cut, q)?;
                Interval {
                    lo: (0..k).map(|j| b[2 * j]).collect(),
                    hi: (0..k).map(|j| -b[2 * j + 1]).collect(),
                }
            };
            return meet(&cur, &c);
        }
        Ok(Some(cur))
    }

    /// The traces with every split neuron's box moved strictly to its side of 0, so that its
    /// Clarke derivative set reads {1} or {0}. Only for derivative sets, never for values.
    pub fn derivative_view(&self, splits: &[Vec<i8>], traces: &[Trace]) -> Vec<Trace> {
        let mut out = traces.to_vec();
        for (i, s) in splits.iter().enumerate() {
            if let Some(Trace::Leaf(b)) = out.get_mut(i) {
                for (j, &st) in s.iter().enumerate() {
                    if st == ACTIVE {
                        b.lo[j] = b.lo[j].max(f64::MIN_POSITIVE);
                        b.hi[j] = b.hi[j].max(b.lo[j]);
                    } else if st == INACTIVE {
                        b.hi[j] = b.hi[j].min(-f64::MIN_POSITIVE);
                        b.lo[j] = b.lo[j].min(b.hi[j]);
                    }
                }
            }
        }
        out
    }

    /// Certified bound of sup ‖∇ₓS‖_q over the domain (its derivative view and logit box).
    /// The local product bound (operator norms: costly) enters at the root only; children
    /// inherit it through the cap.
    fn grad_bound(
        &self,
        dtraces: &[Trace],
        logits: &Interval,
        root: bool,
        cap: f64,
    ) -> Result<(f64, Option<(usize, usize)>)> {
        // ℓ2: the pattern-Gram bound; in a child it replaces the costlier rules (the child keeps
        // the parent's bound through the cap), at the root it is intersected with FastLip's.
        let gram = match &self.reference {
            Some(r) => pattern_gram_bound(self.net, dtraces, logits, self.temperature, r)?,
            None => None,
        };
        if let Some(g) = gram {
            if !root {
                return Ok((g.value.min(cap), g.pick));
            }
            // At the root only FastLip besides it: RecurJac's rows cost about half of a 10 s
            // budget on the 784-256-256-10 MLP and were 1.6–2× looser there (BENCHMARKS.md, LipBaB
            // section); a caller that has RecurJac's bound passes it as the cap instead
            // ([`super::lipschitz_bab_capped`]).
            let (norm, t) = (self.ball.norm, self.temperature);
            let f = fastlip_on(self.net, dtraces, logits.clone(), norm, t, Head::Simplex)?.value;
            return Ok((g.value.min(f), g.pick));
        }
        Ok((self.other_bound(dtraces, logits, root, cap)?, None))
    }

    /// The FastLip / RecurJac rule of a domain (see [`DomainRows`]).
    fn other_bound(
        &self,
        dtraces: &[Trace],
        logits: &Interval,
        root: bool,
        cap: f64,
    ) -> Result<f64> {
        let norm = self.ball.norm;
        let (t, l) = (self.temperature, logits.clone());
        let h = Head::Simplex;
        let Some(w) = self.recurjac_max_work else {
            return Ok(if root {
                fastlip_on(self.net, dtraces, l, norm, t, h)?.value
            } else {
                fastlip_heads_on(self.net, dtraces, l, norm, t, h)?.value
            });
        };
        let all = || Ok::<f64, Error>(recurjac_on(self.net, dtraces, l.clone(), norm, t, w)?.value);
        let energy = || recurjac_energy_on(self.net, dtraces, l.clone(), norm, t, w);
        match self.rows {
            DomainRows::All => all(),
            DomainRows::Energy => Ok(energy()?.value),
            _ if root => all(),
            DomainRows::AllAtRoot => Ok(energy()?.value),
            DomainRows::Adaptive => {
                let e = energy()?.value;
                if e < cap { Ok(e) } else { Ok(e.min(all()?)) }
            }
        }
    }

    /// Bounds a domain given its splits, traces up to node `start` and the input box there.
    /// `parent`: None for the root.
    fn finish(
        &self,
        splits: Vec<Vec<i8>>,
        mut traces: Vec<Trace>,
        start: usize,
        cur: Interval,
        parent: Option<&Domain>,
    ) -> Result<Outcome> {
        let (cap, depth) = parent.map_or((f64::INFINITY, 0), |p| (p.ub, p.depth + 1));
        let boxes = parent.map(|p| p.traces.as_slice());
        let Some(logits) = self.propagate(&splits, &mut traces, start, cur, boxes)? else {
            return Ok(Outcome::EmptyByBounds);
        };
        let dtraces = self.derivative_view(&splits, &traces);
        if depth > 0 && emptiness::proven_empty(self, &splits, &dtraces)? {
            return Ok(Outcome::EmptyByDual);
        }
        let (ub, pick) = self.grad_bound(&dtraces, &logits, depth == 0, cap)?;
        Ok(Outcome::Bounded(Domain {
            splits,
            traces,
            logits,
            ub: ub.min(cap),
            depth,
            pick,
        }))
    }

    /// The whole ball (no split).
    pub fn root(&self) -> Result<Outcome> {
        let splits = vec![Vec::new(); self.net.nodes.len()];
        self.finish(splits, Vec::new(), 0, self.ball.to_box(), None)
    }

    /// The child of `parent` with neuron `j` of ReLU node `i` fixed to `st`; its bound is capped
    /// by the parent's (the child is a subset).
    pub fn child(&self, parent: &Domain, i: usize, j: usize, st: i8) -> Result<Outcome> {
        let mut splits = parent.splits.clone();
        if splits[i].is_empty() {
            splits[i] = vec![FREE; parent.traces[i].input().len()];
        }
        splits[i][j] = st;
        let traces = parent.traces[..i].to_vec();
        let cur = parent.traces[i].input().clone();
        self.finish(splits, traces, i, cur, Some(parent))
    }

    /// The neuron to split: the pattern-Gram bound's pick where it gave one (ℓ2), else among free
    /// unstable ReLUs (top level) the largest
    /// max|g_j|·‖w_j‖₁, g the FastLip gradient box at the ReLU's output and w_j the row of the
    /// affine map before it; None when every ReLU is stable or split (a leaf).
    pub fn branch(&self, d: &Domain) -> Result<Option<(usize, usize)>> {
        if let Some((i, j)) = d.pick {
            let z = d.traces[i].input();
            if state(&d.splits, i, j) == FREE && z.lo[j] <= 0.0 && z.hi[j] >= 0.0 {
                return Ok(Some((i, j)));
            }
        }
        let nodes = &self.net.nodes;
        let dtraces = self.derivative_view(&d.splits, &d.traces);
        let p = simplex_tighten(&softmax_box(&d.logits, self.temperature));
        let mut g = Interval {
            lo: p.hi.iter().map(|v| -v).collect(),
            hi: p.lo.iter().map(|v| -v).collect(),
        };
        let mut best: Option<(f64, usize, usize)> = None;
        for i in (0..nodes.len()).rev() {
            if let Node::Relu = nodes[i] {
                let z = d.traces[i].input();
                for j in 0..z.len() {
                    if state(&d.splits, i, j) != FREE || z.lo[j] > 0.0 || z.hi[j] < 0.0 {
                        continue;
                    }
                    let w = self.row_weight[i].get(j).copied().unwrap_or(1.0);
                    let s = g.lo[j].abs().max(g.hi[j].abs()) * w;
                    if best.is_none_or(|b| s > b.0) {
                        best = Some((s, i, j));
                    }
                }
            }
            g = grad_backward(&nodes[i..=i], &dtraces[i..=i], g)?;
        }
        Ok(best.map(|(_, i, j)| (i, j)))
    }
}
