//! The graph as a series-parallel tree (Valdes, Tarjan & Lawler 1982): a sequence of layers in
//! which a tensor read by several nodes opens parallel branches that must all end in one joining
//! node, an `Add` of two (a residual block) or a channel `Concat` (a concat block); a branch
//! that is the forked tensor itself is the identity. Any other DAG is refused, naming the node.

use super::graph::{OnnxGraph, Shape, label};
use crate::error::{Error, Result};
use crate::model::arch::GraphLayer;

/// Where a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// At the graph output.
    Output,
    /// At input `slot` of the joining node `node`.
    Join { node: usize, slot: usize },
}

impl OnnxGraph<'_> {
    /// Whether node `i` joins branches: an `Add` or `Concat` with two or more computed inputs.
    fn is_join(&self, i: usize) -> bool {
        let op = self.nodes[i].op_type.as_deref();
        matches!(op, Some("Add" | "Concat")) && self.dynamic_slots(i).len() >= 2
    }

    /// The layers from tensor `t` (shape `shape`) to the graph output.
    pub fn layers_to_output(&mut self, t: &str, shape: Shape) -> Result<(Vec<GraphLayer>, Shape)> {
        let mut layers = Vec::new();
        let (stop, shape) = self.sequence(t.to_string(), shape, &mut layers)?;
        match stop {
            Stop::Output => Ok((layers, shape)),
            Stop::Join { node, .. } => Err(Error::BadInput(format!(
                "{}: joins a tensor that was not forked from a common input; only \
                 series-parallel graphs (residual Add, channel Concat) are supported",
                label(self.nodes, node)
            ))),
        }
    }

    /// Appends the layers from tensor `t` until the graph output or a join it does not own.
    fn sequence(
        &mut self,
        mut t: String,
        mut shape: Shape,
        layers: &mut Vec<GraphLayer>,
    ) -> Result<(Stop, Shape)> {
        loop {
            let uses = self.uses(&t).to_vec();
            let is_output = self.resolve(&t) == self.resolve(&self.output);
            if is_output {
                if !uses.is_empty() {
                    return Err(Error::BadInput(format!(
                        "the graph output `{t}` is also read by {}; only the output of the \
                         last layer may be the output",
                        label(self.nodes, uses[0].0)
                    )));
                }
                return Ok((Stop::Output, shape));
            }
            match uses[..] {
                [] => {
                    return Err(Error::BadInput(format!(
                        "tensor `{t}` is computed but neither used nor the graph output"
                    )));
                }
                [(node, slot)] if self.is_join(node) => {
                    return Ok((Stop::Join { node, slot }, shape));
                }
                [(node, _)] => {
                    let c = self.convert(node, shape)?;
                    layers.extend(c.layers);
                    (t, shape) = (c.output, c.shape);
                }
                _ => {
                    let (layer, out, s) = self.fork(&t, shape, &uses)?;
                    layers.push(layer);
                    (t, shape) = (out, s);
                }
            }
        }
    }

    /// Parses the branches read from `t` to their common join and returns the block, the join's
    /// output tensor and its shape.
    fn fork(
        &mut self,
        t: &str,
        shape: Shape,
        uses: &[(usize, usize)],
    ) -> Result<(GraphLayer, String, Shape)> {
        let mut branches: Vec<(usize, usize, Vec<GraphLayer>, Shape)> = Vec::new();
        for &(node, slot) in uses {
            if self.is_join(node) {
                branches.push((node, slot, Vec::new(), shape));
                continue;
            }
            let c = self.convert(node, shape)?;
            let mut layers = c.layers;
            let (stop, s) = self.sequence(c.output, c.shape, &mut layers)?;
            match stop {
                Stop::Join { node: j, slot } => branches.push((j, slot, layers, s)),
                Stop::Output => {
                    return Err(Error::BadInput(format!(
                        "tensor `{t}` opens branches that do not join again before the output \
                         (the branch through {} reaches it alone); only series-parallel graphs \
                         are supported",
                        label(self.nodes, node)
                    )));
                }
            }
        }
        let join = branches[0].0;
        if let Some(b) = branches.iter().find(|b| b.0 != join) {
            return Err(Error::BadInput(format!(
                "branches from tensor `{t}` end in different nodes ({} and {}); only \
                 series-parallel graphs in which all branches of a fork join in one Add or \
                 Concat are supported",
                label(self.nodes, join),
                label(self.nodes, b.0)
            )));
        }
        let lab = label(self.nodes, join);
        let dyn_slots = self.dynamic_slots(join);
        let mut slots: Vec<usize> = branches.iter().map(|b| b.1).collect();
        slots.sort_unstable();
        if slots != dyn_slots {
            return Err(Error::BadInput(format!(
                "{lab}: joins tensors from different forks; only series-parallel graphs are \
                 supported"
            )));
        }
        branches.sort_by_key(|b| b.1);
        self.done[join] = true;
        let out = self.nodes[join].output[0].clone();
        let op = self.nodes[join].op_type.clone().unwrap_or_default();
        if op == "Add" {
            super::constants::Attrs::new(&self.nodes[join], &lab, &[])?;
            if branches.len() != 2 || branches[0].3 != branches[1].3 {
                return Err(Error::BadInput(format!(
                    "{lab}: a residual Add needs two inputs of the same shape (got {:?})",
                    branches.iter().map(|b| b.3).collect::<Vec<_>>()
                )));
            }
            let s = branches[0].3;
            let mut it = branches.into_iter().map(|b| b.2);
            let (a, b) = (it.next().unwrap_or_default(), it.next().unwrap_or_default());
            if a.is_empty() && b.is_empty() {
                return Err(Error::BadInput(format!(
                    "{lab}: x + x (both inputs the same tensor) is not supported"
                )));
            }
            // The identity, if any, is the shortcut.
            let (main, shortcut) = if a.is_empty() { (b, a) } else { (a, b) };
            return Ok((GraphLayer::Residual { main, shortcut }, out, s));
        }
        // Concat along channels.
        let a = super::constants::Attrs::new(&self.nodes[join], &lab, &["axis"])?;
        let axis = a.int("axis", 1);
        let shapes: Vec<Shape> = branches.iter().map(|b| b.3).collect();
        let s = match shapes[0] {
            Shape::Map([_, h, w]) if matches!(axis, 1 | -3) => {
                let mut c = 0;
                for s in &shapes {
                    match s {
                        Shape::Map([ci, hi, wi]) if (*hi, *wi) == (h, w) => c += ci,
                        _ => {
                            return Err(Error::BadInput(format!(
                                "{lab}: inputs of shapes {shapes:?} cannot be concatenated \
                                 along channels"
                            )));
                        }
                    }
                }
                Shape::Map([c, h, w])
            }
            Shape::Flat(_) if matches!(axis, 1 | -1) => {
                let mut d = 0;
                for s in &shapes {
                    match s {
                        Shape::Flat(di) => d += di,
                        Shape::Map(_) => {
                            return Err(Error::BadInput(format!(
                                "{lab}: cannot concatenate inputs of shapes {shapes:?}"
                            )));
                        }
                    }
                }
                Shape::Flat(d)
            }
            _ => {
                return Err(Error::BadInput(format!(
                    "{lab}: Concat along axis {axis} is not supported (channels, axis 1)"
                )));
            }
        };
        let branches = branches.into_iter().map(|b| b.2).collect();
        Ok((GraphLayer::Concat { branches }, out, s))
    }
}
