//! Interval bound propagation (Gowal et al. 2018) through a [`Node`] list, keeping the input box
//! of every node: FastLip and CROWN read the pre-activation boxes from this trace.

use super::interval::Interval;
use super::linear_map::affine_image;
use super::net::{Node, out_dim};
use super::{max_pool, relu};
use crate::error::Result;

/// The box at the input of one node (and, for a residual block, of its inner nodes).
#[derive(Debug, Clone)]
pub enum Trace {
    Leaf(Interval),
    Residual {
        input: Interval,
        main: Vec<Trace>,
        shortcut: Vec<Trace>,
    },
    /// A concatenation: its input box and each branch's traces.
    Concat {
        input: Interval,
        branches: Vec<Vec<Trace>>,
    },
}

impl Trace {
    /// The box at this node's input.
    pub fn input(&self) -> &Interval {
        match self {
            Trace::Leaf(b) => b,
            Trace::Residual { input, .. } | Trace::Concat { input, .. } => input,
        }
    }
}

/// One IBP step: the trace of `node` (its input box) and its output box.
pub fn ibp_node(node: &Node, cur: Interval) -> Result<(Trace, Interval)> {
    Ok(match node {
        Node::Affine(a) => {
            let out = affine_image(a.op.map(), a.bias.as_deref(), &cur)?;
            (Trace::Leaf(cur), out)
        }
        Node::Relu => {
            let out = relu::ibp(&cur);
            (Trace::Leaf(cur), out)
        }
        Node::MaxPool2 { .. } | Node::MaxPool { .. } => {
            out_dim(std::slice::from_ref(node), cur.len())?;
            let out = max_pool::ibp(&cur, &node.pool_windows());
            (Trace::Leaf(cur), out)
        }
        Node::Concat { branches } => {
            let (mut traces, mut out) = (Vec::with_capacity(branches.len()), Interval::point(&[]));
            for b in branches {
                let (t, o) = ibp(b, cur.clone())?;
                traces.push(t);
                out.lo.extend(o.lo);
                out.hi.extend(o.hi);
            }
            (
                Trace::Concat {
                    input: cur,
                    branches: traces,
                },
                out,
            )
        }
        Node::Residual { main, shortcut } => {
            let (tm, om) = ibp(main, cur.clone())?;
            let (ts, os) = ibp(shortcut, cur.clone())?;
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
    })
}

/// Propagates `input` through `nodes`: returns each node's input box and the output box.
pub fn ibp(nodes: &[Node], input: Interval) -> Result<(Vec<Trace>, Interval)> {
    let mut traces = Vec::with_capacity(nodes.len());
    let mut cur = input;
    for node in nodes {
        let (t, next) = ibp_node(node, cur)?;
        traces.push(t);
        cur = next;
    }
    Ok((traces, cur))
}
