//! CROWN at CNN scale (issue 11, item 1): the exact ℓ_p bounds of the leading affine chain, the
//! batched (GEMM / scatter) back-substitution, and the work budget. Soundness by sampling and by
//! the analytic extreme points of the first layer, on random small nets of every layer kind
//! (dense, conv with stride and padding, max-pool, batch-norm, average pool, residual blocks),
//! ℓ2 and ℓ∞, with and without the pixel box.

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::avg_pool::AvgPool;
use oodcert::bounds::backsub::backsub;
use oodcert::bounds::conv::Conv;
use oodcert::bounds::crown::{CrownBudget, crown_trace_with};
use oodcert::bounds::dense::Dense;
use oodcert::bounds::diag::Diag;
use oodcert::bounds::ibp::ibp;
use oodcert::bounds::net::forward_nodes;
use oodcert::bounds::round::dot_err;
use oodcert::bounds::{Affine, Ball, Interval, LinearOp, Net, Node, Norm, Trace};
use oodcert::lipschitz::empirical::sample_ball;
use oodcert::model::Arch;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn affine(name: &str, op: LinearOp, r: &mut ChaCha8Rng) -> Node {
    let out = op.map().out_dim();
    Node::Affine(Affine {
        name: name.into(),
        op,
        bias: Some((0..out).map(|_| r.random_range(-0.2..0.2)).collect()),
    })
}

fn dense(inp: usize, out: usize, r: &mut ChaCha8Rng) -> LinearOp {
    let s = (3.0 / inp as f64).sqrt();
    LinearOp::Dense(Dense {
        out,
        inp,
        w: (0..out * inp).map(|_| r.random_range(-s..s)).collect(),
    })
}

/// A convolution of a `(c_in, h, w)` input; returns the op and its output shape.
#[allow(clippy::too_many_arguments)]
fn conv(
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    r: &mut ChaCha8Rng,
) -> (LinearOp, [usize; 3]) {
    let ho = (h + 2 * pad - k) / stride + 1;
    let wo = (w + 2 * pad - k) / stride + 1;
    let s = (3.0 / (c_in * k * k) as f64).sqrt();
    let op = Conv {
        c_out,
        c_in,
        kh: k,
        kw: k,
        stride,
        pad,
        h,
        w,
        ho,
        wo,
        k: (0..c_out * c_in * k * k)
            .map(|_| r.random_range(-s..s))
            .collect(),
    };
    (LinearOp::Conv(op), [c_out, ho, wo])
}

fn diag(n: usize, r: &mut ChaCha8Rng) -> LinearOp {
    LinearOp::Diag(Diag {
        scale: (0..n).map(|_| r.random_range(0.5..2.0)).collect(),
    })
}

/// Normalise, dense, BN-like diagonal, ReLU, dense, ReLU, dense.
fn dense_net(seed: u64) -> Net {
    let mut r = rng(seed);
    let (d, h, k) = (8, 10, 3);
    let nodes = vec![
        affine("norm", diag(d, &mut r), &mut r),
        affine("fc1", dense(d, h, &mut r), &mut r),
        affine("bn", diag(h, &mut r), &mut r),
        Node::Relu,
        affine("fc2", dense(h, h, &mut r), &mut r),
        Node::Relu,
        affine("fc3", dense(h, k, &mut r), &mut r),
    ];
    Net {
        input_shape: [1, 1, d],
        num_classes: k,
        nodes,
    }
}

/// Normalise, conv (pad 1) + BN, ReLU, max-pool, conv (stride 2, pad 1), ReLU, average pool,
/// dense.
fn conv_net(seed: u64) -> Net {
    let mut r = rng(seed);
    let (c0, h0) = (2, 6);
    let (c1, s1) = conv(c0, h0, h0, 3, 3, 1, 1, &mut r);
    let n1: usize = s1.iter().product();
    let (c2, s2) = conv(3, s1[1] / 2, s1[2] / 2, 4, 3, 2, 1, &mut r);
    let nodes = vec![
        affine("norm", diag(c0 * h0 * h0, &mut r), &mut r),
        affine("conv1", c1, &mut r),
        affine("bn1", diag(n1, &mut r), &mut r),
        Node::Relu,
        Node::MaxPool2 {
            c: s1[0],
            h: s1[1],
            w: s1[2],
        },
        affine("conv2", c2, &mut r),
        Node::Relu,
        Node::Affine(Affine {
            name: "avgpool".into(),
            op: LinearOp::AvgPool(AvgPool::global(s2[0], s2[1], s2[2])),
            bias: None,
        }),
        affine("fc", dense(s2[0], 3, &mut r), &mut r),
    ];
    Net {
        input_shape: [c0, h0, h0],
        num_classes: 3,
        nodes,
    }
}

/// Conv stem, ReLU, an identity residual block, ReLU, a strided projection block, ReLU, average
/// pool, dense (a miniature ResNet).
fn residual_conv_net(seed: u64) -> Net {
    let mut r = rng(seed);
    let (c0, h0) = (1, 6);
    let (stem, s) = conv(c0, h0, h0, 2, 3, 1, 1, &mut r);
    let n: usize = s.iter().product();
    let (a1, _) = conv(2, 6, 6, 2, 3, 1, 1, &mut r);
    let (b1, _) = conv(2, 6, 6, 2, 3, 1, 1, &mut r);
    let (a2, s2) = conv(2, 6, 6, 3, 3, 2, 1, &mut r);
    let n2: usize = s2.iter().product();
    let (b2, _) = conv(3, 3, 3, 3, 3, 1, 1, &mut r);
    let (sc, _) = conv(2, 6, 6, 3, 1, 2, 0, &mut r);
    let nodes = vec![
        affine("stem", stem, &mut r),
        Node::Relu,
        Node::Residual {
            main: vec![
                affine("a1", a1, &mut r),
                affine("bn_a1", diag(n, &mut r), &mut r),
                Node::Relu,
                affine("b1", b1, &mut r),
                affine("bn_b1", diag(n, &mut r), &mut r),
            ],
            shortcut: vec![],
        },
        Node::Relu,
        Node::Residual {
            main: vec![
                affine("a2", a2, &mut r),
                affine("bn_a2", diag(n2, &mut r), &mut r),
                Node::Relu,
                affine("b2", b2, &mut r),
            ],
            shortcut: vec![
                affine("sc", sc, &mut r),
                affine("bn_sc", diag(n2, &mut r), &mut r),
            ],
        },
        Node::Relu,
        Node::Affine(Affine {
            name: "avgpool".into(),
            op: LinearOp::AvgPool(AvgPool::global(s2[0], s2[1], s2[2])),
            bias: None,
        }),
        affine("fc", dense(s2[0], 3, &mut r), &mut r),
    ];
    Net {
        input_shape: [c0, h0, h0],
        num_classes: 3,
        nodes,
    }
}

/// Every node input reached from `x` lies in its traced box (recursing into residual blocks);
/// returns the output.
fn check_inside(nodes: &[Node], traces: &[Trace], mut x: Vec<f64>, what: &str) -> Vec<f64> {
    for (i, (node, t)) in nodes.iter().zip(traces).enumerate() {
        let b = t.input();
        if let Some(j) = (0..x.len()).find(|&j| !(b.lo[j] <= x[j] && x[j] <= b.hi[j])) {
            panic!(
                "{what}: node {i} input {j} = {} outside [{}, {}]",
                x[j], b.lo[j], b.hi[j]
            );
        }
        x = match (node, t) {
            (
                Node::Residual { main, shortcut },
                Trace::Residual {
                    main: tm,
                    shortcut: ts,
                    ..
                },
            ) => {
                let a = check_inside(main, tm, x.clone(), what);
                let b = check_inside(shortcut, ts, x, what);
                a.iter().zip(&b).map(|(a, b)| a + b).collect()
            }
            _ => forward_nodes(std::slice::from_ref(node), x).unwrap(),
        };
    }
    x
}

/// Points of the ball: uniform samples, and points on its boundary (ℓ∞ vertices, ℓ2 sphere).
fn ball_points(ball: &Ball, n: usize, r: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    let mut pts: Vec<Vec<f64>> = (0..n).map(|_| sample_ball(ball, r)).collect();
    for _ in 0..n {
        let mut y: Vec<f64> = match ball.norm {
            Norm::Linf => ball
                .center
                .iter()
                .map(|c| {
                    c + if r.random::<bool>() {
                        ball.eps
                    } else {
                        -ball.eps
                    }
                })
                .collect(),
            Norm::L2 => {
                let d: Vec<f64> = ball
                    .center
                    .iter()
                    .map(|_| r.random::<f64>() - 0.5)
                    .collect();
                let l = d.iter().map(|v| v * v).sum::<f64>().sqrt();
                ball.center
                    .iter()
                    .zip(&d)
                    .map(|(c, v)| c + ball.eps * v / l)
                    .collect()
            }
        };
        ball.project(&mut y);
        pts.push(y);
    }
    pts
}

fn width(b: &Interval) -> f64 {
    b.lo.iter().zip(&b.hi).map(|(l, h)| h - l).sum()
}

/// Sampled and boundary points of ℓ2 / ℓ∞ balls (with and without the pixel box) never leave
/// any traced box (every node input, inside residual blocks too) or the logit box, on random
/// nets of every layer kind; the CROWN logit box is never wider than IBP's and narrower on ℓ2.
#[test]
fn crown_boxes_contain_ball_points_on_every_layer_kind() {
    let budget = CrownBudget::default_work();
    for seed in 0..3u64 {
        for (name, net) in [
            ("dense", dense_net(10 + seed)),
            ("conv", conv_net(20 + seed)),
            ("residual", residual_conv_net(30 + seed)),
        ] {
            let mut r = rng(40 + seed);
            for norm in [Norm::L2, Norm::Linf] {
                for unit_box in [false, true] {
                    let x = random_image(net.input_dim(), &mut r);
                    let eps = if norm == Norm::L2 { 0.5 } else { 0.1 };
                    let ball = Ball::new(x, eps, norm, unit_box).unwrap();
                    let (_, z_ibp) = ibp(&net.nodes, ball.to_box()).unwrap();
                    let (t, z) = crown_trace_with(&net.nodes, &ball, &budget).unwrap();
                    let what = format!("{name} seed {seed} {norm:?} box {unit_box}");
                    for p in ball_points(&ball, 400, &mut r) {
                        let out = check_inside(&net.nodes, &t, p, &what);
                        assert!(z.contains(&out), "{what}: logits {out:?} outside {z:?}");
                    }
                    assert!(width(&z) <= width(&z_ibp), "{what}");
                    if norm == Norm::L2 && !unit_box {
                        assert!(width(&z) < 0.95 * width(&z_ibp), "{what}");
                    }
                }
            }
        }
    }
}

/// The leading affine chain's box is exact over the ball: the analytic maximiser and minimiser
/// of each pre-activation (x₀ ± εR_j/‖R_j‖₂, or x₀ ± ε·sign R_j) reach the box's ends up to
/// rounding, and never leave it — for a dense chain (normalise, dense, BN) and a conv chain.
#[test]
fn affine_chain_box_is_exact_on_the_ball() {
    let mut r = rng(7);
    for (name, net, k) in [
        ("dense", dense_net(1), 3usize),
        ("conv", conv_net(2), 3),
        ("residual", residual_conv_net(3), 1),
    ] {
        let chain = &net.nodes[..k];
        assert!(matches!(net.nodes[k], Node::Relu));
        let n = net.input_dim();
        for norm in [Norm::L2, Norm::Linf] {
            let x = random_image(n, &mut r);
            let eps = if norm == Norm::L2 { 0.7 } else { 0.05 };
            let ball = Ball::new(x.clone(), eps, norm, false).unwrap();
            let (t, _) = crown_trace_with(&net.nodes, &ball, &CrownBudget::default_work()).unwrap();
            let b = t[k].input();
            let y0 = forward_nodes(chain, x.clone()).unwrap();
            // Columns of R by finite differences of the affine chain (exact up to rounding).
            let cols: Vec<Vec<f64>> = (0..n)
                .map(|i| {
                    let mut e = vec![0.0; n];
                    e[i] = 1.0;
                    let z0 = forward_nodes(chain, vec![0.0; n]).unwrap();
                    let z = forward_nodes(chain, e).unwrap();
                    z.iter().zip(&z0).map(|(a, b)| a - b).collect()
                })
                .collect();
            for j in 0..y0.len() {
                let row: Vec<f64> = cols.iter().map(|c| c[j]).collect();
                let nrm = match norm {
                    Norm::L2 => row.iter().map(|v| v * v).sum::<f64>().sqrt(),
                    Norm::Linf => row.iter().map(|v| v.abs()).sum::<f64>(),
                };
                for sign in [1.0, -1.0] {
                    let p: Vec<f64> = x
                        .iter()
                        .zip(&row)
                        .map(|(x, w)| match norm {
                            Norm::L2 => x + sign * eps * w / nrm.max(1e-300) * (1.0 - 1e-12),
                            Norm::Linf => x + sign * eps * w.signum(),
                        })
                        .collect();
                    let v = forward_nodes(chain, p).unwrap()[j];
                    let tol = 1e-9 * (1.0 + v.abs());
                    assert!(
                        b.lo[j] <= v && v <= b.hi[j],
                        "{name} {norm:?} entry {j}: extreme {v} outside [{}, {}]",
                        b.lo[j],
                        b.hi[j]
                    );
                    let end = if sign > 0.0 { b.hi[j] } else { b.lo[j] };
                    assert!(
                        (end - v).abs() <= tol,
                        "{name} {norm:?} entry {j}: box end {end} vs extreme {v}"
                    );
                }
            }
        }
    }
}

/// The batched back-substitution (GEMM for dense layers, GEMM over patches or scatter for
/// convolutions) equals the row-by-row adjoint `apply_t` to rounding, on sparse and dense rows.
#[test]
fn batched_backsub_equals_row_by_row() {
    let mut r = rng(11);
    let mut ops = vec![
        dense(7, 5, &mut r),
        diag(9, &mut r),
        LinearOp::AvgPool(AvgPool::global(3, 1, 5)),
    ];
    for (c_in, h, w, c_out, k, s, p) in [
        (2, 7, 7, 3, 3, 1, 1),
        (1, 8, 6, 2, 5, 1, 2),
        (3, 9, 9, 4, 3, 2, 1),
        (2, 6, 6, 3, 1, 2, 0),
        (2, 5, 5, 2, 3, 1, 0),
    ] {
        ops.push(conv(c_in, h, w, c_out, k, s, p, &mut r).0);
    }
    for op in &ops {
        let map = op.map();
        let (out, inp) = (map.out_dim(), map.in_dim());
        let n = 9;
        let mut lam = vec![0.0; n * out];
        for (i, row) in lam.chunks_exact_mut(out).enumerate() {
            match i % 3 {
                0 => row[i % out] = if i % 2 == 0 { 1.0 } else { -1.0 },
                1 => row.iter_mut().for_each(|v| *v = r.random_range(-1.0..1.0)),
                _ => {
                    for _ in 0..3 {
                        row[r.random_range(0..out)] = r.random_range(-2.0..2.0);
                    }
                }
            }
        }
        let got = backsub(op, &lam, n).unwrap();
        assert_eq!(got.len(), n * inp);
        for (i, row) in lam.chunks_exact(out).enumerate() {
            let want = map.apply_t(row, false);
            let absr: Vec<f64> = row.iter().map(|v| v.abs()).collect();
            let mag = map.apply_t(&absr, true);
            for j in 0..inp {
                let tol = 2.0 * dot_err(map.fan_out()) * mag[j] + 1e-300;
                assert!(
                    (got[i * inp + j] - want[j]).abs() <= tol,
                    "{op:?}: row {i} entry {j}: {} vs {}",
                    got[i * inp + j],
                    want[j]
                );
            }
        }
    }
}

/// The default budget covers LeNet 28×28: every ReLU / max-pool input and the logits get a
/// CROWN (or exact-chain) box, so the boxes are narrower than with the chain bound alone
/// (budget 0); sampled and boundary points stay inside every box.
#[test]
fn default_budget_covers_lenet() {
    let (_, net) = model(Arch::Lenet, [1, 28, 28], 10, 5);
    let mut r = rng(6);
    let x = random_image(784, &mut r);
    for (norm, eps) in [(Norm::L2, 0.1), (Norm::Linf, 0.005)] {
        let ball = Ball::new(x.clone(), eps, norm, true).unwrap();
        let (t, z) = crown_trace_with(&net.nodes, &ball, &CrownBudget::default_work()).unwrap();
        let none = CrownBudget {
            max_work: 0.0,
            ..CrownBudget::default_work()
        };
        let (t0, z0) = crown_trace_with(&net.nodes, &ball, &none).unwrap();
        let (ti, _) = ibp(&net.nodes, ball.to_box()).unwrap();
        for p in ball_points(&ball, 50, &mut r) {
            let out = check_inside(&net.nodes, &t, p, "lenet");
            assert!(z.contains(&out));
        }
        // Node 3 (first ReLU): the chain box (exact), narrower than IBP's cube on ℓ2.
        if norm == Norm::L2 {
            assert!(width(t[2].input()) < 0.5 * width(ti[2].input()));
        }
        for (i, node) in net.nodes.iter().enumerate() {
            if matches!(node, Node::Relu) && i > 2 {
                assert!(
                    width(t[i].input()) < width(t0[i].input()),
                    "{norm:?}: ReLU {i} not tightened by CROWN"
                );
            }
        }
        assert!(width(&z) < width(&z0), "{norm:?}: logits not tightened");
    }
}

/// Probe on a trained model (`OODCERT_PROBE_MODEL`, data under `OODCERT_DATA`): unstable ReLUs
/// per layer and CROWN time on the first 5 `mnist:test` images (ℓ2 ε = 0.1, ℓ∞ ε = 0.005, no
/// pixel box, as `oodcert lipschitz` by default), for IBP, the old rule (dimension ≤ 4096, no
/// exact affine chain) and the default budget.
#[test]
#[ignore = "probe on a trained model"]
fn probe_unstable_relus() {
    let Ok(path) = std::env::var("OODCERT_PROBE_MODEL") else {
        return;
    };
    let m = oodcert::model::Model::load(std::path::Path::new(&path), &candle_core::Device::Cpu)
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap();
    let net = Net::from_model(&m).unwrap();
    let root = oodcert::data::default_data_dir();
    let data = oodcert::data::load_as("mnist:test", &root, net.input_shape).unwrap();
    let unstable = |t: &[Trace]| -> Vec<usize> {
        net.nodes
            .iter()
            .zip(t)
            .filter(|(n, _)| matches!(n, Node::Relu))
            .map(|(_, t)| {
                let b = t.input();
                (0..b.len())
                    .filter(|&j| b.lo[j] < 0.0 && b.hi[j] > 0.0)
                    .count()
            })
            .collect()
    };
    let old = CrownBudget {
        max_dim: 4096,
        max_work: f64::INFINITY,
        affine_chain: false,
        alpha_iters: 0,
    };
    for (norm, eps) in [(Norm::L2, 0.1), (Norm::Linf, 0.005)] {
        for i in 0..5 {
            let x: Vec<f64> = data.image(i).iter().map(|v| *v as f64).collect();
            let ball = Ball::new(x, eps, norm, false).unwrap();
            let (ti, _) = ibp(&net.nodes, ball.to_box()).unwrap();
            let t0 = std::time::Instant::now();
            let (to, _) = crown_trace_with(&net.nodes, &ball, &old).unwrap();
            let s_old = t0.elapsed().as_secs_f64();
            let t0 = std::time::Instant::now();
            let (tn, _) =
                crown_trace_with(&net.nodes, &ball, &CrownBudget::default_work()).unwrap();
            let s_new = t0.elapsed().as_secs_f64();
            eprintln!(
                "{norm:?} eps {eps} image {i}: unstable per ReLU: IBP {:?} old-CROWN {:?} ({s_old:.2} s) new {:?} ({s_new:.2} s)",
                unstable(&ti),
                unstable(&to),
                unstable(&tn)
            );
        }
    }
}

/// Probe (`OODCERT_PROBE_MODEL`, an optional `OODCERT_PROBE_DATA` spec, default `mnist:test`,
/// `OODCERT_PROBE_EPS`, default 0.1): per top-level ReLU / max-pool input and the logits of the
/// first image, ℓ2 ball: width, the budget's work estimate, rows per block, block memory, and the
/// time of the CROWN box itself (computed even when the budget would skip it, unless the estimate
/// exceeds 1e12).
#[test]
#[ignore = "probe on a trained model"]
fn probe_box_costs() {
    use oodcert::bounds::crown::{BLOCK_BYTES, block_units, box_work, crown_box};
    let Ok(path) = std::env::var("OODCERT_PROBE_MODEL") else {
        return;
    };
    let m = oodcert::model::Model::load(std::path::Path::new(&path), &candle_core::Device::Cpu)
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap();
    let net = Net::from_model(&m).unwrap();
    let spec = std::env::var("OODCERT_PROBE_DATA").unwrap_or_else(|_| "mnist:test".into());
    let eps: f64 = std::env::var("OODCERT_PROBE_EPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.1);
    let root = oodcert::data::default_data_dir();
    let data = oodcert::data::load_as(&spec, &root, net.input_shape).unwrap();
    let x: Vec<f64> = data.image(0).iter().map(|v| *v as f64).collect();
    let ball = Ball::new(x, eps, Norm::L2, false).unwrap();
    let t0 = std::time::Instant::now();
    let (t, z) = crown_trace_with(&net.nodes, &ball, &CrownBudget::default_work()).unwrap();
    eprintln!(
        "trace at the default budget: {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let mut ends: Vec<(usize, usize)> = net
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| *i > 0 && matches!(n, Node::Relu | Node::MaxPool2 { .. }))
        .map(|(i, _)| (i, t[i].input().len()))
        .collect();
    ends.push((net.nodes.len(), z.len()));
    for (i, dim) in ends {
        let work = box_work(&net.nodes[..i], &t[..i], dim);
        let units = block_units(&net.nodes[..i], &t[..i], dim);
        let mib = BLOCK_BYTES >> 20;
        let secs = if work <= 1e12 {
            let t0 = std::time::Instant::now();
            crown_box(&net.nodes[..i], &t[..i], &ball, dim).unwrap();
            format!("{:.3} s", t0.elapsed().as_secs_f64())
        } else {
            "not run".into()
        };
        eprintln!(
            "box before node {i}: dim {dim}, est. work {work:.3e}, {units} units per block (≤ {mib} MiB per buffer), CROWN {secs}"
        );
    }
}
