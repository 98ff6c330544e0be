//! Exact point evaluation for the diagnostic examples (Affine, ReLU and max-pool nodes): every
//! node's input at a point, and the gradient of a linear function of a node's input there.
//! Included by `#[path]` from examples/preactivation_boxes.rs and examples/relu_layer_slack.rs.

use oodcert::bounds::net::{Net, Node, forward_nodes};
use oodcert::data::Dataset;
use oodcert::error::{Error, Result};
use oodcert::model::{Classifier, Model};

/// The energy model at `path` in f64 as a [`Net`], refused unless it has only Affine, ReLU and
/// max-pool nodes, and the images of `data` (from `OODCERT_DATA`) at its input shape, as rows
/// of f64 (with the row length).
pub fn load(path: &str, data: &str) -> Result<(Net, Vec<Vec<f64>>)> {
    let model = Model::load_energy_of_as(
        path,
        &candle_core::Device::Cpu,
        oodcert::score::ScoreKind::Energy,
        "--score",
        candle_core::DType::F64,
    )?;
    let net = Net::from_model(&model)?;
    if net
        .nodes
        .iter()
        .any(|n| !matches!(n, Node::Affine(_) | Node::Relu) && !n.is_max_pool())
    {
        return Err(Error::BadInput(
            "this diagnostic handles Affine, ReLU and max-pool nodes only (no residual or concatenation blocks)".into(),
        ));
    }
    let shape = model.spec().input_shape;
    let ds: Dataset = oodcert::data::load_as(data, &oodcert::data::default_data_dir(), shape)?;
    let d: usize = shape.iter().product();
    let images = ds
        .images
        .chunks_exact(d.max(1))
        .map(|im| im.iter().map(|&v| f64::from(v)).collect())
        .collect();
    Ok((net, images))
}

/// Inputs of every node (and the output, last) at x.
pub fn forward_trace(nodes: &[Node], x: &[f64]) -> Result<Vec<Vec<f64>>> {
    let mut acts = vec![x.to_vec()];
    for n in nodes {
        let next = forward_nodes(
            std::slice::from_ref(n),
            acts.last().cloned().unwrap_or_default(),
        )?;
        acts.push(next);
    }
    Ok(acts)
}

/// The input of window `w` that a max-pool selects at `z` (ties to the last).
pub fn argmax(z: &[f64], w: &[usize]) -> usize {
    w.iter()
        .copied()
        .max_by(|&a, &b| z[a].total_cmp(&z[b]))
        .unwrap_or(0)
}

/// ∂(g · input of node t)/∂x at the point whose trace is `acts`.
pub fn backprop(nodes: &[Node], acts: &[Vec<f64>], t: usize, mut g: Vec<f64>) -> Vec<f64> {
    for k in (0..t).rev() {
        g = match &nodes[k] {
            Node::Affine(a) => a.op.map().apply_t(&g, false),
            Node::Relu => g
                .iter()
                .zip(&acts[k])
                .map(|(gi, z)| if *z > 0.0 { *gi } else { 0.0 })
                .collect(),
            n if n.is_max_pool() => {
                let mut back = vec![0.0; acts[k].len()];
                for (o, w) in n.pool_windows().iter().enumerate() {
                    back[argmax(&acts[k], w)] += g[o];
                }
                back
            }
            _ => unreachable!("the examples refuse other nodes"),
        };
    }
    g
}
