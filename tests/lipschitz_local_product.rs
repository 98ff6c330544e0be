//! The masked local product, the split bound and the Lipschitz boxes
//! (src/lipschitz/{local_product,split_bound,masked_norm}.rs, proofs/lipschitz_local_product.md)
//! try to be broken: on random dense, conv + ReLU + max-pool, average-pool + BatchNorm and
//! residual nets, (a) every activation / max-pool selection pattern the boxes allow gives
//! Jacobian rows below the product bound, (b) exact gradients at 2000 sampled points and
//! difference quotients stay below the product and split bounds, (c) every node input at the
//! sampled points lies in the tightened boxes, and (d) the product is never above the global
//! bound.

mod recurjac_nets;
use recurjac_nets::*;

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::ibp::Trace;
use oodcert::bounds::net::{LinearOp, Node};
use oodcert::bounds::{Ball, Net, Norm};
use oodcert::lipschitz::empirical::sample_ball;
use oodcert::lipschitz::global_bound;
use oodcert::lipschitz::local::{
    Head, PreBounds, fastlip_heads_on, fastlip_on, neg_softmax_box, pre_bounds,
};
use oodcert::lipschitz::local_product::masked_product;
use oodcert::lipschitz::split_bound::split_bound;
use oodcert::model::Arch;
use rand::Rng;

const PRES: [PreBounds; 2] = [PreBounds::Ibp, PreBounds::Crown { max_dim: 10_000 }];

/// Every layer kind: dense MLP, LeNet-like (diag, conv, ReLU, max-pool, dense), max-pool as the
/// only nonlinearity, residual nets (identity and conv shortcuts, with and without a pool), a
/// ReLU only inside a block, and a candle ResNet-style net (BatchNorm, average pool).
fn nets(seed: u64) -> Vec<(String, Net)> {
    let mut v = vec![
        ("lenet".to_string(), tiny_lenet(seed)),
        ("resnet".into(), tiny_resnet(seed, false)),
        ("resnet+pool".into(), tiny_resnet(seed, true)),
        ("pool_only".into(), pool_only(seed)),
        ("block_only".into(), block_only(seed)),
        ("mlp".into(), mlp([1, 3, 3], &[7, 6], 3, seed).1),
    ];
    v.push(("avgpool".into(), avgpool_net(seed)));
    if seed == 0 {
        v.push((
            "candle lenet".into(),
            model(Arch::Lenet, [1, 28, 28], 10, seed).1,
        ));
    }
    v
}

/// Global average pooling after a residual block (the ResNet head): 2×4×4 → conv3 (3 ch) →
/// diag → ReLU → [conv3, diag, ReLU, conv3, diag | identity] → ReLU → average pool → dense 3 → 3.
fn avgpool_net(seed: u64) -> Net {
    let mut r = rng(seed + 4242);
    let (c0, _) = conv(2, 3, 3, 1, 1, 4, &mut r);
    let (a, _) = conv(3, 3, 3, 1, 1, 4, &mut r);
    let (b, _) = conv(3, 3, 3, 1, 1, 4, &mut r);
    let main = vec![a, diag(48, &mut r), Node::Relu, b, diag(48, &mut r)];
    let nodes = vec![
        c0,
        diag(48, &mut r),
        Node::Relu,
        Node::Residual {
            main,
            shortcut: vec![],
        },
        Node::Relu,
        Node::Affine(oodcert::bounds::net::Affine {
            name: "avgpool".into(),
            op: LinearOp::AvgPool(oodcert::bounds::avg_pool::AvgPool::global(3, 4, 4)),
            bias: None,
        }),
        dense(3, 3, &mut r),
    ];
    Net {
        input_shape: [2, 4, 4],
        num_classes: 3,
        nodes,
    }
}

/// The inputs of every node at `x` (pre-order, a block's main branch before its shortcut).
fn node_inputs(nodes: &[Node], mut x: Vec<f64>, out: &mut Vec<Vec<f64>>) -> Vec<f64> {
    for node in nodes {
        out.push(x.clone());
        x = match node {
            Node::Residual { main, shortcut } => {
                let a = node_inputs(main, x.clone(), out);
                let b = node_inputs(shortcut, x, out);
                a.iter().zip(&b).map(|(a, b)| a + b).collect()
            }
            other => oodcert::bounds::net::forward_nodes(std::slice::from_ref(other), x).unwrap(),
        };
    }
    x
}

/// The boxes of a trace in the same pre-order.
fn trace_boxes<'a>(traces: &'a [Trace], out: &mut Vec<&'a oodcert::bounds::Interval>) {
    for t in traces {
        out.push(t.input());
        if let Trace::Residual { main, shortcut, .. } = t {
            trace_boxes(main, out);
            trace_boxes(shortcut, out);
        }
    }
}

fn balls(net: &Net, seed: u64) -> Vec<Ball> {
    let mut r = rng(900 + seed);
    let x = random_image(net.input_dim(), &mut r);
    let mut v = Vec::new();
    for norm in [Norm::L2, Norm::Linf] {
        for eps in [0.02, 0.1, 0.4] {
            let eps = if norm == Norm::Linf { eps / 4.0 } else { eps };
            v.push(Ball::new(x.clone(), eps, norm, seed % 2 == 1).unwrap());
        }
    }
    v
}

/// (b) + (c): sampled gradients, difference quotients and node inputs.
#[test]
fn sampled_gradients_and_activations_stay_inside_the_bounds() {
    let mut strictly_tighter = 0;
    let mut cases = 0;
    for seed in 0..3u64 {
        for (name, net) in nets(seed) {
            for (bi, ball) in balls(&net, seed).into_iter().enumerate() {
                let pre = PRES[(seed as usize + bi) % 2];
                let (traces, logits) = pre_bounds(&net, &ball, pre).unwrap();
                let lp = masked_product(&net, &traces, ball.norm).unwrap().unwrap();
                let split = split_bound(
                    &net,
                    &traces,
                    neg_softmax_box(&logits, 1.0),
                    &lp.prefix,
                    ball.norm,
                )
                .unwrap();
                let fl =
                    fastlip_on(&net, &traces, logits.clone(), ball.norm, 1.0, Head::Box).unwrap();
                assert_eq!(fl.product_value, Some(lp.total));
                assert!(fl.value <= lp.total && fl.value <= split);
                let heads =
                    fastlip_heads_on(&net, &traces, logits.clone(), ball.norm, 1.0, Head::Box)
                        .unwrap();
                cases += 1;
                if fl.value < heads.value {
                    strictly_tighter += 1;
                }
                let mut boxes = Vec::new();
                trace_boxes(&traces, &mut boxes);
                let mut r = rng(1000 + seed * 31 + bi as u64);
                let mut pts: Vec<Vec<f64>> = vec![ball.center.clone()];
                pts.extend((0..2000).map(|_| sample_ball(&ball, &mut r)));
                let mut sg = Vec::with_capacity(pts.len());
                for p in &pts {
                    let mut ins = Vec::new();
                    let z = node_inputs(&net.nodes, p.clone(), &mut ins);
                    assert_eq!(ins.len(), boxes.len());
                    for (k, (v, b)) in ins.iter().zip(&boxes).enumerate() {
                        assert!(
                            b.contains(v),
                            "{name} seed {seed} {ball:?}: node input {k} outside its tightened box"
                        );
                    }
                    assert!(logits.contains(&z), "{name}: logits outside the logit box");
                    let (s, g) = score_and_grad(&net, p);
                    let gn = ball.norm.dual_norm(&g);
                    assert!(
                        gn <= lp.total * (1.0 + 1e-12) && gn <= split * (1.0 + 1e-12),
                        "{name} seed {seed} {:?} eps {}: ‖∇S‖ = {gn} > product {} or split {split}",
                        ball.norm,
                        ball.eps,
                        lp.total
                    );
                    sg.push((s, g));
                }
                let bound = lp.total.min(split);
                for _ in 0..2000 {
                    let (a, b) = (r.random_range(0..pts.len()), r.random_range(0..pts.len()));
                    let dx: Vec<f64> = pts[a].iter().zip(&pts[b]).map(|(u, v)| u - v).collect();
                    let dist = ball.norm.norm(&dx);
                    if dist > 1e-9 {
                        let q = (sg[a].0 - sg[b].0).abs() / dist;
                        assert!(q <= bound * (1.0 + 1e-9), "{name}: quotient {q} > {bound}");
                    }
                }
            }
        }
    }
    // Usefulness: the new bounds beat FastLip's box head on some balls.
    assert!(
        strictly_tighter * 4 >= cases,
        "product/split beat FastLip on only {strictly_tighter} of {cases} balls"
    );
}

/// (a): every Jacobian the traced boxes allow (all ReLU derivative patterns and max-pool
/// selections; their convex hull is the Clarke set) has every row's dual norm below the
/// product, and −Jᵀp for p at the logit-box corners below the split bound.
#[test]
fn every_allowed_pattern_stays_below_product_and_split() {
    let mut enumerated = 0;
    for seed in 0..4u64 {
        for (name, net) in nets(seed) {
            for ball in balls(&net, seed) {
                for pre in PRES {
                    let (traces, logits) = pre_bounds(&net, &ball, pre).unwrap();
                    let lp = masked_product(&net, &traces, ball.norm).unwrap().unwrap();
                    let split = split_bound(
                        &net,
                        &traces,
                        neg_softmax_box(&logits, 1.0),
                        &lp.prefix,
                        ball.norm,
                    )
                    .unwrap();
                    let k = net.num_classes;
                    let ps: Vec<Vec<f64>> = (0..1usize << k)
                        .map(|m| {
                            let z: Vec<f64> = (0..k)
                                .map(|i| {
                                    if m >> i & 1 == 1 {
                                        logits.hi[i]
                                    } else {
                                        logits.lo[i]
                                    }
                                })
                                .collect();
                            softmax(&z)
                        })
                        .collect();
                    let mut opts = Vec::new();
                    options(&net.nodes, &traces, &mut opts);
                    let n = for_each_pattern(&opts, 4096, |ch| {
                        let (c, row) = largest_jacobian_row(&net, ch, ball.norm);
                        assert!(
                            row <= lp.total * (1.0 + 1e-12),
                            "{name} seed {seed}: Jacobian row {c} norm {row} > product {}",
                            lp.total
                        );
                        for p in &ps {
                            let g = ball.norm.dual_norm(&grad_for(&net, ch, p));
                            assert!(g <= split * (1.0 + 1e-12), "{name}: {g} > split {split}");
                        }
                    });
                    if n.is_some() {
                        enumerated += 1;
                    }
                }
            }
        }
    }
    assert!(
        enumerated >= 40,
        "only {enumerated} balls small enough to enumerate"
    );
}

/// (d): the masked product never exceeds the global bound, equals the folded global product
/// when no neuron is dead (a huge ball), and is strictly below it on small balls.
#[test]
fn masked_product_never_exceeds_the_global_bound() {
    let mut below = 0;
    for seed in 0..3u64 {
        for (name, net) in nets(seed) {
            for norm in [Norm::L2, Norm::Linf] {
                let g = global_bound(&net, norm).unwrap();
                for eps in [1e-3, 0.05, 0.3, 1e6] {
                    let mut r = rng(77 + seed);
                    let x = random_image(net.input_dim(), &mut r);
                    let ball = Ball::new(x, eps, norm, false).unwrap();
                    for pre in PRES {
                        let (traces, _) = pre_bounds(&net, &ball, pre).unwrap();
                        let lp = masked_product(&net, &traces, norm).unwrap().unwrap();
                        assert!(
                            lp.total <= g.value,
                            "{name} {norm:?} eps {eps}: product {} > global {}",
                            lp.total,
                            g.value
                        );
                        if eps < 0.01 && lp.total < g.value {
                            below += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(
        below >= 30,
        "product strictly below global on only {below} balls"
    );
}

/// A node kind the walk does not know would give `None`; today every kind is known, and a
/// network whose every ReLU is dead on the ball has product 0 and split 0.
#[test]
fn dead_network_has_zero_product() {
    let mut net = tiny_lenet(3);
    // Push every pre-activation of the first ReLU far below zero.
    if let Node::Affine(a) = &mut net.nodes[1]
        && let LinearOp::Conv(_) = a.op
    {
        a.bias = a.bias.as_ref().map(|b| b.iter().map(|_| -1e3).collect());
    }
    let mut r = rng(5);
    let ball = Ball::new(random_image(net.input_dim(), &mut r), 0.1, Norm::L2, false).unwrap();
    let (traces, logits) = pre_bounds(&net, &ball, PreBounds::Ibp).unwrap();
    let lp = masked_product(&net, &traces, Norm::L2).unwrap().unwrap();
    // 0 up to the outward rounding of the products (next_up(0) is the smallest subnormal).
    assert!(lp.total < 1e-300, "{}", lp.total);
    let fl = fastlip_on(&net, &traces, logits, Norm::L2, 1.0, Head::Box).unwrap();
    assert!(fl.value < 1e-300, "{}", fl.value);
}
