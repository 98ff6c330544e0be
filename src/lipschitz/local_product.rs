//! Masked local product bound of ‖∇ₓS‖ on a ball for dense, convolutional and residual ReLU
//! networks (proofs/lipschitz_local_product.md): every Clarke Jacobian on the ball is a product
//! of layer Jacobians in which a ReLU dead on the ball (upper bound < 0) and a max-pool entry
//! that can never be its window's maximum contribute zeros, so each layer's factor is the norm
//! of the layer restricted to the live rows and columns, capped by the unmasked factor the global
//! bound uses (global.rs, same folding and order): the result is never above the global bound.
//!
//! The same walk, given the ball, also tightens the boxes (Lipschitz boxes, Claim 5): at the
//! output z_j of each affine segment, |z_j(x) − z_j(x₀)| ≤ ε·r_j with r_j the smaller of the
//! row's dual norm × the prefix's masked product and Σᵢ|a_ji|·(the same bound of input i).

use super::global::{fold, fold_slack, head_norm, op_norm};
use super::masked_norm::{masked_head, masked_norm, row_dual_norms};
use super::operator_norm::NormBudget;
use crate::bounds::ibp::{Trace, ibp, ibp_node};
use crate::bounds::interval::Interval;
use crate::bounds::linear_map::affine_image;
use crate::bounds::net::{Affine, LinearOp, Net, Node, pool_windows};
use crate::bounds::round::{dot_err, min_nan, next_down, next_up, widen_up};
use crate::bounds::{Ball, Norm, max_pool, relu};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The masked product and the prefix products at the input of every top-level node.
#[derive(Debug, Clone)]
pub struct LocalProduct {
    /// Certified bound of sup ‖∇ₓS‖_q over the ball (the last layer measured ℓp → ℓ∞).
    pub total: f64,
    /// `prefix[i]`: certified ℓp → ℓp bound of the Jacobian of the network before node i,
    /// restricted to the coordinates where the gradient at node i's input can be non-zero
    /// (`None` inside nothing: every top-level node gets a value).
    pub prefix: Vec<f64>,
}

/// The unmasked factors of one network (the global bound's), computed once per network.
type CapTable = Mutex<HashMap<(Vec<u32>, usize, bool), f64>>;

type CapTables = Mutex<HashMap<(usize, bool), Arc<CapTable>>>;

fn cap_tables() -> &'static CapTables {
    static T: std::sync::OnceLock<CapTables> = std::sync::OnceLock::new();
    T.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A fingerprint of the network's structure and weights (the cache key of its factors).
fn fingerprint(nodes: &[Node], h: &mut [u64; 2]) {
    fn mix_into(h: &mut [u64; 2], v: u64) {
        h[0] = (h[0] ^ v).wrapping_mul(0x0100_0000_01b3).rotate_left(17);
        h[1] = (h[1] ^ v.rotate_left(29))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(23);
    }
    for n in nodes {
        match n {
            Node::Affine(a) => {
                let (tag, w): (u64, &[f64]) = match &a.op {
                    LinearOp::Dense(d) => (1, &d.w),
                    LinearOp::Conv(c) => {
                        mix_into(h, (c.stride * 1000 + c.pad) as u64);
                        mix_into(h, (c.h * 100_000 + c.w) as u64);
                        (2, &c.k)
                    }
                    LinearOp::Diag(d) => (3, &d.scale),
                    LinearOp::AvgPool(_) | LinearOp::Pad(_) => {
                        // Small structs: their debug text is their whole geometry.
                        format!("{:?}", a.op)
                            .bytes()
                            .for_each(|b| mix_into(h, b as u64));
                        (4, &[])
                    }
                };
                mix_into(h, tag);
                mix_into(h, a.op.map().in_dim() as u64);
                mix_into(h, a.op.map().out_dim() as u64);
                w.iter().for_each(|v| mix_into(h, v.to_bits()));
            }
            Node::Relu => mix_into(h, 5),
            Node::MaxPool2 { c, h: ph, w } => mix_into(h, (6 + c * 7 + ph * 11 + w * 13) as u64),
            Node::Residual { main, shortcut } => {
                mix_into(h, 7);
                fingerprint(main, h);
                mix_into(h, 8);
                fingerprint(shortcut, h);
                mix_into(h, 9);
            }
            Node::Concat { branches } => {
                mix_into(h, 10);
                for b in branches {
                    fingerprint(b, h);
                    mix_into(h, 11);
                }
            }
            Node::MaxPool { .. } => format!("{n:?}")
                .bytes()
                .for_each(|b| mix_into(h, 12 + b as u64)),
        }
    }
}

/// A 128-bit fingerprint of a network's structure and weights (two independent 64-bit mixes):
/// narrows the search in [`net_id`]; never trusted as an identity on its own.
fn net_fingerprint(net: &Net) -> u128 {
    let mut h = [0xcbf2_9ce4_8422_2325u64, 0x6a09_e667_f3bc_c909];
    fingerprint(&net.nodes, &mut h);
    ((h[0] as u128) << 64) | h[1] as u128
}

/// The networks whose factors this process has cached, with their fingerprints.
type NetRegistry = Mutex<Vec<(u128, Arc<Net>)>>;

/// The id of `net` in this process's registry, the cache key of its norm factors and global
/// bound: two networks share an id only when they are equal in structure and every weight
/// (checked exactly; the fingerprint only selects the candidates), so a cached factor is never
/// another network's, whatever the hash does.
pub(crate) fn net_id(net: &Net) -> usize {
    static R: std::sync::OnceLock<NetRegistry> = std::sync::OnceLock::new();
    let fp = net_fingerprint(net);
    let registry = R.get_or_init(|| Mutex::new(Vec::new()));
    let mut r = match registry.lock() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(i) = r.iter().position(|(f, n)| *f == fp && **n == *net) {
        return i;
    }
    r.push((fp, Arc::new(net.clone())));
    r.len() - 1
}

/// A mask as an exact key (its length, then the bits packed; `None` = all live).
fn mask_key(m: Option<&[bool]>) -> Option<Vec<u64>> {
    m.map(|m| {
        let mut v = vec![0u64; m.len().div_ceil(64) + 1];
        v[0] = m.len() as u64;
        for (i, &b) in m.iter().enumerate() {
            if b {
                v[1 + i / 64] |= 1 << (i % 64);
            }
        }
        v
    })
}

/// Masked factors already computed (the Lipschitz-box walk and the product walk over the
/// tightened boxes meet the same masks): (network, norm, segment, op, head, masks) → value.
type MaskedKey = (
    usize,
    bool,
    Vec<u32>,
    usize,
    bool,
    Option<Vec<u64>>,
    Option<Vec<u64>>,
);
type MaskedMemo = Mutex<HashMap<MaskedKey, f64>>;

fn masked_memo() -> &'static MaskedMemo {
    static M: std::sync::OnceLock<MaskedMemo> = std::sync::OnceLock::new();
    M.get_or_init(|| Mutex::new(HashMap::new()))
}

struct Ctx {
    net_id: usize,
    norm: Norm,
    caps: Arc<CapTable>,
    /// The ball radius and the centre's trace, when the boxes are tightened.
    tight: Option<(f64, Vec<Trace>)>,
}

impl Ctx {
    fn new(net: &Net, norm: Norm) -> Ctx {
        let h = net_id(net);
        let caps = cap_tables()
            .lock()
            .map(|mut t| t.entry((h, norm == Norm::L2)).or_default().clone())
            .unwrap_or_default();
        Ctx {
            net_id: h,
            norm,
            caps,
            tight: None,
        }
    }

    /// The global bound's factor of op `k` of the segment at `path` (cached).
    fn cap(&self, path: &[u32], k: usize, op: &LinearOp, head: bool) -> f64 {
        let key = (path.to_vec(), k, head);
        if let Some(v) = self.caps.lock().ok().and_then(|t| t.get(&key).copied()) {
            return v;
        }
        let budget = NormBudget::default();
        let v = if head {
            head_norm(op, self.norm, budget).0
        } else {
            op_norm(op, self.norm, budget).0
        };
        if let Ok(mut t) = self.caps.lock() {
            t.insert(key, v);
        }
        v
    }
}

impl Ctx {
    /// The global bound's value for this network (cached): the product is capped by it, so it
    /// is never above the global bound even where the naive composition beats the folded one.
    fn global_value(&self, net: &Net) -> Result<f64> {
        let key = (vec![u32::MAX], 0, false);
        if let Some(v) = self.caps.lock().ok().and_then(|t| t.get(&key).copied()) {
            return Ok(v);
        }
        let v = super::global::global_bound(net, self.norm)?.value;
        if let Ok(mut t) = self.caps.lock() {
            t.insert(key, v);
        }
        Ok(v)
    }
}

/// State at a position of a node list.
#[derive(Clone)]
struct Pos {
    bx: Interval,
    /// Coordinates that can carry a non-zero prefix Jacobian row (None: all).
    mask: Option<Vec<bool>>,
    /// Product of the factors since the list's start (the global bound's order).
    lip: f64,
    /// Per coordinate, a bound of |v_j(x) − v_j(x₀)| / ‖x − x₀‖_p (tightening only).
    coord: Option<Vec<f64>>,
}

/// An affine segment whose output rows are not yet masked.
struct Pending {
    path: Vec<u32>,
    ops: Vec<LinearOp>,
    /// Per op: the fold's relative entry rounding (`global::Folded::rel`).
    rel: Vec<f64>,
    cols: Option<Vec<bool>>,
    lip_in: f64,
}

enum Tail {
    Done(f64),
    Pending(Pending),
}

struct ListOut {
    traces: Vec<Trace>,
    /// The box, mask-free state and coordinate bounds at the list's output.
    out: Pos,
    tail: Tail,
    prefix: Vec<f64>,
}

/// A ReLU whose pre-activation upper bound is `u` can be active (not dead) on the ball; a NaN
/// bound counts as active.
fn possibly_active(u: f64) -> bool {
    u >= 0.0 || u.is_nan()
}

fn and_mask(a: Option<Vec<bool>>, b: &[bool]) -> Vec<bool> {
    match a {
        Some(a) => a.iter().zip(b).map(|(x, y)| *x && *y).collect(),
        None => b.to_vec(),
    }
}

/// The rows of the Jacobian into position `j` that the following ReLUs and max-pool can pass:
/// a ReLU dead on its box and a pool entry that is never the maximum get zero gradient.
fn lookahead(nodes: &[Node], traces: &[Trace], j: usize, bx: &Interval) -> Option<Vec<bool>> {
    let mut rows: Option<Vec<bool>> = None;
    let mut b = bx.clone();
    let mut k = j;
    while let Some(node) = nodes.get(k) {
        match node {
            Node::Relu => {
                let alive: Vec<bool> = b.hi.iter().map(|u| possibly_active(*u)).collect();
                rows = Some(and_mask(rows, &alive));
                b = relu::ibp(&b);
                if let Some(t) = traces.get(k + 1) {
                    b = b.intersect(t.input());
                }
                k += 1;
            }
            Node::MaxPool2 { c, h, w } => {
                let mut cand = vec![false; b.len()];
                for win in pool_windows(*c, *h, *w) {
                    for i in max_pool::candidates(&b, &win) {
                        cand[i] = true;
                    }
                }
                rows = Some(and_mask(rows, &cand));
                break;
            }
            _ => break,
        }
    }
    rows
}

/// [lo − ε r, hi + ε r] around the centre's box, rounded outward.
fn lip_box(centre: &Interval, r: &[f64], eps: f64) -> Interval {
    // A NaN radius (∞·0 from an infinite prefix bound) means no information: no tightening.
    let d: Vec<f64> = r
        .iter()
        .map(|v| {
            let d = next_up(eps * v);
            if d.is_nan() { f64::INFINITY } else { d }
        })
        .collect();
    Interval {
        lo: centre
            .lo
            .iter()
            .zip(&d)
            .map(|(c, d)| next_down(c - d))
            .collect(),
        hi: centre
            .hi
            .iter()
            .zip(&d)
            .map(|(c, d)| next_up(c + d))
            .collect(),
    }
}

impl Ctx {
    /// The product of a pending segment's factors with output rows `rows`.
    fn finalize(&self, p: &Pending, rows: Option<&[bool]>, head: bool) -> f64 {
        let n = p.ops.len();
        let mut lip = p.lip_in;
        for (k, op) in p.ops.iter().enumerate() {
            let last = k + 1 == n;
            let is_head = head && last;
            let r = if last { rows } else { None };
            let c = if k == 0 { p.cols.as_deref() } else { None };
            let cap = self.cap(&p.path, k, op, is_head);
            let masked = if !is_head && r.is_none() && c.is_none() {
                cap
            } else {
                self.masked(&p.path, k, op, is_head, r, c)
            };
            if std::env::var_os("OODCERT_PROBE_PRODUCT").is_some() {
                let live =
                    |m: Option<&[bool]>| m.map_or(-1, |m| m.iter().filter(|b| **b).count() as i64);
                eprintln!(
                    "probe product: segment {:?} op {k} head {is_head}: live rows {} cols {}, unmasked {cap:.4e}, masked {masked:.4e}",
                    p.path,
                    live(r),
                    live(c)
                );
            }
            // The fold rounded the op's entries: its exact norm is within the slack.
            let slack = fold_slack(op, p.rel[k]);
            lip = next_up(lip * next_up(cap.min(masked) + slack));
        }
        lip
    }

    /// The masked factor of op `k` of the segment at `path` (memoised).
    fn masked(
        &self,
        path: &[u32],
        k: usize,
        op: &LinearOp,
        head: bool,
        r: Option<&[bool]>,
        c: Option<&[bool]>,
    ) -> f64 {
        let key = (
            self.net_id,
            self.norm == Norm::L2,
            path.to_vec(),
            k,
            head,
            mask_key(r),
            mask_key(c),
        );
        if let Some(v) = masked_memo().lock().ok().and_then(|t| t.get(&key).copied()) {
            return v;
        }
        let v = if head {
            masked_head(op, r, c, self.norm)
        } else {
            masked_norm(op, r, c, self.norm)
        };
        if let Ok(mut t) = masked_memo().lock() {
            if t.len() > 10_000 {
                t.clear();
            }
            t.insert(key, v);
        }
        v
    }

    /// Per-row bounds of |z_j(x) − z_j(x₀)| / ‖x − x₀‖ at a segment's output.
    fn seg_rows(&self, p: &Pending, lip_abs_in: f64, coord: &[f64]) -> Vec<f64> {
        let n = p.ops.len();
        // Route 1: row dual norm of the last op × the earlier ops' factors × the prefix bound.
        let mut pre = lip_abs_in;
        for (k, op) in p.ops[..n - 1].iter().enumerate() {
            let slack = fold_slack(op, p.rel[k]);
            pre = next_up(pre * next_up(self.cap(&p.path, k, op, false) + slack));
        }
        let cols = if n == 1 { p.cols.as_deref() } else { None };
        let last_slack = fold_slack(&p.ops[n - 1], p.rel[n - 1]);
        let rd: Vec<f64> = row_dual_norms(&p.ops[n - 1], cols, self.norm)
            .into_iter()
            .map(|r| {
                if last_slack > 0.0 {
                    next_up(r + last_slack)
                } else {
                    r
                }
            })
            .collect();
        // Route 2: the coordinate bounds pushed through |A| (the exact |A| ≤ (1 + rel)|Â|).
        let mut v = coord.to_vec();
        for (op, rel) in p.ops.iter().zip(&p.rel) {
            let e = dot_err(op.map().fan_in() + 1) + 2.0 * rel;
            v = op
                .map()
                .apply(&v, true)
                .into_iter()
                .map(|s| widen_up(s, e))
                .collect();
        }
        rd.iter()
            .zip(&v)
            .map(|(a, b)| min_nan(next_up(a * pre), *b))
            .collect()
    }

    /// Walks one node list. `base`: the absolute prefix bound at the list's start.
    fn walk(
        &self,
        nodes: &[Node],
        traces: &[Trace],
        centre: Option<&[Trace]>,
        path: &[u32],
        start: Pos,
        base: f64,
    ) -> Result<Option<ListOut>> {
        if traces.len() != nodes.len() || centre.is_some_and(|c| c.len() != nodes.len()) {
            return Err(Error::Internal("trace does not match the network".into()));
        }
        let n = nodes.len();
        let tight = self.tight.as_ref().map(|t| t.0);
        let mut out = Vec::with_capacity(n);
        let mut prefix = Vec::with_capacity(n);
        let mut pos = start;
        let mut i = 0;
        let sub = |k: u32| {
            let mut p = path.to_vec();
            p.push(k);
            p
        };
        while i < n {
            prefix.push(pos.lip);
            pos.bx = pos.bx.intersect(traces[i].input());
            match &nodes[i] {
                Node::Affine(_) => {
                    let mut seg: Vec<&Affine> = Vec::new();
                    let mut bx = pos.bx.clone();
                    let mut j = i;
                    while let Some(Node::Affine(a)) = nodes.get(j) {
                        if j > i {
                            // Inside a folded segment no prefix factor is known.
                            prefix.push(f64::INFINITY);
                            bx = bx.intersect(traces[j].input());
                        }
                        out.push(Trace::Leaf(bx.clone()));
                        bx = if tight.is_some() {
                            affine_image(a.op.map(), a.bias.as_deref(), &bx)?
                        } else {
                            traces.get(j + 1).map_or(bx, |t| t.input().clone())
                        };
                        seg.push(a);
                        j += 1;
                    }
                    let (ops, rel) = fold(&seg).into_iter().map(|f| (f.op, f.rel)).unzip();
                    let p = Pending {
                        path: sub(i as u32),
                        ops,
                        rel,
                        cols: pos.mask.take(),
                        lip_in: pos.lip,
                    };
                    let coord = match (tight, &pos.coord) {
                        (Some(_), Some(c)) => Some(self.seg_rows(&p, next_up(base * pos.lip), c)),
                        _ => None,
                    };
                    if let (Some(eps), Some(r), Some(c)) = (tight, &coord, centre)
                        && j < n
                    {
                        bx = bx.intersect(traces[j].input()).intersect(&lip_box(
                            c[j].input(),
                            r,
                            eps,
                        ));
                    }
                    if j == n {
                        let tail = Tail::Pending(p);
                        let out_pos = Pos {
                            bx,
                            mask: None,
                            lip: f64::NAN,
                            coord,
                        };
                        return Ok(Some(ListOut {
                            traces: out,
                            out: out_pos,
                            tail,
                            prefix,
                        }));
                    }
                    let rows = lookahead(nodes, traces, j, &bx);
                    let lip = self.finalize(&p, rows.as_deref(), false);
                    pos = Pos {
                        bx,
                        mask: None,
                        lip,
                        coord,
                    };
                    i = j;
                    continue;
                }
                Node::Relu => {
                    out.push(Trace::Leaf(pos.bx.clone()));
                    let alive: Vec<bool> = pos.bx.hi.iter().map(|u| possibly_active(*u)).collect();
                    if let Some(c) = pos.coord.as_mut() {
                        c.iter_mut()
                            .zip(&alive)
                            .for_each(|(c, a)| *c = if *a { *c } else { 0.0 });
                    }
                    pos.mask = Some(and_mask(pos.mask.take(), &alive));
                    pos.bx = relu::ibp(&pos.bx);
                }
                Node::MaxPool2 { c, h, w } => {
                    out.push(Trace::Leaf(pos.bx.clone()));
                    let wins = pool_windows(*c, *h, *w);
                    let mut mask = vec![false; wins.len()];
                    let mut coord = vec![0.0; wins.len()];
                    for (k, win) in wins.iter().enumerate() {
                        for i in max_pool::candidates(&pos.bx, win) {
                            mask[k] |= pos.mask.as_ref().is_none_or(|m| m[i]);
                            if let Some(ci) = &pos.coord {
                                coord[k] = crate::bounds::round::max_nan(coord[k], ci[i]);
                            }
                        }
                    }
                    if pos.coord.is_some() {
                        pos.coord = Some(coord);
                    }
                    pos.mask = Some(mask);
                    let wins: Vec<Vec<usize>> = wins.iter().map(|w| w.to_vec()).collect();
                    pos.bx = max_pool::ibp(&pos.bx, &wins);
                }
                Node::Residual { main, shortcut } => {
                    let (tm, ts) = match &traces[i] {
                        Trace::Residual { main, shortcut, .. } => (main, shortcut),
                        _ => return Err(Error::Internal("residual node with a leaf trace".into())),
                    };
                    let (cm, cs) = match centre.map(|c| &c[i]) {
                        Some(Trace::Residual { main, shortcut, .. }) => {
                            (Some(&main[..]), Some(&shortcut[..]))
                        }
                        Some(_) => {
                            return Err(Error::Internal("residual node with a leaf trace".into()));
                        }
                        None => (None, None),
                    };
                    let b_in = next_up(base * pos.lip);
                    let branch_start = Pos {
                        lip: 1.0,
                        ..pos.clone()
                    };
                    let Some(mo) =
                        self.walk(main, tm, cm, &sub(2 * i as u32), branch_start.clone(), b_in)?
                    else {
                        return Ok(None);
                    };
                    let so = if shortcut.is_empty() {
                        ListOut {
                            traces: vec![],
                            out: branch_start,
                            tail: Tail::Done(1.0),
                            prefix: vec![],
                        }
                    } else {
                        match self.walk(
                            shortcut,
                            ts,
                            cs,
                            &sub(2 * i as u32 + 1),
                            branch_start,
                            b_in,
                        )? {
                            Some(s) => s,
                            None => return Ok(None),
                        }
                    };
                    out.push(Trace::Residual {
                        input: pos.bx.clone(),
                        main: mo.traces,
                        shortcut: so.traces,
                    });
                    let mut bx = if tight.is_some() {
                        mo.out.bx.add(&so.out.bx)?
                    } else if i + 1 < n {
                        traces[i + 1].input().clone()
                    } else {
                        ibp_node(&nodes[i], traces[i].input().clone())?.1
                    };
                    let coord = match (&mo.out.coord, &so.out.coord) {
                        (Some(a), Some(b)) => Some(
                            a.iter()
                                .zip(b)
                                .map(|(a, b)| next_up(a + b))
                                .collect::<Vec<f64>>(),
                        ),
                        _ => None,
                    };
                    if i + 1 < n {
                        bx = bx.intersect(traces[i + 1].input());
                        if let (Some(eps), Some(r), Some(c)) = (tight, &coord, centre) {
                            bx = bx.intersect(&lip_box(c[i + 1].input(), r, eps));
                        }
                    }
                    let rows = if i + 1 < n {
                        lookahead(nodes, traces, i + 1, &bx)
                    } else {
                        None
                    };
                    let branch = |t: &Tail| match t {
                        Tail::Done(v) => *v,
                        Tail::Pending(p) => self.finalize(p, rows.as_deref(), false),
                    };
                    let (m, s) = (branch(&mo.tail), branch(&so.tail));
                    pos = Pos {
                        bx,
                        mask: None,
                        lip: next_up(pos.lip * next_up(m + s)),
                        coord,
                    };
                }
                #[allow(unreachable_patterns)]
                _ => return Ok(None),
            }
            i += 1;
        }
        Ok(Some(ListOut {
            traces: out,
            out: pos.clone(),
            tail: Tail::Done(pos.lip),
            prefix,
        }))
    }
}

/// The masked local product on given traces (from `local::pre_bounds`); `None` for node kinds
/// it does not know.
pub fn masked_product(net: &Net, traces: &[Trace], norm: Norm) -> Result<Option<LocalProduct>> {
    let ctx = Ctx::new(net, norm);
    let Some(first) = traces.first() else {
        return Ok(Some(LocalProduct {
            total: 1.0,
            prefix: vec![],
        }));
    };
    let start = Pos {
        bx: first.input().clone(),
        mask: None,
        lip: 1.0,
        coord: None,
    };
    let Some(o) = ctx.walk(&net.nodes, traces, None, &[], start, 1.0)? else {
        return Ok(None);
    };
    let total = match &o.tail {
        Tail::Done(v) => *v,
        Tail::Pending(p) => ctx.finalize(p, None, true),
    };
    let total = total.min(ctx.global_value(net)?);
    // The diagonally scaled product (chains of dense / conv layers, ℓ2), when it is smaller.
    let total =
        super::scaled_product::scaled_product(net, traces, norm).map_or(total, |s| total.min(s));
    Ok(Some(LocalProduct {
        total,
        prefix: o.prefix,
    }))
}

/// Tightens node input boxes and the logit box with the Lipschitz boxes of the ball (Claim 5),
/// re-propagating IBP from every tightened box. Unknown node kinds: the inputs unchanged.
pub fn lipschitz_boxes(
    net: &Net,
    ball: &Ball,
    traces: Vec<Trace>,
    logits: Interval,
) -> Result<(Vec<Trace>, Interval)> {
    if traces.is_empty() || traces.len() != net.nodes.len() {
        return Ok((traces, logits));
    }
    let mut ctx = Ctx::new(net, ball.norm);
    let (centre, _) = ibp(&net.nodes, Interval::point(&ball.center))?;
    ctx.tight = Some((ball.eps, centre));
    let centre = ctx.tight.as_ref().map(|t| t.1.clone());
    let start = Pos {
        bx: traces[0].input().clone(),
        mask: None,
        lip: 1.0,
        coord: Some(vec![1.0; net.input_dim()]),
    };
    let Some(o) = ctx.walk(&net.nodes, &traces, centre.as_deref(), &[], start, 1.0)? else {
        return Ok((traces, logits));
    };
    // The box at the walk's end is IBP of the tightened boxes through the last node(s).
    let out = o.out.bx;
    let l = if out.len() == logits.len() {
        logits.intersect(&out)
    } else {
        logits
    };
    Ok((o.traces, l))
}
