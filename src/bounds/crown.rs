//! CROWN (Zhang et al. 2018): backward linear relaxation. A query row q at some node's output is
//! carried backwards as a linear lower bound qᵀy ≥ λᵀh + c over every earlier node h, using each
//! ReLU's and max-pool's relaxation on its (IBP or CROWN) pre-activation box, then concretised
//! over the ball (ℓ_p dual norm, and the [0,1] box when intersected). Upper bounds are lower
//! bounds of −q. Pre-activation boxes of ReLU / max-pool inputs are tightened this way (IBP ∩
//! CROWN) when their dimension is small enough, also inside residual blocks: there the query is
//! walked back through the branch prefix, then through the network before the block (the two
//! branches' linear forms add at the join; proof: proofs/lipschitz_crown.md).
//!
//! Rounding: with stored λ exact, the computed λ' = fl(Aᵀλ) satisfies |λ' − Aᵀλ| ≤ γ|A|ᵀ|λ|, so
//! λᵀA h ≥ λ'ᵀh − γ|λ|ᵀ(|A| M), M ≥ |h| on the node's input box; such terms are accumulated per
//! row as `slack` and subtracted at the end (also for constants and relaxation products).

use super::ibp::{Trace, ibp_node};
use super::interval::Interval;
use super::net::{Node, pool_windows};
use super::round::{ABS_FLOOR, dot_err, next_down};
use super::{Ball, max_pool, relu};
use crate::error::{Error, Result};

const U2: f64 = 2.0 * f64::EPSILON;

/// Linear lower bounds λᵀh + c − slack of query rows, carried backwards.
struct Rows {
    lam: Vec<Vec<f64>>,
    c: Vec<f64>,
    slack: Vec<f64>,
}

fn backward(nodes: &[Node], traces: &[Trace], rows: &mut Rows) -> Result<()> {
    if nodes.len() != traces.len() {
        return Err(Error::Internal(
            "CROWN: trace does not match the nodes".into(),
        ));
    }
    for (node, trace) in nodes.iter().zip(traces).rev() {
        let inp = trace.input();
        let m_in = inp.abs_max();
        match node {
            Node::Affine(a) => {
                let map = a.op.map();
                // λ' = Aᵀλ: each entry a sum of fan_out terms; |A|M itself is rounded (×2).
                let e = 2.0 * dot_err(map.fan_out().max(map.fan_in()));
                let am = map.apply(&m_in, true);
                for r in 0..rows.lam.len() {
                    let lam = &rows.lam[r];
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
                    rows.lam[r] = map.apply_t(lam, false);
                }
            }
            Node::Relu => {
                let rel: Vec<(f64, f64, f64)> = (0..inp.len())
                    .map(|j| relu::relaxation(inp.lo[j], inp.hi[j]))
                    .collect();
                for r in 0..rows.lam.len() {
                    let mut s = 0.0;
                    for (j, &(al, au, bu)) in rel.iter().enumerate() {
                        let l = rows.lam[r][j];
                        let nl = if l >= 0.0 {
                            l * al
                        } else {
                            rows.c[r] += l * bu;
                            s += (l * bu).abs();
                            l * au
                        };
                        s += nl.abs() * m_in[j];
                        rows.lam[r][j] = nl;
                    }
                    rows.slack[r] +=
                        U2 * (inp.len() as f64 + 2.0) * (s + rows.c[r].abs()) + ABS_FLOOR;
                }
            }
            Node::MaxPool2 { c, h, w } => {
                let wins = pool_windows(*c, *h, *w);
                let info: Vec<(usize, Vec<usize>, f64)> = wins
                    .iter()
                    .map(|win| {
                        let best = *win
                            .iter()
                            .max_by(|&&a, &&b| inp.lo[a].total_cmp(&inp.lo[b]))
                            .unwrap_or(&win[0]);
                        let hi = win
                            .iter()
                            .map(|&i| inp.hi[i])
                            .fold(f64::NEG_INFINITY, f64::max);
                        (best, max_pool::candidates(inp, win), hi)
                    })
                    .collect();
                for r in 0..rows.lam.len() {
                    let mut nl = vec![0.0; inp.len()];
                    let mut s = 0.0;
                    for (k, (best, cand, hi)) in info.iter().enumerate() {
                        let l = rows.lam[r][k];
                        if l >= 0.0 {
                            nl[*best] += l; // max ≥ x_best
                        } else if cand.len() == 1 {
                            nl[cand[0]] += l; // max = x_cand on the whole box
                        } else {
                            rows.c[r] += l * hi; // max ≤ max hi
                            s += (l * hi).abs();
                        }
                    }
                    rows.slack[r] +=
                        U2 * (info.len() as f64 + 2.0) * (s + rows.c[r].abs()) + ABS_FLOOR;
                    rows.lam[r] = nl;
                }
            }
            Node::Residual { main, shortcut } => {
                let (tm, ts) = match trace {
                    Trace::Residual { main, shortcut, .. } => (main, shortcut),
                    Trace::Leaf(_) => {
                        return Err(Error::Internal(
                            "CROWN: residual node with a leaf trace".into(),
                        ));
                    }
                };
                let n = rows.lam.len();
                let mut rm = Rows {
                    lam: rows.lam.clone(),
                    c: vec![0.0; n],
                    slack: vec![0.0; n],
                };
                let mut rs = Rows {
                    lam: std::mem::take(&mut rows.lam),
                    c: vec![0.0; n],
                    slack: vec![0.0; n],
                };
                backward(main, tm, &mut rm)?;
                backward(shortcut, ts, &mut rs)?;
                let mut lam = Vec::with_capacity(n);
                for r in 0..n {
                    let mut s = 0.0;
                    let row: Vec<f64> = rm.lam[r]
                        .iter()
                        .zip(&rs.lam[r])
                        .enumerate()
                        .map(|(j, (a, b))| {
                            s += (a.abs() + b.abs()) * m_in[j];
                            a + b
                        })
                        .collect();
                    lam.push(row);
                    let add = rm.c[r] + rs.c[r];
                    s += rows.c[r].abs() + rm.c[r].abs() + rs.c[r].abs() + add.abs();
                    rows.c[r] += add;
                    rows.slack[r] += rm.slack[r] + rs.slack[r] + U2 * s + ABS_FLOOR;
                }
                rows.lam = lam;
            }
        }
    }
    Ok(())
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

/// The CROWN box of the output of `nodes` (dimension `dim`), rows processed in chunks.
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
    let mut rows = Rows {
        lam: queries,
        c: vec![0.0; n],
        slack: vec![0.0; n],
    };
    for (nodes, traces) in path {
        backward(nodes, traces, &mut rows)?;
    }
    Ok((0..n)
        .map(|r| {
            let lin = ball.min_linear(&rows.lam[r]);
            let v = lin + rows.c[r] - rows.slack[r];
            next_down(v - U2 * (lin.abs() + rows.c[r].abs() + rows.slack[r]) - ABS_FLOOR)
        })
        .collect())
}

/// The CROWN box of the output (dimension `dim`) of the innermost slice of `path`.
fn crown_box_path(path: &[(&[Node], &[Trace])], ball: &Ball, dim: usize) -> Result<Interval> {
    const CHUNK: usize = 128;
    let mut lo = Vec::with_capacity(dim);
    let mut hi = Vec::with_capacity(dim);
    for start in (0..dim).step_by(CHUNK) {
        let end = (start + CHUNK).min(dim);
        let mut q = Vec::with_capacity(2 * (end - start));
        for j in start..end {
            let mut e = vec![0.0; dim];
            e[j] = 1.0;
            q.push(e.clone());
            e[j] = -1.0;
            q.push(e);
        }
        let b = crown_lower_path(path, ball, q)?;
        for k in 0..end - start {
            lo.push(b[2 * k]);
            hi.push(-b[2 * k + 1]);
        }
    }
    Ok(Interval { lo, hi })
}

/// IBP forward where the input box of every ReLU / max-pool (and the logits) of dimension
/// ≤ `max_dim` is intersected with its CROWN box — also inside residual blocks, where the
/// query is walked back through the branch prefix, then through the network before the block.
/// Returns the traces and logit box.
pub fn crown_trace(nodes: &[Node], ball: &Ball, max_dim: usize) -> Result<(Vec<Trace>, Interval)> {
    let (traces, mut cur) = trace_nodes(nodes, ball.to_box(), &[], ball, max_dim)?;
    if cur.len() <= max_dim {
        cur = tighten(&cur, &crown_box_path(&[(nodes, &traces)], ball, cur.len())?)?;
    }
    Ok((traces, cur))
}

/// [`crown_trace`] for `nodes` fed by the box `input`, with `outer` the slices between their
/// input and the network input (innermost first; empty at top level).
fn trace_nodes(
    nodes: &[Node],
    input: Interval,
    outer: &[(&[Node], &[Trace])],
    ball: &Ball,
    max_dim: usize,
) -> Result<(Vec<Trace>, Interval)> {
    let mut traces: Vec<Trace> = Vec::with_capacity(nodes.len());
    let mut cur = input;
    for (i, node) in nodes.iter().enumerate() {
        if matches!(node, Node::Relu | Node::MaxPool2 { .. })
            && (i > 0 || !outer.is_empty())
            && cur.len() <= max_dim
        {
            let mut path: Vec<(&[Node], &[Trace])> = vec![(&nodes[..i], &traces[..])];
            path.extend_from_slice(outer);
            cur = tighten(&cur, &crown_box_path(&path, ball, cur.len())?)?;
        }
        let (t, next) = match node {
            Node::Residual { main, shortcut } => {
                let mut path: Vec<(&[Node], &[Trace])> = vec![(&nodes[..i], &traces[..])];
                path.extend_from_slice(outer);
                let (tm, om) = trace_nodes(main, cur.clone(), &path, ball, max_dim)?;
                let (ts, os) = trace_nodes(shortcut, cur.clone(), &path, ball, max_dim)?;
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
            _ => ibp_node(node, cur)?,
        };
        traces.push(t);
        cur = next;
    }
    Ok((traces, cur))
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
