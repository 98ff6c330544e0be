//! ∇ₓS(x) = −J_f(x)ᵀ softmax(f(x)/T) at one point, in host f64 (theory.md §2): the empirical
//! side of the branch and bound (gradient norms attained at points of the ball).

use crate::bounds::net::{Net, Node};
use crate::error::Result;

/// The input of every node on the way forward (a residual block or concatenation keeps its
/// branches' inputs).
enum Seen {
    Leaf(Vec<f64>),
    Residual {
        main: Vec<Seen>,
        shortcut: Vec<Seen>,
    },
    /// Each branch's records and output length.
    Concat(Vec<(Vec<Seen>, usize)>),
}

fn forward(nodes: &[Node], mut x: Vec<f64>, seen: &mut Vec<Seen>) -> Result<Vec<f64>> {
    for node in nodes {
        match node {
            Node::Residual { main, shortcut } => {
                let (mut sm, mut ss) = (Vec::new(), Vec::new());
                let a = forward(main, x.clone(), &mut sm)?;
                let b = forward(shortcut, x, &mut ss)?;
                seen.push(Seen::Residual {
                    main: sm,
                    shortcut: ss,
                });
                x = a.iter().zip(&b).map(|(a, b)| a + b).collect();
            }
            Node::Concat { branches } => {
                let mut rec = Vec::with_capacity(branches.len());
                let mut out = Vec::new();
                for b in branches {
                    let mut sb = Vec::new();
                    let y = forward(b, x.clone(), &mut sb)?;
                    rec.push((sb, y.len()));
                    out.extend(y);
                }
                seen.push(Seen::Concat(rec));
                x = out;
            }
            _ => {
                let y = crate::bounds::net::forward_nodes(std::slice::from_ref(node), x.clone())?;
                seen.push(Seen::Leaf(x));
                x = y;
            }
        }
    }
    Ok(x)
}

fn backward(nodes: &[Node], seen: &[Seen], mut g: Vec<f64>) -> Vec<f64> {
    for (node, s) in nodes.iter().zip(seen).rev() {
        g = match (node, s) {
            (Node::Affine(a), _) => a.op.map().apply_t(&g, false),
            (Node::Relu, Seen::Leaf(x)) => g
                .iter()
                .zip(x)
                .map(|(g, x)| if *x > 0.0 { *g } else { 0.0 })
                .collect(),
            (Node::MaxPool2 { .. } | Node::MaxPool { .. }, Seen::Leaf(x)) => {
                let mut out = vec![0.0; x.len()];
                for (k, win) in node.pool_windows().iter().enumerate() {
                    let Some(&first) = win.first() else { continue };
                    let best = win
                        .iter()
                        .copied()
                        .fold(first, |b, i| if x[i] > x[b] { i } else { b });
                    out[best] += g[k];
                }
                out
            }
            (Node::Concat { branches }, Seen::Concat(rec)) => {
                // The output gradient splits by branch; the branch gradients add at the fork.
                let mut sum: Option<Vec<f64>> = None;
                let mut off = 0;
                for (b, (sb, d)) in branches.iter().zip(rec) {
                    let part = g.get(off..off + d).map_or_else(Vec::new, |p| p.to_vec());
                    off += d;
                    let gb = backward(b, sb, part);
                    sum = Some(match sum {
                        Some(s) => s.iter().zip(&gb).map(|(a, b)| a + b).collect(),
                        None => gb,
                    });
                }
                sum.unwrap_or_default()
            }
            (
                Node::Residual { main, shortcut },
                Seen::Residual {
                    main: sm,
                    shortcut: ss,
                },
            ) => {
                let a = backward(main, sm, g.clone());
                let b = backward(shortcut, ss, g);
                a.iter().zip(&b).map(|(a, b)| a + b).collect()
            }
            // A leaf record always belongs to a non-residual node and vice versa (built above).
            (_, _) => g,
        };
    }
    g
}

/// ∇ₓS(x) for S = −T·logsumexp(f(x)/T); a ReLU at exactly 0 and ties in a max-pool window take
/// one one-sided derivative (the gradient of a neighbouring linear piece).
pub fn score_grad(net: &Net, x: &[f64], temperature: f64) -> Result<Vec<f64>> {
    if x.len() != net.input_dim() {
        return Err(crate::error::Error::BadInput(format!(
            "input has {} values, the network expects {}",
            x.len(),
            net.input_dim()
        )));
    }
    let mut seen = Vec::with_capacity(net.nodes.len());
    let z = forward(&net.nodes, x.to_vec(), &mut seen)?;
    let neg_p: Vec<f64> = crate::score::softmax_f64(&z, temperature)
        .into_iter()
        .map(|p| -p)
        .collect();
    Ok(backward(&net.nodes, &seen, neg_p))
}
