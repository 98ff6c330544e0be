// Hand-built conv / max-pool / residual networks for tests/lipschitz_recurjac.rs, with an exact
// f64 gradient of S at a point and the enumeration of every activation and max-pool selection
// pattern the traced boxes allow (included with `mod`).
#![allow(dead_code)]

use oodcert::bounds::conv::Conv;
use oodcert::bounds::diag::Diag;
use oodcert::bounds::ibp::Trace;
use oodcert::bounds::net::{Affine, LinearOp, Net, Node, out_dim};
use oodcert::bounds::{Interval, Norm, max_pool, relu};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn unif(r: &mut ChaCha8Rng, scale: f64) -> f64 {
    (2.0 * r.random::<f64>() - 1.0) * scale
}

/// A k×k convolution `c_in → c_out` on `hw×hw` inputs with bias; returns the node and the output
/// side.
pub fn conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    hw: usize,
    r: &mut ChaCha8Rng,
) -> (Node, usize) {
    let ho = (hw + 2 * pad - k) / stride + 1;
    let scale = 1.7 / ((c_in * k * k) as f64).sqrt();
    let op = Conv {
        c_out,
        c_in,
        kh: k,
        kw: k,
        stride,
        pad,
        h: hw,
        w: hw,
        ho,
        wo: ho,
        k: (0..c_out * c_in * k * k).map(|_| unif(r, scale)).collect(),
    };
    let bias: Vec<f64> = (0..c_out)
        .flat_map(|_| std::iter::repeat_n(unif(r, 0.3), ho * ho))
        .collect();
    let node = Node::Affine(Affine {
        name: "conv".into(),
        op: LinearOp::Conv(op),
        bias: Some(bias),
    });
    (node, ho)
}

/// A dense layer `inp → out` with bias.
pub fn dense(inp: usize, out: usize, r: &mut ChaCha8Rng) -> Node {
    let scale = 1.7 / (inp as f64).sqrt();
    Node::Affine(Affine {
        name: "dense".into(),
        op: LinearOp::Dense(oodcert::bounds::dense::Dense {
            out,
            inp,
            w: (0..out * inp).map(|_| unif(r, scale)).collect(),
        }),
        bias: Some((0..out).map(|_| unif(r, 0.3)).collect()),
    })
}

/// A diagonal affine map (normalisation / BatchNorm) of `n` entries.
pub fn diag(n: usize, r: &mut ChaCha8Rng) -> Node {
    Node::Affine(Affine {
        name: "diag".into(),
        op: LinearOp::Diag(Diag {
            scale: (0..n).map(|_| 0.6 + r.random::<f64>()).collect(),
        }),
        bias: Some((0..n).map(|_| unif(r, 0.2)).collect()),
    })
}

/// LeNet-like: 1×6×6 → diag → conv3(3, pad 1) → ReLU → max-pool → 3×3×3 → conv2(4) → ReLU
/// → dense 16 → 8 → ReLU → dense 8 → 3.
pub fn tiny_lenet(seed: u64) -> Net {
    let mut r = crate::rng(seed);
    let (c1, s1) = conv(1, 3, 3, 1, 1, 6, &mut r);
    let (c2, s2) = conv(3, 4, 2, 1, 0, s1 / 2, &mut r);
    let nodes = vec![
        diag(36, &mut r),
        c1,
        Node::Relu,
        Node::MaxPool2 { c: 3, h: s1, w: s1 },
        c2,
        Node::Relu,
        dense(4 * s2 * s2, 8, &mut r),
        Node::Relu,
        dense(8, 3, &mut r),
    ];
    Net {
        input_shape: [1, 6, 6],
        num_classes: 3,
        nodes,
    }
}

/// Residual: 1×4×4 → diag → conv3(2) → ReLU → [identity block: conv3, diag, ReLU, conv3, diag]
/// → ReLU → [downsampling block: conv3 stride 2 (3 ch), diag, ReLU, conv3, diag; shortcut conv1
/// stride 2, diag] → ReLU → max-pool (3×2×2 → 3) → dense 3 → 3 (with `pool`), else dense 12 → 3.
pub fn tiny_resnet(seed: u64, pool: bool) -> Net {
    let mut r = crate::rng(seed);
    let (stem, _) = conv(1, 2, 3, 1, 1, 4, &mut r);
    let block = |c_in: usize, c_out: usize, stride: usize, r: &mut ChaCha8Rng| {
        let (a, s) = conv(c_in, c_out, 3, stride, 1, 4, r);
        let n = c_out * s * s;
        let (b, _) = conv(c_out, c_out, 3, 1, 1, s, r);
        let main = vec![a, diag(n, r), Node::Relu, b, diag(n, r)];
        let shortcut = if stride == 1 && c_in == c_out {
            vec![]
        } else {
            vec![conv(c_in, c_out, 1, stride, 0, 4, r).0, diag(n, r)]
        };
        Node::Residual { main, shortcut }
    };
    let b1 = block(2, 2, 1, &mut r);
    let b2 = block(2, 3, 2, &mut r);
    let mut nodes = vec![
        diag(16, &mut r),
        stem,
        Node::Relu,
        b1,
        Node::Relu,
        b2,
        Node::Relu,
    ];
    if pool {
        nodes.push(Node::MaxPool2 { c: 3, h: 2, w: 2 });
        nodes.push(dense(3, 3, &mut r));
    } else {
        nodes.push(dense(12, 3, &mut r));
    }
    Net {
        input_shape: [1, 4, 4],
        num_classes: 3,
        nodes,
    }
}

/// Max-pool as the only nonlinearity: 1×6×6 → diag → conv3(3, pad 1) → max-pool → dense 27 → 3.
pub fn pool_only(seed: u64) -> Net {
    let mut r = crate::rng(seed);
    let (c1, s1) = conv(1, 3, 3, 1, 1, 6, &mut r);
    let nodes = vec![
        diag(36, &mut r),
        c1,
        Node::MaxPool2 { c: 3, h: s1, w: s1 },
        dense(27, 3, &mut r),
    ];
    Net {
        input_shape: [1, 6, 6],
        num_classes: 3,
        nodes,
    }
}

/// ReLUs only inside one residual branch, the block first (so no level before it refines):
/// 2×4×4 → [conv3, diag, ReLU, conv3, diag | identity] → dense 32 → 3.
pub fn block_only(seed: u64) -> Net {
    let mut r = crate::rng(seed);
    let (a, _) = conv(2, 2, 3, 1, 1, 4, &mut r);
    let (b, _) = conv(2, 2, 3, 1, 1, 4, &mut r);
    let main = vec![a, diag(32, &mut r), Node::Relu, b, diag(32, &mut r)];
    let nodes = vec![
        Node::Residual {
            main,
            shortcut: vec![],
        },
        dense(32, 3, &mut r),
    ];
    Net {
        input_shape: [2, 4, 4],
        num_classes: 3,
        nodes,
    }
}

/// The derivative choice of one nonlinear node: ReLU derivatives, or the input index each
/// max-pool window routes to.
pub enum Choice {
    Relu(Vec<f64>),
    Pool(Vec<usize>),
}

/// Forward pass recording the choices at x (ReLU: 1 where z > 0; max-pool: the first maximal
/// entry), in pre-order (a block's main branch before its shortcut).
pub fn forward_record(nodes: &[Node], mut x: Vec<f64>, rec: &mut Vec<Choice>) -> Vec<f64> {
    for node in nodes {
        x = match node {
            Node::Affine(a) => a.forward(&x),
            Node::Relu => {
                rec.push(Choice::Relu(
                    x.iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect(),
                ));
                x.iter().map(|v| v.max(0.0)).collect()
            }
            Node::MaxPool2 { .. } | Node::MaxPool { .. } => {
                let sel: Vec<usize> = node
                    .pool_windows()
                    .iter()
                    .map(|win| {
                        let mut best = win[0];
                        for &i in win {
                            if x[i] > x[best] {
                                best = i;
                            }
                        }
                        best
                    })
                    .collect();
                let y = sel.iter().map(|&i| x[i]).collect();
                rec.push(Choice::Pool(sel));
                y
            }
            Node::Residual { main, shortcut } => {
                let a = forward_record(main, x.clone(), rec);
                let b = forward_record(shortcut, x, rec);
                a.iter().zip(&b).map(|(a, b)| a + b).collect()
            }
            Node::Concat { branches } => {
                let mut out = Vec::new();
                for b in branches {
                    out.extend(forward_record(b, x.clone(), rec));
                }
                out
            }
        };
    }
    x
}

/// Jᵀg for the Jacobian of `nodes` (fed by vectors of length `in_len`) with the given choices
/// (consumed from `*end` downwards).
pub fn backward_choices(
    nodes: &[Node],
    choices: &[Choice],
    end: &mut usize,
    mut g: Vec<f64>,
    in_len: usize,
) -> Vec<f64> {
    let ins: Vec<usize> = (0..nodes.len())
        .map(|i| out_dim(&nodes[..i], in_len).unwrap())
        .collect();
    for (i, node) in nodes.iter().enumerate().rev() {
        g = match node {
            Node::Affine(a) => a.op.map().apply_t(&g, false),
            Node::Relu => {
                *end -= 1;
                let Choice::Relu(d) = &choices[*end] else {
                    panic!("choice order")
                };
                g.iter().zip(d).map(|(g, d)| g * d).collect()
            }
            Node::MaxPool2 { .. } | Node::MaxPool { .. } => {
                *end -= 1;
                let Choice::Pool(sel) = &choices[*end] else {
                    panic!("choice order")
                };
                let g0 = node.max_pool_geometry().unwrap();
                let mut out = vec![0.0; g0.c * g0.h * g0.w];
                for (k, &i) in sel.iter().enumerate() {
                    out[i] += g[k];
                }
                out
            }
            Node::Residual { main, shortcut } => {
                let gs = backward_choices(shortcut, choices, end, g.clone(), ins[i]);
                let gm = backward_choices(main, choices, end, g, ins[i]);
                gm.iter().zip(&gs).map(|(a, b)| a + b).collect()
            }
            Node::Concat { branches } => {
                let dims: Vec<usize> = branches
                    .iter()
                    .map(|b| out_dim(b, ins[i]).unwrap())
                    .collect();
                let mut sum: Option<Vec<f64>> = None;
                let mut off: usize = dims.iter().sum();
                for (b, d) in branches.iter().zip(&dims).rev() {
                    off -= d;
                    let gb = backward_choices(b, choices, end, g[off..off + d].to_vec(), ins[i]);
                    sum = Some(match sum {
                        Some(s) => s.iter().zip(&gb).map(|(a, b)| a + b).collect(),
                        None => gb,
                    });
                }
                sum.unwrap()
            }
        };
    }
    g
}

pub fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// −Jᵀp for the given choices.
pub fn grad_for(net: &Net, choices: &[Choice], p: &[f64]) -> Vec<f64> {
    let mut end = choices.len();
    let g = backward_choices(
        &net.nodes,
        choices,
        &mut end,
        p.iter().map(|v| -v).collect(),
        net.input_dim(),
    );
    assert_eq!(end, 0, "all choices consumed");
    g
}

/// The class c whose Jacobian row has the largest `norm` for the given choices, and that norm
/// (every row is at most a bound iff this one is).
pub fn largest_jacobian_row(net: &Net, choices: &[Choice], norm: Norm) -> (usize, f64) {
    let k = net.num_classes;
    (0..k)
        .map(|c| {
            let mut e = vec![0.0; k];
            e[c] = 1.0;
            (c, norm.dual_norm(&grad_for(net, choices, &e)))
        })
        .fold((0, f64::NEG_INFINITY), |a, b| {
            if b.1 > a.1 || b.1.is_nan() { b } else { a }
        })
}

/// S(x) = −logsumexp f(x) (T = 1) and its gradient −Jᵀ softmax(f(x)) at x.
pub fn score_and_grad(net: &Net, x: &[f64]) -> (f64, Vec<f64>) {
    let mut rec = Vec::new();
    let z = forward_record(&net.nodes, x.to_vec(), &mut rec);
    let m = z.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    let s = -(m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln());
    (s, grad_for(net, &rec, &softmax(&z)))
}

/// The admissible options of each nonlinear node on the traced boxes (pre-order): per ReLU
/// neuron its derivatives in {0, 1}; per max-pool window its candidate indices.
pub fn options(nodes: &[Node], traces: &[Trace], out: &mut Vec<(bool, Vec<Vec<usize>>)>) {
    for (node, t) in nodes.iter().zip(traces) {
        match (node, t) {
            (Node::Relu, t) => {
                let b: &Interval = t.input();
                out.push((
                    true,
                    (0..b.len())
                        .map(|j| match relu::derivative_set(b.lo[j], b.hi[j]) {
                            (0.0, 0.0) => vec![0],
                            (1.0, 1.0) => vec![1],
                            _ => vec![0, 1],
                        })
                        .collect(),
                ));
            }
            (Node::MaxPool2 { .. } | Node::MaxPool { .. }, t) => out.push((
                false,
                node.pool_windows()
                    .iter()
                    .map(|win| max_pool::candidates(t.input(), win))
                    .collect(),
            )),
            (
                Node::Residual { main, shortcut },
                Trace::Residual {
                    main: tm,
                    shortcut: ts,
                    ..
                },
            ) => {
                options(main, tm, out);
                options(shortcut, ts, out);
            }
            (Node::Concat { branches }, Trace::Concat { branches: tb, .. }) => {
                for (b, t) in branches.iter().zip(tb) {
                    options(b, t, out);
                }
            }
            _ => {}
        }
    }
}

/// Calls `f` with every combination of the options (mixed-radix count over the free units);
/// returns the number of combinations, or None (nothing called) when there are more than
/// `limit`.
pub fn for_each_pattern(
    opts: &[(bool, Vec<Vec<usize>>)],
    limit: usize,
    mut f: impl FnMut(&[Choice]),
) -> Option<usize> {
    let free: Vec<(usize, usize)> = opts
        .iter()
        .enumerate()
        .flat_map(|(l, (_, units))| {
            units
                .iter()
                .enumerate()
                .filter(|(_, o)| o.len() > 1)
                .map(move |(j, _)| (l, j))
        })
        .collect();
    let mut total = 1usize;
    for &(l, j) in &free {
        total = total.saturating_mul(opts[l].1[j].len());
    }
    if total > limit {
        return None;
    }
    let mut digit = vec![0usize; free.len()];
    for _ in 0..total {
        let mut pick: Vec<Vec<usize>> = opts
            .iter()
            .map(|(_, u)| u.iter().map(|o| o[0]).collect())
            .collect();
        for (b, &(l, j)) in free.iter().enumerate() {
            pick[l][j] = opts[l].1[j][digit[b]];
        }
        let choices: Vec<Choice> = opts
            .iter()
            .zip(pick)
            .map(|((is_relu, _), p)| {
                if *is_relu {
                    Choice::Relu(p.iter().map(|&v| v as f64).collect())
                } else {
                    Choice::Pool(p)
                }
            })
            .collect();
        f(&choices);
        for (b, &(l, j)) in free.iter().enumerate() {
            digit[b] += 1;
            if digit[b] < opts[l].1[j].len() {
                break;
            }
            digit[b] = 0;
        }
    }
    Some(total)
}
