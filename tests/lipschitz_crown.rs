//! CROWN soundness and usefulness: sampled and PGD points never leave the CROWN logit box or
//! the CROWN bounds on S; CROWN boxes are tighter than IBP on ℓ2 balls; FastLip with CROWN
//! pre-activation bounds stays above every empirical lower bound and below the IBP version.

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::crown::crown_trace;
use oodcert::bounds::ibp::ibp;
use oodcert::bounds::{Ball, Norm};
use oodcert::lipschitz::empirical::{
    GradOracle, PgdConfig, lower_by_pgd, lower_by_sampling, sample_ball,
};
use oodcert::lipschitz::local::{Head, PreBounds, fastlip_with};
use oodcert::lipschitz::radius::{energy_bounds_crown, energy_bounds_ibp, energy_bounds_with};
use oodcert::model::Arch;

fn width(b: &oodcert::bounds::Interval) -> f64 {
    b.lo.iter().zip(&b.hi).map(|(l, h)| h - l).sum()
}

#[test]
fn crown_boxes_contain_samples_and_beat_ibp() {
    for (arch, shape, max_dim) in [
        (
            Arch::Mlp {
                hidden: vec![20, 16],
            },
            [1, 4, 4],
            10_000,
        ),
        (Arch::Lenet, [1, 12, 12], 10_000),
        (Arch::Resnet18, [3, 8, 8], 64),
    ] {
        let (m, net) = model(arch.clone(), shape, 4, 51);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 64,
        };
        let d: usize = shape.iter().product();
        let mut r = rng(52);
        let big = matches!(arch, Arch::Resnet18);
        let (n_pts, steps) = if big { (10, 5) } else { (100, 20) };
        let norms: &[Norm] = if big {
            &[Norm::Linf]
        } else {
            &[Norm::L2, Norm::Linf]
        };
        for &norm in norms {
            let x = random_image(d, &mut r);
            let eps = if norm == Norm::L2 { 0.2 } else { 0.02 };
            let ball = Ball::new(x, eps, norm, true).unwrap();
            let (_, z_ibp) = ibp(&net.nodes, ball.to_box()).unwrap();
            let (_, z_crown) = crown_trace(&net.nodes, &ball, max_dim).unwrap();
            let pts: Vec<Vec<f64>> = (0..n_pts).map(|_| sample_ball(&ball, &mut r)).collect();
            for p in &pts {
                let z = net.forward(p).unwrap();
                assert!(
                    z_crown.contains(&z),
                    "{arch:?} {norm:?}: logits {z:?} outside CROWN box {z_crown:?}"
                );
            }
            if norm == Norm::L2 && !matches!(arch, Arch::Resnet18) {
                assert!(
                    width(&z_crown) < 0.9 * width(&z_ibp),
                    "{arch:?}: CROWN {} vs IBP {}",
                    width(&z_crown),
                    width(&z_ibp)
                );
            }
            let (lo, hi) = energy_bounds_crown(&net, &ball, 1.0, max_dim).unwrap();
            let (ilo, ihi) = energy_bounds_ibp(&net, &ball, 1.0).unwrap();
            assert!(lo >= ilo && hi <= ihi);
            let what = format!("{arch:?} {norm:?}, CROWN");
            assert_pgd_extremes_of_s_inside(&oracle, &ball, steps, (lo, hi), &mut r, &what);
        }
    }
}

/// α-CROWN's S bounds (its boxes, and its tangent-plane query): sampled S and PGD's extremes of S
/// stay inside, S_hi is never above CROWN's and strictly below it on most balls (LeNet and MLP,
/// ℓ2 and ℓ∞, with and without the pixel box).
#[test]
fn alpha_crown_energy_bounds_hold_and_tighten() {
    let (mut tighter, mut total) = (0, 0);
    for (arch, shape) in [
        (
            Arch::Mlp {
                hidden: vec![20, 16],
            },
            [1, 4, 4],
        ),
        (Arch::Lenet, [1, 12, 12]),
    ] {
        let (m, net) = model(arch.clone(), shape, 4, 71);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 64,
        };
        let d: usize = shape.iter().product();
        let mut r = rng(72);
        for (norm, eps) in [(Norm::L2, 0.3), (Norm::Linf, 0.03)] {
            for unit_box in [false, true] {
                let ball = Ball::new(random_image(d, &mut r), eps, norm, unit_box).unwrap();
                let crown = PreBounds::Crown { max_dim: 10_000 };
                let alpha = PreBounds::AlphaCrown {
                    max_dim: 10_000,
                    iters: 10,
                };
                let (clo, chi) = energy_bounds_with(&net, &ball, 1.0, crown).unwrap();
                let (lo, hi) = energy_bounds_with(&net, &ball, 1.0, alpha).unwrap();
                let what = format!("{arch:?} {norm:?} box {unit_box}");
                assert!(
                    lo >= clo && hi <= chi,
                    "{what}: α [{lo}, {hi}] vs CROWN [{clo}, {chi}]"
                );
                for p in (0..200).map(|_| sample_ball(&ball, &mut r)) {
                    let s = oodcert::bounds::energy::energy(&net.forward(&p).unwrap(), 1.0);
                    assert!(lo <= s && s <= hi, "{what}: S = {s} outside [{lo}, {hi}]");
                }
                assert_pgd_extremes_of_s_inside(&oracle, &ball, 20, (lo, hi), &mut r, &what);
                total += 1;
                tighter += usize::from(hi < chi - 1e-9 * chi.abs().max(1.0));
            }
        }
    }
    assert!(
        tighter * 2 > total,
        "α-CROWN lowered S_hi on {tighter} of {total} balls"
    );
}

#[test]
fn fastlip_with_crown_is_sound_and_tighter() {
    for (arch, shape) in [
        (
            Arch::Mlp {
                hidden: vec![20, 16],
            },
            [1, 4, 4],
        ),
        (Arch::Lenet, [1, 12, 12]),
    ] {
        let (m, net) = model(arch.clone(), shape, 4, 61);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 64,
        };
        let d: usize = shape.iter().product();
        let mut r = rng(62);
        for norm in [Norm::L2, Norm::Linf] {
            for eps in [0.01, 0.1] {
                let x = random_image(d, &mut r);
                let ball = Ball::new(x, eps, norm, false).unwrap();
                let lo = lower_by_sampling(&oracle, &ball, 32, &mut r).unwrap().max(
                    lower_by_pgd(
                        &oracle,
                        &ball,
                        &PgdConfig {
                            steps: 8,
                            restarts: 2,
                            ..Default::default()
                        },
                        &mut r,
                    )
                    .unwrap(),
                );
                let ibp_l = fastlip_with(&net, &ball, 1.0, Head::Simplex, PreBounds::Ibp)
                    .unwrap()
                    .value;
                let crown_l = fastlip_with(
                    &net,
                    &ball,
                    1.0,
                    Head::Simplex,
                    PreBounds::Crown { max_dim: 10_000 },
                )
                .unwrap()
                .value;
                assert!(
                    lo <= crown_l,
                    "{arch:?} {norm:?} {eps}: lower {lo} > CROWN-FastLip {crown_l}"
                );
                assert!(crown_l <= ibp_l, "{arch:?}: CROWN {crown_l} > IBP {ibp_l}");
            }
        }
    }
}

/// A small dense residual network: Dense, ReLU, [identity block], ReLU, [projection block],
/// ReLU, Dense — random weights, so CROWN inside residual blocks can be checked cheaply.
fn residual_net(d: usize, h: usize, k: usize, seed: u64) -> oodcert::bounds::Net {
    use oodcert::bounds::dense::Dense;
    use oodcert::bounds::{Affine, LinearOp, Net, Node};
    use rand::Rng;
    let mut r = rng(seed);
    let mut dense = |name: &str, inp: usize, out: usize| {
        let s = (2.0 / inp as f64).sqrt();
        Node::Affine(Affine {
            name: name.into(),
            op: LinearOp::Dense(Dense {
                out,
                inp,
                w: (0..out * inp).map(|_| r.random_range(-s..s)).collect(),
            }),
            bias: Some((0..out).map(|_| r.random_range(-0.3..0.3)).collect()),
        })
    };
    let nodes = vec![
        dense("in", d, h),
        Node::Relu,
        Node::Residual {
            main: vec![dense("b1a", h, h), Node::Relu, dense("b1b", h, h)],
            shortcut: vec![],
        },
        Node::Relu,
        Node::Residual {
            main: vec![dense("b2a", h, h), Node::Relu, dense("b2b", h, h)],
            shortcut: vec![dense("b2s", h, h)],
        },
        Node::Relu,
        dense("out", h, k),
    ];
    Net {
        input_shape: [1, 1, d],
        num_classes: k,
        nodes,
    }
}

/// Every node input reached from `x` lies in its traced box (recursing into residual blocks);
/// returns the output.
fn check_inside(
    nodes: &[oodcert::bounds::Node],
    traces: &[oodcert::bounds::Trace],
    mut x: Vec<f64>,
) -> Vec<f64> {
    use oodcert::bounds::{Node, Trace};
    for (node, t) in nodes.iter().zip(traces) {
        assert!(t.input().contains(&x), "{x:?} outside {:?}", t.input());
        x = match (node, t) {
            (
                Node::Residual { main, shortcut },
                Trace::Residual {
                    main: tm,
                    shortcut: ts,
                    ..
                },
            ) => {
                let a = check_inside(main, tm, x.clone());
                let b = check_inside(shortcut, ts, x);
                a.iter().zip(&b).map(|(a, b)| a + b).collect()
            }
            _ => oodcert::bounds::net::forward_nodes(std::slice::from_ref(node), x).unwrap(),
        };
    }
    x
}

/// The ReLU input boxes inside residual branches, in order; with `reibp`, the boxes IBP gives
/// inside each block from the traced block input (CROWN outside, IBP inside: the old rule).
fn inner_relu_boxes(
    nodes: &[oodcert::bounds::Node],
    traces: &[oodcert::bounds::Trace],
    inside: bool,
    reibp: bool,
    out: &mut Vec<oodcert::bounds::Interval>,
) {
    use oodcert::bounds::{Node, Trace};
    for (node, t) in nodes.iter().zip(traces) {
        match (node, t) {
            (Node::Relu, t) if inside => out.push(t.input().clone()),
            (
                Node::Residual { main, shortcut },
                Trace::Residual {
                    main: tm,
                    shortcut: ts,
                    ..
                },
            ) => {
                let (tm2, ts2);
                let (tm, ts) = if reibp {
                    tm2 = ibp(main, t.input().clone()).unwrap().0;
                    ts2 = ibp(shortcut, t.input().clone()).unwrap().0;
                    (&tm2, &ts2)
                } else {
                    (tm, ts)
                };
                inner_relu_boxes(main, tm, true, false, out);
                inner_relu_boxes(shortcut, ts, true, false, out);
            }
            _ => {}
        }
    }
}

/// Projected ascent with central finite differences on a tiny network: max of `f` over the ball.
fn pgd_max(ball: &Ball, f: &dyn Fn(&[f64]) -> f64, starts: &[Vec<f64>]) -> f64 {
    let mut best = f64::NEG_INFINITY;
    for s in starts {
        let mut x = s.clone();
        for step in 0..40 {
            let h = 1e-6;
            let g: Vec<f64> = (0..x.len())
                .map(|i| {
                    let mut a = x.clone();
                    let mut b = x.clone();
                    a[i] += h;
                    b[i] -= h;
                    (f(&a) - f(&b)) / (2.0 * h)
                })
                .collect();
            let size = ball.eps * 0.3 * 0.93f64.powi(step);
            let dir: Vec<f64> = match ball.norm {
                Norm::Linf => g.iter().map(|v| v.signum()).collect(),
                Norm::L2 => {
                    let n = g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
                    g.iter().map(|v| v / n).collect()
                }
            };
            x.iter_mut().zip(&dir).for_each(|(x, d)| *x += size * d);
            ball.project(&mut x);
            best = best.max(f(&x));
        }
    }
    best
}

/// CROWN through residual joins: sampled and PGD points never leave the CROWN boxes (inner ReLU
/// inputs, logits) or the CROWN bounds on S; inside the blocks CROWN is strictly narrower than
/// IBP on most neurons for ℓ2 balls (so a regression to IBP inside the blocks fails here).
#[test]
fn crown_inside_residual_blocks_is_sound_and_tighter() {
    let (d, h, k) = (6, 12, 4);
    let mut narrower = 0usize;
    let mut total = 0usize;
    for seed in 0..4u64 {
        let net = residual_net(d, h, k, 300 + seed);
        let mut r = rng(400 + seed);
        for norm in [Norm::L2, Norm::Linf] {
            let x = random_image(d, &mut r);
            let eps = if norm == Norm::L2 { 0.3 } else { 0.1 };
            let ball = Ball::new(x.clone(), eps, norm, seed % 2 == 1).unwrap();
            let (t_ibp, z_ibp) = ibp(&net.nodes, ball.to_box()).unwrap();
            let (t_crown, z_crown) = crown_trace(&net.nodes, &ball, 10_000).unwrap();
            for _ in 0..2000 {
                let p = sample_ball(&ball, &mut r);
                let z = check_inside(&net.nodes, &t_crown, p);
                assert!(z_crown.contains(&z), "logits {z:?} outside {z_crown:?}");
            }
            let starts: Vec<Vec<f64>> = (0..3).map(|_| sample_ball(&ball, &mut r)).collect();
            for j in 0..k {
                let up = pgd_max(&ball, &|p| net.forward(p).unwrap()[j], &starts);
                let down = -pgd_max(&ball, &|p| -net.forward(p).unwrap()[j], &starts);
                assert!(
                    z_crown.lo[j] <= down && up <= z_crown.hi[j],
                    "seed {seed} {norm:?} logit {j}: PGD [{down}, {up}] outside [{}, {}]",
                    z_crown.lo[j],
                    z_crown.hi[j]
                );
            }
            let s = |p: &[f64]| {
                let z = net.forward(p).unwrap();
                let m = z.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
                -(m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln())
            };
            let (lo, hi) = energy_bounds_crown(&net, &ball, 1.0, 10_000).unwrap();
            let smax = pgd_max(&ball, &s, &starts);
            let smin = -pgd_max(&ball, &|p| -s(p), &starts);
            assert!(
                lo <= smin && smax <= hi,
                "S: PGD [{smin}, {smax}] outside [{lo}, {hi}]"
            );
            let (mut bi, mut bo, mut bc) = (Vec::new(), Vec::new(), Vec::new());
            inner_relu_boxes(&net.nodes, &t_ibp, false, false, &mut bi);
            inner_relu_boxes(&net.nodes, &t_crown, false, true, &mut bo);
            inner_relu_boxes(&net.nodes, &t_crown, false, false, &mut bc);
            assert_eq!((bi.len(), bo.len(), bc.len()), (2, 2, 2));
            for (a, b) in bi.iter().zip(&bc) {
                for j in 0..a.len() {
                    assert!(b.hi[j] - b.lo[j] <= a.hi[j] - a.lo[j]);
                }
            }
            // Against CROWN outside / IBP inside the blocks (the rule before this change).
            for (a, b) in bo.iter().zip(&bc) {
                for j in 0..a.len() {
                    let (wi, wc) = (a.hi[j] - a.lo[j], b.hi[j] - b.lo[j]);
                    assert!(wc <= wi, "CROWN width {wc} > IBP {wi}");
                    if norm == Norm::L2 {
                        total += 1;
                        narrower += (wc < 0.999 * wi) as usize;
                    }
                }
            }
            assert!(width(&z_crown) <= width(&z_ibp));
        }
    }
    assert!(
        2 * narrower > total,
        "CROWN narrower than IBP-inside on only {narrower} of {total} inner neurons"
    );
}
