//! An ONNX graph prepared for import: constants resolved (initializers, `Constant`), pass-through
//! nodes (`Identity`, inference `Dropout`) replaced by aliases, and for every computed tensor the
//! nodes that read it. Collects the weights of the layers it emits.

use super::constants::{Const, constant_value, read_tensor};
use super::proto::{GraphProto, NodeProto};
use crate::error::{Error, Result};
use candle_core::Tensor;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The operators `oodcert import --onnx` reads, for error messages.
pub const SUPPORTED_OPS: &str = "Conv (groups 1, dilation 1), Gemm, MatMul (+ Add bias), \
    BatchNormalization (inference), Relu, MaxPool, AveragePool, GlobalAveragePool, Add \
    (residual), Concat (channels), Flatten, Reshape (to (N, -1)), Identity, Constant, Dropout, \
    Pad (zeros), and Sub/Div/Mul/Add by per-channel constants at the input (normalisation)";

/// Activation shape of one sample: a `(c, h, w)` map or a flat vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Map([usize; 3]),
    Flat(usize),
}

impl Shape {
    /// Number of entries.
    pub fn numel(&self) -> usize {
        match self {
            Shape::Map(s) => s.iter().product(),
            Shape::Flat(d) => *d,
        }
    }
}

/// The graph with its constants, aliases and uses.
pub struct OnnxGraph<'a> {
    pub nodes: &'a [NodeProto],
    consts: HashMap<String, Const>,
    alias: HashMap<String, String>,
    /// For each computed tensor, the `(node, input slot)` pairs that read it.
    consumers: HashMap<String, Vec<(usize, usize)>>,
    /// Nodes turned into layers, folded into a neighbour, or resolved as constants/aliases.
    pub done: Vec<bool>,
    pub output: String,
    /// The emitted weights, by our parameter name.
    pub tensors: HashMap<String, Tensor>,
    counters: BTreeMap<&'static str, usize>,
}

/// `node `NAME` (OP)`, or the node's position when it has no name.
pub fn label(nodes: &[NodeProto], i: usize) -> String {
    let n = &nodes[i];
    let op = n.op_type.as_deref().unwrap_or("?");
    match n.name.as_deref().filter(|s| !s.is_empty()) {
        Some(name) => format!("node `{name}` ({op})"),
        None => format!("node #{i} ({op})"),
    }
}

impl<'a> OnnxGraph<'a> {
    /// Reads initializers and `Constant` nodes, resolves `Identity`/`Dropout`, indexes uses.
    pub fn new(g: &'a GraphProto) -> Result<Self> {
        let nodes = &g.node[..];
        let mut consts = HashMap::new();
        for t in &g.initializer {
            let name = t.name.clone().unwrap_or_default();
            consts.insert(name, read_tensor(t)?);
        }
        let mut alias: HashMap<String, String> = HashMap::new();
        let mut done = vec![false; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            let op = n.op_type.as_deref().unwrap_or("");
            let dom = n.domain.as_deref().unwrap_or("");
            if !(dom.is_empty() || dom == "ai.onnx") {
                return Err(Error::BadInput(format!(
                    "{}: operator domain `{dom}` is not supported (supported: the default ONNX \
                     domain: {SUPPORTED_OPS})",
                    label(nodes, i)
                )));
            }
            match op {
                "Constant" => {
                    let c = constant_value(n, &label(nodes, i))?;
                    if let Some(out) = n.output.first() {
                        consts.insert(out.clone(), c);
                    }
                    done[i] = true;
                }
                "Identity" | "Dropout" => {
                    let lab = label(nodes, i);
                    if op == "Dropout" {
                        super::constants::Attrs::new(n, &lab, &["ratio", "seed", "is_test"])?;
                        if let Some(t) = n.input.get(2).filter(|s| !s.is_empty()) {
                            return Err(Error::BadInput(format!(
                                "{lab}: a Dropout with a training_mode input (`{t}`) is not \
                                 supported; export the model in eval mode (model.eval())"
                            )));
                        }
                    }
                    let (Some(inp), Some(out)) = (n.input.first(), n.output.first()) else {
                        return Err(Error::BadInput(format!(
                            "{lab}: needs one input and output"
                        )));
                    };
                    alias.insert(out.clone(), inp.clone());
                    done[i] = true;
                }
                _ => {}
            }
        }
        let mut me = Self {
            nodes,
            consts,
            alias,
            consumers: HashMap::new(),
            done,
            output: String::new(),
            tensors: HashMap::new(),
            counters: BTreeMap::new(),
        };
        // Constants reached through aliases are constants too.
        let aliased: Vec<(String, String)> = me
            .alias
            .keys()
            .map(|k| (k.clone(), me.resolve(k)))
            .collect();
        for (k, target) in aliased {
            if let Some(c) = me.consts.get(&target).cloned() {
                me.consts.insert(k, c);
            }
        }
        let mut consumers: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            if me.done[i] {
                continue;
            }
            for (slot, name) in n.input.iter().enumerate() {
                if name.is_empty() || me.is_const(name) {
                    continue;
                }
                consumers
                    .entry(me.resolve(name))
                    .or_default()
                    .push((i, slot));
            }
        }
        me.consumers = consumers;
        Ok(me)
    }

    /// The tensor `name` stands for after `Identity`/`Dropout` aliases.
    pub fn resolve(&self, name: &str) -> String {
        let mut cur = name;
        let mut seen = HashSet::new();
        while let Some(next) = self.alias.get(cur) {
            if !seen.insert(cur) {
                break;
            }
            cur = next;
        }
        cur.to_string()
    }

    /// Whether `name` is a constant (initializer, `Constant` output, or an alias of one).
    pub fn is_const(&self, name: &str) -> bool {
        self.consts.contains_key(name) || self.consts.contains_key(&self.resolve(name))
    }

    /// The constant `name`, if it is one.
    pub fn constant(&self, name: &str) -> Option<&Const> {
        self.consts
            .get(name)
            .or_else(|| self.consts.get(&self.resolve(name)))
    }

    /// The `(node, slot)` pairs reading the computed tensor `name`.
    pub fn uses(&self, name: &str) -> &[(usize, usize)] {
        self.consumers
            .get(&self.resolve(name))
            .map(|v| &v[..])
            .unwrap_or(&[])
    }

    /// The input slots of node `i` that carry computed (non-constant) tensors.
    pub fn dynamic_slots(&self, i: usize) -> Vec<usize> {
        self.nodes[i]
            .input
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_empty() && !self.is_const(n))
            .map(|(s, _)| s)
            .collect()
    }

    /// A fresh layer name `{kind}{k}`.
    pub fn fresh_name(&mut self, kind: &'static str) -> String {
        let k = self.counters.entry(kind).or_insert(0);
        *k += 1;
        format!("{kind}{k}")
    }

    /// Records a weight tensor (f32, on the CPU) under our parameter name.
    pub fn put(&mut self, name: String, dims: &[usize], values: Vec<f32>) -> Result<()> {
        let t = Tensor::from_vec(values, dims, &candle_core::Device::Cpu)?;
        self.tensors.insert(name, t);
        Ok(())
    }
}
