//! CROWN (Zhang et al. 2018): backward linear relaxation. Query rows q at some node's output are
//! carried backwards as linear lower bounds qᵀy ≥ λᵀh + c over every earlier node h, using each
//! ReLU's and max-pool's relaxation on its (IBP or CROWN) pre-activation box (a window with
//! several possible maxima: the chord upper plane, [`max_pool::upper_line`]; α-CROWN may mix in
//! the facet, [`super::alpha_crown`]), then concretised
//! over the ball (ℓ_p dual norm, and the [0,1] box when intersected). Upper bounds are lower
//! bounds of −q. Pre-activation boxes of ReLU / max-pool inputs and the logits are tightened this
//! way (IBP ∩ CROWN), also inside residual blocks: there the query is walked back through the
//! branch prefix, then through the network before the block (the two branches' linear forms add
//! at the join; proof: proofs/lipschitz_crown.md).
//!
//! Scale. The rows travel as a block (a row-major matrix) and each linear layer maps the whole
//! block at once ([`super::backsub`]: one GEMM for dense layers, the conv adjoint as a GEMM over
//! patches or a scatter of sparse rows). Blocks hold at most [`BLOCK_BYTES`] of f64 at the widest
//! layer on the path (two such buffers are live during a step), so memory per box is ≈ 128 MiB at
//! most whatever the width. A box is computed when its estimated work — 2·dim rows × the dense
//! multiply-adds of one row's walk, Σ over the path of out·in (dense), c_out·c_in·k²·h_o·w_o
//! (conv), and the width of every other node — is at most the budget (`max_work`, default
//! [`DEFAULT_MAX_WORK`]) and dim ≤ `max_dim`; the estimate ignores sparsity, so it is an upper
//! bound (rows of unit queries stay sparse through convolutions). Measured on the loaded 2-core
//! box: LeNet 28×28, every ReLU / max-pool input and the logits, ≈ 0.5 s per ball (the 1 600-wide
//! conv2 box, est. 1.2·10⁹, is most of it); ResNet-18 32×32: only the logits (est. 1.1·10¹⁰) fit
//! the default budget, the stem's box is the exact chain, every block box (est. 10¹²–10¹³) stays
//! IBP's; the local bound takes 7.6 s per sample (BENCHMARKS.md has the tables).
//! Skipped without loss: the input of a max-pool or ReLU that directly follows a ReLU whose input
//! box was tightened (CROWN through that ReLU cannot beat relu of its own box), and every box of
//! the affine chain before the first nonlinearity, which [`super::affine_ball`] bounds exactly
//! over the ℓ_p ball at any width.
//!
//! Rounding: with stored λ exact, the computed λ' = fl(Aᵀλ) satisfies |λ' − Aᵀλ| ≤ γ|A|ᵀ|λ|, so
//! λᵀA h ≥ λ'ᵀh − γ|λ|ᵀ(|A| M), M ≥ |h| on the node's input box; such terms are accumulated per
//! row as `slack` and subtracted at the end (also for constants and relaxation products).

use super::affine_ball::affine_chain_box;
use super::backsub::backsub;
use super::ibp::{Trace, ibp_node};
use super::interval::Interval;
use super::net::{LinearOp, Node, branch_dims};
use super::round::{ABS_FLOOR, dot_err, next_down};
use super::{Ball, max_pool, relu};
use crate::error::{Error, Result};

const U2: f64 = 2.0 * f64::EPSILON;

/// Default work budget of one CROWN box: estimated multiply-adds (see the module doc).
pub const DEFAULT_MAX_WORK: f64 = 2e10;

/// Bytes of one block of query rows at the widest layer on the path.
pub const BLOCK_BYTES: usize = 64 << 20;

/// Which boxes CROWN computes: those of dimension ≤ `max_dim` whose estimated work is ≤
/// `max_work` multiply-adds; `affine_chain` bounds the leading affine chain exactly over the ball
/// (on by default; off only for ablations: that chain's boxes then come from IBP or CROWN).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrownBudget {
    pub max_dim: usize,
    pub max_work: f64,
    pub affine_chain: bool,
    /// Adam steps of α-CROWN on the slopes, for the sign-uncertain entries of every ReLU input
    /// box on a flat path (0: plain CROWN; [`super::alpha_crown`]).
    pub alpha_iters: usize,
}

impl CrownBudget {
    /// A dimension cap with the default work budget.
    pub fn with_max_dim(max_dim: usize) -> CrownBudget {
        CrownBudget {
            max_dim,
            max_work: DEFAULT_MAX_WORK,
            affine_chain: true,
            alpha_iters: 0,
        }
    }

    /// No dimension cap, the default work budget.
    pub fn default_work() -> CrownBudget {
        CrownBudget::with_max_dim(usize::MAX)
    }

    fn allows(&self, dim: usize, path: &[(&[Node], &[Trace])]) -> bool {
        dim <= self.max_dim && 2.0 * dim as f64 * path_work(path) <= self.max_work
    }
}

/// Linear lower bounds λᵀh + c − slack of `n` query rows (λ row-major, `dim` wide), carried
/// backwards.
pub(crate) struct Rows {
    pub(crate) n: usize,
    pub(crate) dim: usize,
    pub(crate) lam: Vec<f64>,
    pub(crate) c: Vec<f64>,
    pub(crate) slack: Vec<f64>,
    /// Per node index of a flat path, the rows' own relaxation parameters (α-CROWN), row-major:
    /// a ReLU's lower slopes of its unstable entries (n × width), a max-pool's upper-plane mix θ
    /// per window (n × windows); empty or `None`: CROWN's choices (adaptive slope, θ = 1).
    pub(crate) slopes: Vec<Option<Vec<f64>>>,
    /// When `Some`, filled per node index with the rows' coefficients at that ReLU's or
    /// max-pool's output, before its relaxation (n × width): what α-CROWN's gradient needs.
    pub(crate) record: Option<Vec<Option<Vec<f64>>>>,
}

impl Rows {
    /// With `record` on, keeps the rows' coefficients at node `idx`'s output (before its
    /// relaxation).
    fn record_at(&mut self, idx: usize) {
        if let Some(rec) = self.record.as_mut() {
            rec.resize(rec.len().max(idx + 1), None);
            rec[idx] = Some(self.lam.clone());
        }
    }

    /// Row `r`'s certified lower bound once walked to the input, given `lin`, a certified lower
    /// bound of its λᵀx over the input set: lin + c − slack, rounded down.
    pub(crate) fn bound(&self, r: usize, lin: f64) -> f64 {
        let v = lin + self.c[r] - self.slack[r];
        next_down(v - U2 * (lin.abs() + self.c[r].abs() + self.slack[r]) - ABS_FLOOR)
    }

    pub(crate) fn new(n: usize, dim: usize, lam: Vec<f64>) -> Rows {
        Rows {
            n,
            dim,
            lam,
            c: vec![0.0; n],
            slack: vec![0.0; n],
            slopes: Vec::new(),
            record: None,
        }
    }

    fn check(&self, what: &str, want: usize) -> Result<()> {
        if self.dim != want || self.lam.len() != self.n * self.dim {
            return Err(Error::Internal(format!(
                "CROWN: {what} expects rows of length {want}, got {} ({} values, {} rows)",
                self.dim,
                self.lam.len(),
                self.n
            )));
        }
        Ok(())
    }
}

pub(crate) fn backward(nodes: &[Node], traces: &[Trace], rows: &mut Rows) -> Result<()> {
    if nodes.len() != traces.len() {
        return Err(Error::Internal(
            "CROWN: trace does not match the nodes".into(),
        ));
    }
    for (idx, (node, trace)) in nodes.iter().zip(traces).enumerate().rev() {
        let inp = trace.input();
        let m_in = inp.abs_max();
        match node {
            Node::Affine(a) => {
                let map = a.op.map();
                rows.check("affine node", map.out_dim())?;
                // λ' = Aᵀλ: each entry a sum of fan_out terms; |A|M itself is rounded (×2).
                let e = 2.0 * dot_err(map.fan_out().max(map.fan_in()));
                let am = map.apply(&m_in, true);
                for (r, lam) in rows.lam.chunks_exact(rows.dim.max(1)).enumerate() {
                    let s: f64 = lam.iter().zip(&am).map(|(l, m)| l.abs() * m).sum();
                    let mut slack = e * s;
                    if let Some(b) = &a.bias {
                        let (v, mag) = lam
                            .iter()
                            .zip(b)
                            .fold((0.0, 0.0), |(v, m), (l, b)| (v + l * b, m + (l * b).abs()));
                        slack += dot_err(lam.len()) * mag + U2 * (rows.c[r].abs() + v.abs());
                        rows.c[r] += v;
                    }
                    rows.slack[r] += slack + ABS_FLOOR;
                }
                rows.lam = backsub(&a.op, &rows.lam, rows.n)?;
                rows.dim = map.in_dim();
            }
            Node::Relu => {
                rows.check("ReLU", inp.len())?;
                let rel: Vec<(f64, f64, f64)> = (0..inp.len())
                    .map(|j| relu::relaxation(inp.lo[j], inp.hi[j]))
                    .collect();
                rows.record_at(idx);
                let own = rows.slopes.get(idx).and_then(|s| s.as_deref());
                let d = inp.len();
                for (r, lam) in rows.lam.chunks_exact_mut(rows.dim.max(1)).enumerate() {
                    let mut s = 0.0;
                    let alpha = own.map(|a| &a[r * d..(r + 1) * d]);
                    for (j, &(al, au, bu)) in rel.iter().enumerate() {
                        let l = lam[j];
                        let nl = if l >= 0.0 {
                            // Any lower slope in [0, 1] bounds an unstable ReLU from below.
                            match alpha {
                                Some(a)
                                    if relu::lower_slope_is_free(au)
                                        && (0.0..=1.0).contains(&a[j]) =>
                                {
                                    l * a[j]
                                }
                                _ => l * al,
                            }
                        } else {
                            rows.c[r] += l * bu;
                            s += (l * bu).abs();
                            l * au
                        };
                        s += nl.abs() * m_in[j];
                        lam[j] = nl;
                    }
                    rows.slack[r] +=
                        U2 * (inp.len() as f64 + 2.0) * (s + rows.c[r].abs()) + ABS_FLOOR;
                }
            }
            Node::MaxPool2 { .. } | Node::MaxPool { .. } => {
                let wins = node.pool_windows();
                rows.check("max-pool", wins.len())?;
                rows.record_at(idx);
                let relax = max_pool::window_relaxations(inp, &wins);
                let d_in = inp.len();
                // With overlapping windows an input entry sums several λ_k (rounded): the form
                // loses ≤ γ_cover Σ_k |λ_k| M at the entries it lands on.
                let cover = node.max_pool_geometry().map_or(1, |g| g.max_cover());
                let acc_err = if cover > 1 { 2.0 * dot_err(cover) } else { 0.0 };
                let own = rows.slopes.get(idx).and_then(|s| s.as_deref());
                let mut out = vec![0.0; rows.n * d_in];
                for (r, (lam, nl)) in rows
                    .lam
                    .chunks_exact(rows.dim.max(1))
                    .zip(out.chunks_exact_mut(d_in.max(1)))
                    .enumerate()
                {
                    let (mut s, mut landed) = (0.0, 0.0);
                    let thetas = own.map(|p| &p[r * wins.len()..(r + 1) * wins.len()]);
                    for (k, w) in relax.iter().enumerate() {
                        let l = lam[k];
                        if l >= 0.0 {
                            nl[w.best] += l; // max ≥ x_best
                            landed += l * m_in[w.best];
                        } else if w.cand.len() == 1 {
                            nl[w.cand[0]] += l; // max = x_cand on the whole box
                            landed -= l * m_in[w.cand[0]];
                        } else {
                            // max ≤ θ·(chord) + (1 − θ)·(facet) (max_pool::upper_line,
                            // upper_facet), θ ∈ [0, 1]: α-CROWN's own, CROWN: θ = 1.
                            let theta = thetas.map_or(1.0, |t| t[k]);
                            let theta = if (0.0..=1.0).contains(&theta) {
                                theta
                            } else {
                                1.0
                            };
                            let (m, a, b) = w.chord;
                            let (f, cf) = &w.facet;
                            if theta > 0.0 {
                                let la = l * theta * a;
                                if la != 0.0 {
                                    nl[m] += la;
                                    landed += la.abs() * m_in[m];
                                    s += la.abs() * m_in[m];
                                }
                            }
                            if theta < 1.0 {
                                for &(i, fi) in f {
                                    let lf = l * (1.0 - theta) * fi;
                                    nl[i] += lf;
                                    landed += lf.abs() * m_in[i];
                                    s += lf.abs() * m_in[i];
                                }
                            }
                            let cb = if theta == 1.0 {
                                l * b
                            } else if theta == 0.0 {
                                l * cf
                            } else {
                                l * (theta * b + (1.0 - theta) * cf)
                            };
                            rows.c[r] += cb;
                            s += (l * b).abs() + (l * cf).abs();
                        }
                    }
                    rows.slack[r] += U2 * (relax.len() as f64 + 8.0) * (s + rows.c[r].abs())
                        + acc_err * landed
                        + ABS_FLOOR;
                }
                rows.lam = out;
                rows.dim = d_in;
            }
            Node::Concat { branches } => {
                let tb = match trace {
                    Trace::Concat { branches, .. } if branches.len() == node_branches(node) => {
                        branches
                    }
                    _ => {
                        return Err(Error::Internal(
                            "CROWN: concatenation without its branch traces".into(),
                        ));
                    }
                };
                let d = inp.len();
                let dims = branch_dims(branches, d)?;
                rows.check("concatenation", dims.iter().sum())?;
                let n = rows.n;
                let mut lam = vec![0.0; n * d];
                let (mut mag, mut csum, mut cmag) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                let mut off = 0;
                for ((b, t), &db) in branches.iter().zip(tb).zip(&dims) {
                    let mut sub = Vec::with_capacity(n * db);
                    for r in 0..n {
                        let at = r * rows.dim + off;
                        sub.extend_from_slice(&rows.lam[at..at + db]);
                    }
                    let mut rb = Rows::new(n, db, sub);
                    backward(b, t, &mut rb)?;
                    rb.check("concatenation branch", d)?;
                    for r in 0..n {
                        let (dst, src) =
                            (&mut lam[r * d..(r + 1) * d], &rb.lam[r * d..(r + 1) * d]);
                        for j in 0..d {
                            mag[r] += src[j].abs() * m_in[j];
                            dst[j] += src[j];
                        }
                        csum[r] += rb.c[r];
                        cmag[r] += rb.c[r].abs();
                        rows.slack[r] += rb.slack[r];
                    }
                    off += db;
                }
                // The branch forms add at the fork (Σ_b λ_bᵀh = (Σ_b λ_b)ᵀh): each entry a sum
                // of nb terms, rounded (≤ γ_nb Σ_b |λ_b|ᵀM), the constants likewise.
                let e = 2.0 * dot_err(branches.len() + 1);
                for r in 0..n {
                    let add = csum[r];
                    rows.slack[r] +=
                        e * (mag[r] + cmag[r] + rows.c[r].abs() + add.abs()) + ABS_FLOOR;
                    rows.c[r] += add;
                }
                rows.lam = lam;
                rows.dim = d;
            }
            Node::Residual { main, shortcut } => {
                let (tm, ts) = match trace {
                    Trace::Residual { main, shortcut, .. } => (main, shortcut),
                    _ => {
                        return Err(Error::Internal(
                            "CROWN: residual node with a leaf trace".into(),
                        ));
                    }
                };
                let n = rows.n;
                let mut rm = Rows::new(n, rows.dim, rows.lam.clone());
                let mut rs = Rows::new(n, rows.dim, std::mem::take(&mut rows.lam));
                backward(main, tm, &mut rm)?;
                backward(shortcut, ts, &mut rs)?;
                rm.check("residual join (main)", inp.len())?;
                rs.check("residual join (shortcut)", inp.len())?;
                let d = inp.len();
                let mut lam = rm.lam;
                for r in 0..n {
                    let mut s = 0.0;
                    let (a, b) = (&mut lam[r * d..(r + 1) * d], &rs.lam[r * d..(r + 1) * d]);
                    for j in 0..d {
                        s += (a[j].abs() + b[j].abs()) * m_in[j];
                        a[j] += b[j];
                    }
                    let add = rm.c[r] + rs.c[r];
                    s += rows.c[r].abs() + rm.c[r].abs() + rs.c[r].abs() + add.abs();
                    rows.c[r] += add;
                    rows.slack[r] += rm.slack[r] + rs.slack[r] + U2 * s + ABS_FLOOR;
                }
                rows.lam = lam;
                rows.dim = d;
            }
        }
    }
    Ok(())
}

/// The number of branches of a concatenation (0 for other nodes).
fn node_branches(node: &Node) -> usize {
    match node {
        Node::Concat { branches } => branches.len(),
        _ => 0,
    }
}

/// Certified lower bounds of qᵀ(output of `nodes`) over the ball, one per query row; `traces`
/// are the nodes' input boxes (from IBP or [`crown_trace`]).
pub fn crown_lower(
    nodes: &[Node],
    traces: &[Trace],
    ball: &Ball,
    queries: Vec<Vec<f64>>,
) -> Result<Vec<f64>> {
    crown_lower_path(&[(nodes, traces)], ball, queries)
}

/// The CROWN box of the output of `nodes` (dimension `dim`), rows processed in blocks.
pub fn crown_box(nodes: &[Node], traces: &[Trace], ball: &Ball, dim: usize) -> Result<Interval> {
    crown_box_path(&[(nodes, traces)], ball, dim)
}

/// Certified lower bounds of qᵀy for y the output of the innermost slice of `path`: the rows are
/// walked back through each `(nodes, traces)` slice in turn (innermost first, each slice ending
/// where the next one's output feeds it: a residual branch, then the prefix before its block),
/// then concretised over the ball.
pub fn crown_lower_path(
    path: &[(&[Node], &[Trace])],
    ball: &Ball,
    queries: Vec<Vec<f64>>,
) -> Result<Vec<f64>> {
    let n = queries.len();
    let dim = queries.first().map_or(0, |q| q.len());
    if queries.iter().any(|q| q.len() != dim) {
        return Err(Error::Internal(
            "CROWN: query rows of different lengths".into(),
        ));
    }
    lower_rows(path, ball, Rows::new(n, dim, queries.concat()))
}

fn lower_rows(path: &[(&[Node], &[Trace])], ball: &Ball, rows: Rows) -> Result<Vec<f64>> {
    let bx = ball.unit_box.then(|| ball.to_box());
    lower_rows_over(path, ball, rows, &|lam| {
        ball.min_linear_in(lam, bx.as_ref())
    })
}

/// [`crown_lower`] concretised over the ball cut by halfspaces that hold on the set of interest
/// ([`super::ball_cuts`]): a lower bound of every point of the ball that satisfies the cuts.
pub fn crown_lower_cut(
    nodes: &[Node],
    traces: &[Trace],
    cut: &super::ball_cuts::CutBall,
    queries: Vec<Vec<f64>>,
) -> Result<Vec<f64>> {
    let n = queries.len();
    let dim = queries.first().map_or(0, |q| q.len());
    if queries.iter().any(|q| q.len() != dim) {
        return Err(Error::Internal(
            "CROWN: query rows of different lengths".into(),
        ));
    }
    let mut rows = Rows::new(n, dim, queries.concat());
    backward(nodes, traces, &mut rows)?;
    rows.check("the network input", cut.ball.center.len())?;
    let lin = cut.min_linear_many(&rows.lam, rows.n);
    Ok(lin
        .iter()
        .enumerate()
        .map(|(r, &v)| rows.bound(r, v))
        .collect())
}

/// The rows walked back along `path`, then concretised by `min_lin` (a certified lower bound of
/// λᵀx over the input set).
fn lower_rows_over(
    path: &[(&[Node], &[Trace])],
    ball: &Ball,
    mut rows: Rows,
    min_lin: &dyn Fn(&[f64]) -> f64,
) -> Result<Vec<f64>> {
    for (nodes, traces) in path {
        backward(nodes, traces, &mut rows)?;
    }
    rows.check("the network input", ball.center.len())?;
    Ok((0..rows.n)
        .map(|r| {
            let lam = &rows.lam[r * rows.dim..(r + 1) * rows.dim];
            rows.bound(r, min_lin(lam))
        })
        .collect())
}

/// The work the budget counts for the CROWN box of the output (dimension `dim`) of `nodes`:
/// 2·dim rows × the dense multiply-adds of one row's walk.
pub fn box_work(nodes: &[Node], traces: &[Trace], dim: usize) -> f64 {
    2.0 * dim as f64 * path_work(&[(nodes, traces)])
}

/// Rows per block for the CROWN box of the output (dimension `dim`) of `nodes`: the block of 2·k
/// rows at the widest node input fits in [`BLOCK_BYTES`].
pub fn block_units(nodes: &[Node], traces: &[Trace], dim: usize) -> usize {
    let width = path_width(&[(nodes, traces)]).max(dim).max(1);
    (BLOCK_BYTES / (16 * width)).clamp(1, dim.max(1))
}

/// Per query row, the dense multiply-adds of a walk back through `path` (see the module doc).
fn path_work(path: &[(&[Node], &[Trace])]) -> f64 {
    path.iter().map(|(n, t)| nodes_work(n, t)).sum()
}

fn nodes_work(nodes: &[Node], traces: &[Trace]) -> f64 {
    nodes
        .iter()
        .zip(traces)
        .map(|(node, trace)| match (node, trace) {
            (Node::Affine(a), _) => match &a.op {
                LinearOp::Dense(d) => (d.out * d.inp) as f64,
                LinearOp::Conv(c) => (c.c_out * c.c_in * c.kh * c.kw * c.ho * c.wo) as f64,
                LinearOp::Diag(_) | LinearOp::Pad(_) => a.op.map().in_dim() as f64,
                LinearOp::AvgPool(p) => (a.op.map().in_dim() * p.max_cover()) as f64,
            },
            (
                Node::Residual { main, shortcut },
                Trace::Residual {
                    input,
                    main: tm,
                    shortcut: ts,
                },
            ) => nodes_work(main, tm) + nodes_work(shortcut, ts) + input.len() as f64,
            (
                Node::Concat { branches },
                Trace::Concat {
                    input,
                    branches: tb,
                },
            ) => {
                branches
                    .iter()
                    .zip(tb)
                    .map(|(b, t)| nodes_work(b, t))
                    .sum::<f64>()
                    + (branches.len() * input.len()) as f64
            }
            _ => trace.input().len() as f64,
        })
        .sum()
}

/// The widest node input on `path` (the row length a block must hold).
fn path_width(path: &[(&[Node], &[Trace])]) -> usize {
    fn widest(traces: &[Trace]) -> usize {
        traces
            .iter()
            .map(|t| match t {
                Trace::Leaf(b) => b.len(),
                Trace::Residual {
                    input,
                    main,
                    shortcut,
                } => input.len().max(widest(main)).max(widest(shortcut)),
                Trace::Concat { input, branches } => branches
                    .iter()
                    .map(|b| widest(b))
                    .fold(input.len(), usize::max),
            })
            .max()
            .unwrap_or(0)
    }
    path.iter().map(|(_, t)| widest(t)).max().unwrap_or(0)
}

/// The CROWN box of the output (dimension `dim`) of the innermost slice of `path`.
fn crown_box_path(path: &[(&[Node], &[Trace])], ball: &Ball, dim: usize) -> Result<Interval> {
    let width = path_width(path).max(dim).max(1);
    let block = (BLOCK_BYTES / (16 * width)).clamp(1, dim.max(1));
    debug_assert!(path.len() > 1 || block == block_units(path[0].0, path[0].1, dim));
    let mut lo = Vec::with_capacity(dim);
    let mut hi = Vec::with_capacity(dim);
    for start in (0..dim).step_by(block) {
        let end = (start + block).min(dim);
        let k = end - start;
        let q = signed_unit_rows(start..end, dim);
        let b = lower_rows(path, ball, Rows::new(2 * k, dim, q))?;
        for i in 0..k {
            lo.push(b[2 * i]);
            hi.push(-b[2 * i + 1]);
        }
    }
    Ok(Interval { lo, hi })
}

/// The query rows e_j and −e_j (length `dim`) for each entry j, row-major: rows 2i and 2i + 1
/// bound the i-th entry from below and above.
fn signed_unit_rows(entries: impl ExactSizeIterator<Item = usize>, dim: usize) -> Vec<f64> {
    let mut q = vec![0.0; 2 * entries.len() * dim];
    for (i, j) in entries.enumerate() {
        q[2 * i * dim + j] = 1.0;
        q[(2 * i + 1) * dim + j] = -1.0;
    }
    q
}

/// IBP forward where the input box of every ReLU / max-pool (and the logits) of dimension
/// ≤ `max_dim` is intersected with its CROWN box, within the default work budget; see
/// [`crown_trace_with`].
pub fn crown_trace(nodes: &[Node], ball: &Ball, max_dim: usize) -> Result<(Vec<Trace>, Interval)> {
    crown_trace_with(nodes, ball, &CrownBudget::with_max_dim(max_dim))
}

/// IBP forward where the input box of every ReLU / max-pool and the logits is intersected with
/// its CROWN box when the budget allows — also inside residual blocks, where the query is walked
/// back through the branch prefix, then through the network before the block — and the boxes
/// after the leading affine chain with its exact ℓ_p-ball bounds ([`affine_chain_box`], any
/// width). Returns the traces and logit box.
pub fn crown_trace_with(
    nodes: &[Node],
    ball: &Ball,
    budget: &CrownBudget,
) -> Result<(Vec<Trace>, Interval)> {
    let (traces, mut cur) = trace_nodes(nodes, ball.to_box(), &[], ball, budget)?;
    let path: [(&[Node], &[Trace]); 1] = [(nodes, &traces)];
    let chain = if budget.affine_chain {
        affine_chain_box(nodes, ball)?
    } else {
        None
    };
    if let Some(b) = chain {
        cur = tighten(&cur, &b)?;
    } else if budget.allows(cur.len(), &path) {
        cur = tighten(&cur, &crown_box_path(&path, ball, cur.len())?)?;
    }
    Ok((traces, cur))
}

/// [`crown_trace_with`] for `nodes` fed by the box `input`, with `outer` the slices between
/// their input and the network input (innermost first; empty at top level).
fn trace_nodes(
    nodes: &[Node],
    input: Interval,
    outer: &[(&[Node], &[Trace])],
    ball: &Ball,
    budget: &CrownBudget,
) -> Result<(Vec<Trace>, Interval)> {
    let mut traces: Vec<Trace> = Vec::with_capacity(nodes.len());
    let mut cur = input;
    // Whether the previous node's input box was tightened (by CROWN or the affine chain).
    let mut prev_tight = false;
    for (i, node) in nodes.iter().enumerate() {
        let mut tight = false;
        if (matches!(node, Node::Relu) || node.is_max_pool()) && (i > 0 || !outer.is_empty()) {
            let chain = if outer.is_empty() && budget.affine_chain {
                affine_chain_box(&nodes[..i], ball)?
            } else {
                None
            };
            if let Some(b) = chain {
                cur = tighten(&cur, &b)?;
                tight = true;
            } else if i > 0 && prev_tight && matches!(nodes[i - 1], Node::Relu) {
                // relu of a tightened box is as tight as CROWN through that ReLU.
                tight = true;
            } else {
                let mut path: Vec<(&[Node], &[Trace])> = vec![(&nodes[..i], &traces[..])];
                path.extend_from_slice(outer);
                if budget.allows(cur.len(), &path) {
                    cur = tighten(&cur, &crown_box_path(&path, ball, cur.len())?)?;
                    tight = true;
                    if budget.alpha_iters > 0
                        && outer.is_empty()
                        && matches!(node, Node::Relu)
                        && super::alpha_crown::applies(&nodes[..i])
                    {
                        cur = alpha_tighten(&nodes[..i], &traces, ball, cur, budget.alpha_iters)?;
                    }
                }
            }
        }
        let (t, next) = match node {
            Node::Residual { main, shortcut } => {
                let mut path: Vec<(&[Node], &[Trace])> = vec![(&nodes[..i], &traces[..])];
                path.extend_from_slice(outer);
                let (tm, om) = trace_nodes(main, cur.clone(), &path, ball, budget)?;
                let (ts, os) = trace_nodes(shortcut, cur.clone(), &path, ball, budget)?;
                let out = om.add(&os)?;
                (
                    Trace::Residual {
                        input: cur,
                        main: tm,
                        shortcut: ts,
                    },
                    out,
                )
            }
            Node::Concat { branches } => {
                let mut path: Vec<(&[Node], &[Trace])> = vec![(&nodes[..i], &traces[..])];
                path.extend_from_slice(outer);
                let (mut tb, mut out) = (Vec::with_capacity(branches.len()), Interval::point(&[]));
                for b in branches {
                    let (t, o) = trace_nodes(b, cur.clone(), &path, ball, budget)?;
                    tb.push(t);
                    out.lo.extend(o.lo);
                    out.hi.extend(o.hi);
                }
                (
                    Trace::Concat {
                        input: cur,
                        branches: tb,
                    },
                    out,
                )
            }
            _ => ibp_node(node, cur)?,
        };
        traces.push(t);
        cur = next;
        prev_tight = tight;
    }
    Ok((traces, cur))
}

/// `cur` (the box of the output of the flat path `nodes`) with the bounds of its sign-uncertain
/// entries raised by α-CROWN: lower bounds of z_j and of −z_j, in blocks of rows.
fn alpha_tighten(
    nodes: &[Node],
    traces: &[Trace],
    ball: &Ball,
    cur: Interval,
    iters: usize,
) -> Result<Interval> {
    let dim = cur.len();
    let open: Vec<usize> = (0..dim)
        .filter(|&j| cur.lo[j] < 0.0 && cur.hi[j] > 0.0)
        .collect();
    if open.is_empty() {
        return Ok(cur);
    }
    let block = (block_units(nodes, traces, dim) / 4).max(1);
    let mut better = cur.clone();
    for part in open.chunks(block) {
        let q = signed_unit_rows(part.iter().copied(), dim);
        let b = super::alpha_crown::alpha_lower(nodes, traces, ball, &q, 2 * part.len(), iters)?;
        for (i, &j) in part.iter().enumerate() {
            better.lo[j] = b[2 * i];
            better.hi[j] = -b[2 * i + 1];
        }
    }
    tighten(&cur, &better)
}

/// The intersection of two enclosures of the same set; an empty or NaN entry is an error (a
/// bound is unsound).
pub fn tighten(a: &Interval, b: &Interval) -> Result<Interval> {
    let t = a.intersect(b);
    if let Some(j) =
        (0..t.len()).find(|&j| t.lo[j] > t.hi[j] || t.lo[j].is_nan() || t.hi[j].is_nan())
    {
        return Err(Error::Internal(format!(
            "IBP and CROWN boxes are disjoint at entry {j} ([{}, {}] vs [{}, {}]): a bound is unsound",
            a.lo[j], a.hi[j], b.lo[j], b.hi[j]
        )));
    }
    Ok(t)
}
