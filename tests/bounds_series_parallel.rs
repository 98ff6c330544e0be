//! Soundness of the bound rules of the series-parallel node kinds (channel concatenation,
//! general max-pool, general average pool, zero padding; issue #13 part B) on random small
//! networks built directly as `Net` values: the maps against direct formulas; IBP and CROWN
//! boxes enclose dense samples (also inside branches); every admissible ReLU / max-pool pattern's
//! gradient lies in the FastLip, RecurJac and Jacobian-LBP boxes and below their values;
//! sampled gradient norms stay below every local bound, branch and bound included, and below
//! the global bound, which is tight where the overlap and concatenation factors matter; the
//! float32 error bound holds against a float32 evaluation.

mod recurjac_nets;
use recurjac_nets::*;

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::avg_pool::AvgPool;
use oodcert::bounds::crown::{CrownBudget, crown_box, crown_lower, crown_trace, crown_trace_with};
use oodcert::bounds::dense::Dense;
use oodcert::bounds::f32_forward::{F32Plan, f32_walk};
use oodcert::bounds::ibp::{Trace, ibp};
use oodcert::bounds::net::{Affine, LinearOp, forward_nodes};
use oodcert::bounds::pad::Pad;
use oodcert::bounds::pool_geometry::PoolGeometry;
use oodcert::bounds::{Ball, Interval, LinearMap, Net, Node, Norm};
use oodcert::error::Error;
use oodcert::lipschitz::bab::point_grad::score_grad;
use oodcert::lipschitz::bab::{BabConfig, lipschitz_bab};
use oodcert::lipschitz::empirical::sample_ball;
use oodcert::lipschitz::global::global_bound;
use oodcert::lipschitz::jacobian_lbp::{LbpConfig, jacobian_lbp};
use oodcert::lipschitz::local::{Head, PreBounds, fastlip_with, pre_bounds};
use oodcert::lipschitz::recurjac::recurjac_with;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const PRES: [PreBounds; 2] = [PreBounds::Ibp, PreBounds::Crown { max_dim: 10_000 }];

fn geo(c: usize, h: usize, k: usize, s: usize, p: usize) -> PoolGeometry {
    PoolGeometry::square(c, h, h, k, s, p)
}

fn linear(name: &str, op: LinearOp) -> Node {
    Node::Affine(Affine {
        name: name.into(),
        op,
        bias: None,
    })
}

/// 1×5×5 → conv3 (2 ch, pad 1) → ReLU → Concat{identity | conv3 (1 ch, pad 1) → ReLU}
/// (3×5×5) → max-pool k3 s2 p1 (overlapping, padded; 3×3×3) → dense 27 → 3.
fn concat_net(seed: u64) -> Net {
    let mut r = rng(seed);
    let (c1, _) = conv(1, 2, 3, 1, 1, 5, &mut r);
    let (c2, _) = conv(2, 1, 3, 1, 1, 5, &mut r);
    let nodes = vec![
        c1,
        Node::Relu,
        Node::Concat {
            branches: vec![vec![], vec![c2, Node::Relu]],
        },
        Node::from(geo(3, 5, 3, 2, 1)),
        dense(27, 3, &mut r),
    ];
    Net {
        input_shape: [1, 5, 5],
        num_classes: 3,
        nodes,
    }
}

/// 1×6×6 → conv3 (2 ch) → ReLU (2×4×4) → avg-pool k3 s1 p1 without the padding in the count
/// → Pad (top 1, right 1; 2×5×5) → max-pool k2 s1 (overlap, 2×4×4) → ReLU → avg-pool k2 s2 p1
/// with the padding counted (2×3×3) → dense 18 → 3.
fn pool_net(seed: u64) -> Net {
    let mut r = rng(seed);
    let (c1, _) = conv(1, 2, 3, 1, 0, 6, &mut r);
    let nodes = vec![
        c1,
        Node::Relu,
        linear(
            "avgpool",
            LinearOp::AvgPool(AvgPool::new(geo(2, 4, 3, 1, 1), false).unwrap()),
        ),
        linear(
            "pad",
            LinearOp::Pad(Pad {
                c: 2,
                h: 4,
                w: 4,
                top: 1,
                bottom: 0,
                left: 0,
                right: 1,
            }),
        ),
        Node::from(geo(2, 5, 2, 1, 0)),
        Node::Relu,
        linear(
            "avgpool2",
            LinearOp::AvgPool(AvgPool::new(geo(2, 4, 2, 2, 1), true).unwrap()),
        ),
        dense(18, 3, &mut r),
    ];
    Net {
        input_shape: [1, 6, 6],
        num_classes: 3,
        nodes,
    }
}

/// 2×4×4 → Residual{ main: Concat{conv3 (1 ch) | conv3 (1 ch) → ReLU → conv1 (1 ch)} (2×4×4),
/// shortcut: identity } → ReLU → Concat{identity | Concat{max-pool k3 s1 p1 | identity}}
/// (6×4×4) → max-pool 2×2 → dense 24 → 3. Nested concatenations inside and after a block.
fn residual_concat_net(seed: u64) -> Net {
    let mut r = rng(seed);
    let (a, _) = conv(2, 1, 3, 1, 1, 4, &mut r);
    let (b, _) = conv(2, 1, 3, 1, 1, 4, &mut r);
    let (c, _) = conv(1, 1, 1, 1, 0, 4, &mut r);
    let nodes = vec![
        Node::Residual {
            main: vec![Node::Concat {
                branches: vec![vec![a], vec![b, Node::Relu, c]],
            }],
            shortcut: vec![],
        },
        Node::Relu,
        Node::Concat {
            branches: vec![
                vec![],
                vec![Node::Concat {
                    branches: vec![vec![Node::from(geo(2, 4, 3, 1, 1))], vec![]],
                }],
            ],
        },
        Node::MaxPool2 { c: 6, h: 4, w: 4 },
        dense(24, 3, &mut r),
    ];
    Net {
        input_shape: [2, 4, 4],
        num_classes: 3,
        nodes,
    }
}

fn nets(seed: u64) -> Vec<(&'static str, Net)> {
    vec![
        ("concat", concat_net(seed)),
        ("pools", pool_net(seed + 1)),
        ("residual+concat", residual_concat_net(seed + 2)),
    ]
}

/// The padded image of a `(c, h, w)` input (value `fill` in the padding) and its side.
fn padded(x: &[f64], g: &PoolGeometry, fill: f64) -> (Vec<f64>, usize, usize) {
    let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
    let mut v = vec![fill; g.c * hp * wp];
    for ch in 0..g.c {
        for i in 0..g.h {
            for j in 0..g.w {
                v[ch * hp * wp + (i + g.ph) * wp + j + g.pw] = x[ch * g.h * g.w + i * g.w + j];
            }
        }
    }
    (v, hp, wp)
}

/// Pooling by the definition: every kernel position on the padded image.
fn pool_reference(x: &[f64], g: &PoolGeometry, how: &str) -> Vec<f64> {
    let fill = if how == "max" { f64::NEG_INFINITY } else { 0.0 };
    let (v, hp, wp) = padded(x, g, fill);
    let (ho, wo) = ((hp - g.kh) / g.sh + 1, (wp - g.kw) / g.sw + 1);
    let mut out = Vec::new();
    for ch in 0..g.c {
        for i in 0..ho {
            for j in 0..wo {
                let mut vals = Vec::new();
                let mut real = 0;
                for a in 0..g.kh {
                    for b in 0..g.kw {
                        let (r, c) = (i * g.sh + a, j * g.sw + b);
                        vals.push(v[ch * hp * wp + r * wp + c]);
                        let inside = r >= g.ph && r < g.ph + g.h && c >= g.pw && c < g.pw + g.w;
                        real += usize::from(inside);
                    }
                }
                out.push(match how {
                    "max" => vals.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v)),
                    "avg-include" => vals.iter().sum::<f64>() / (g.kh * g.kw) as f64,
                    _ => vals.iter().sum::<f64>() / real as f64,
                });
            }
        }
    }
    out
}

/// Max-pool, both average pools and the padding against their definitions on random inputs
/// and geometries (overlap, padding, rectangular), and ⟨Ax, y⟩ = ⟨x, Aᵀy⟩ for the linear ones.
#[test]
fn pool_and_pad_maps_match_their_definitions() {
    let mut r = rng(1);
    for (h, w, kh, kw, sh, sw, ph, pw) in [
        (5, 5, 3, 3, 2, 2, 1, 1),
        (6, 5, 2, 3, 1, 2, 0, 1),
        (4, 4, 3, 3, 1, 1, 1, 1),
        (7, 6, 3, 2, 3, 2, 1, 0),
        (4, 4, 2, 2, 2, 2, 0, 0),
    ] {
        let g = PoolGeometry {
            c: 2,
            h,
            w,
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
        };
        let x: Vec<f64> = (0..2 * h * w)
            .map(|_| r.random::<f64>() * 2.0 - 1.0)
            .collect();
        let got = forward_nodes(&[Node::from(g)], x.clone()).unwrap();
        assert_eq!(got, pool_reference(&x, &g, "max"), "max-pool {g:?}");
        for include in [true, false] {
            let p = AvgPool::new(g, include).unwrap();
            let want = pool_reference(&x, &g, if include { "avg-include" } else { "avg" });
            let got = p.apply(&x, false);
            assert_eq!(got.len(), want.len());
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-15,
                    "avg-pool {g:?} {include}: {a} vs {b}"
                );
            }
            let y: Vec<f64> = (0..want.len()).map(|_| r.random::<f64>()).collect();
            let lhs: f64 = got.iter().zip(&y).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(p.apply_t(&y, false)).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() <= 1e-13, "avg-pool adjoint {g:?}");
        }
        let pad = Pad {
            c: 2,
            h,
            w,
            top: ph,
            bottom: sh,
            left: pw,
            right: 0,
        };
        let y = pad.apply(&x, false);
        let (hp, wp) = pad.out_hw();
        for ch in 0..2 {
            for i in 0..hp {
                for j in 0..wp {
                    let inside = i >= ph && i < ph + h && j >= pw && j < pw + w;
                    let want = if inside {
                        x[ch * h * w + (i - ph) * w + j - pw]
                    } else {
                        0.0
                    };
                    assert_eq!(y[ch * hp * wp + i * wp + j], want);
                }
            }
        }
    }
    // The global pool is the old mean over h·w.
    let p = AvgPool::global(3, 2, 5);
    let x: Vec<f64> = (0..30).map(|v| v as f64).collect();
    assert_eq!(p.apply(&x, false), vec![4.5, 14.5, 24.5]);
}

/// A bad geometry is a one-line bad-input error from the forward pass, IBP and the global bound,
/// never a panic.
#[test]
fn invalid_pool_geometry_is_bad_input() {
    let bad = Node::from(geo(1, 4, 2, 2, 2));
    let net = Net {
        input_shape: [1, 4, 4],
        num_classes: 1,
        nodes: vec![bad.clone()],
    };
    let err = net.forward(&[0.0; 16]).unwrap_err();
    assert!(matches!(err, Error::BadInput(_)), "{err}");
    assert!(!err.to_string().contains('\n'));
    let err = ibp(&[bad], Interval::point(&[0.0; 16])).unwrap_err();
    assert!(matches!(err, Error::BadInput(_)), "{err}");
    let err = global_bound(&net, Norm::L2).unwrap_err();
    assert!(matches!(err, Error::BadInput(_)), "{err}");
    assert!(AvgPool::new(geo(1, 4, 0, 1, 0), true).is_err());
}

/// Asserts that every node input (inside branches too) at x lies in the traced box.
fn check_inside(nodes: &[Node], traces: &[Trace], mut x: Vec<f64>, what: &str) -> Vec<f64> {
    assert_eq!(nodes.len(), traces.len(), "{what}: trace length");
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
            (Node::Concat { branches }, Trace::Concat { branches: tb, .. }) => {
                assert_eq!(branches.len(), tb.len());
                let mut out = Vec::new();
                for (b, t) in branches.iter().zip(tb) {
                    out.extend(check_inside(b, t, x.clone(), what));
                }
                out
            }
            _ => forward_nodes(std::slice::from_ref(node), x).unwrap(),
        };
    }
    x
}

/// The ball's samples: uniform points, and points pushed to the boundary (ℓ∞ corners, ℓ2
/// sphere).
fn samples(ball: &Ball, n: usize, r: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    (0..n)
        .map(|i| {
            let mut x = sample_ball(ball, r);
            if i % 2 == 1 {
                let d: Vec<f64> = x.iter().zip(&ball.center).map(|(a, c)| a - c).collect();
                let nrm = match ball.norm {
                    Norm::Linf => d.iter().fold(0.0f64, |m, v| m.max(v.abs())),
                    Norm::L2 => d.iter().map(|v| v * v).sum::<f64>().sqrt(),
                };
                if nrm > 0.0 {
                    x = match ball.norm {
                        Norm::Linf => ball
                            .center
                            .iter()
                            .zip(&d)
                            .map(|(c, v)| c + ball.eps * v.signum())
                            .collect(),
                        Norm::L2 => ball
                            .center
                            .iter()
                            .zip(&d)
                            .map(|(c, v)| c + ball.eps * v / nrm * (1.0 - 1e-12))
                            .collect(),
                    };
                    ball.project(&mut x);
                }
            }
            x
        })
        .collect()
}

/// Projected gradient descent on qᵀf(x) over the ball (exact gradient Jᵀq of the linear piece
/// at x, steps of the ball's geometry, shrinking): the smallest value found.
fn pgd_min(net: &Net, ball: &Ball, q: &[f64], start: Vec<f64>, steps: usize) -> f64 {
    let value = |x: &[f64]| -> f64 {
        let z = net.forward(x).unwrap();
        q.iter().zip(&z).map(|(a, b)| a * b).sum()
    };
    let mut x = start;
    let mut best = value(&x);
    for s in 0..steps {
        let mut rec = Vec::new();
        forward_record(&net.nodes, x.clone(), &mut rec);
        let mut end = rec.len();
        let g = backward_choices(&net.nodes, &rec, &mut end, q.to_vec(), net.input_dim());
        let step = ball.eps * 0.5 * (1.0 - s as f64 / steps as f64) + 1e-9;
        let dir: Vec<f64> = match ball.norm {
            Norm::Linf => g.iter().map(|v| -v.signum()).collect(),
            Norm::L2 => {
                let n = g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
                g.iter().map(|v| -v / n).collect()
            }
        };
        let mut y: Vec<f64> = x.iter().zip(&dir).map(|(a, d)| a + step * d).collect();
        ball.project(&mut y);
        x = y;
        best = best.min(value(&x));
    }
    best
}

/// IBP and CROWN traces (CROWN also inside residual and concatenation branches) enclose every
/// node input at 400 samples of ℓ2 and ℓ∞ balls; the pure CROWN logit box on IBP's traces
/// encloses the sampled logits, random CROWN queries lower-bound the sampled values, and the
/// CROWN-tightened logit box is strictly narrower than IBP's on most configurations; PGD on
/// every query row and on both signs of every logit stays within the CROWN bounds.
#[test]
fn ibp_and_crown_enclose_dense_samples() {
    let (mut tighter, mut total) = (0, 0);
    for seed in 0..4u64 {
        for (name, net) in nets(10 + seed) {
            let mut r = rng(20 + seed);
            let x = random_image(net.input_dim(), &mut r);
            for norm in [Norm::L2, Norm::Linf] {
                let eps = if norm == Norm::L2 { 0.15 } else { 0.04 };
                let ball = Ball::new(x.clone(), eps, norm, seed % 2 == 1).unwrap();
                let (ti, li) = ibp(&net.nodes, ball.to_box()).unwrap();
                let (tc, lc) = crown_trace(&net.nodes, &ball, 10_000).unwrap();
                let pure = crown_box(&net.nodes, &ti, &ball, 3).unwrap();
                let queries: Vec<Vec<f64>> = (0..4)
                    .map(|_| (0..3).map(|_| r.random::<f64>() * 2.0 - 1.0).collect())
                    .collect();
                let lows = crown_lower(&net.nodes, &tc, &ball, queries.clone()).unwrap();
                for x in samples(&ball, 400, &mut r) {
                    let what = format!("{name} seed {seed} {norm:?}");
                    let z = check_inside(&net.nodes, &ti, x.clone(), &format!("IBP {what}"));
                    check_inside(&net.nodes, &tc, x.clone(), &format!("CROWN {what}"));
                    assert_eq!(z, net.forward(&x).unwrap());
                    for (k, zk) in z.iter().enumerate() {
                        assert!(li.lo[k] <= *zk && *zk <= li.hi[k], "IBP logits {what}");
                        assert!(lc.lo[k] <= *zk && *zk <= lc.hi[k], "CROWN logits {what}");
                        assert!(
                            pure.lo[k] <= *zk && *zk <= pure.hi[k],
                            "pure CROWN logit {k} {what}: {zk} not in [{}, {}]",
                            pure.lo[k],
                            pure.hi[k]
                        );
                    }
                    for (q, low) in queries.iter().zip(&lows) {
                        let v: f64 = q.iter().zip(&z).map(|(a, b)| a * b).sum();
                        assert!(*low <= v, "CROWN query {what}: {low} > {v}");
                    }
                }
                let what = format!("{name} seed {seed} {norm:?}");
                for (q, low) in queries.iter().zip(&lows) {
                    let m = pgd_min(&net, &ball, q, x.clone(), 40);
                    assert!(*low <= m, "CROWN query vs PGD {what}: {low} > {m}");
                }
                for k in 0..3 {
                    let mut e = vec![0.0; 3];
                    e[k] = 1.0;
                    let lo = pgd_min(&net, &ball, &e, x.clone(), 40);
                    e[k] = -1.0;
                    let hi = -pgd_min(&net, &ball, &e, x.clone(), 40);
                    assert!(lc.lo[k] <= lo && hi <= lc.hi[k], "logit {k} vs PGD {what}");
                    assert!(
                        pure.lo[k] <= lo && hi <= pure.hi[k],
                        "pure CROWN vs PGD {what}"
                    );
                }
                let width = |b: &Interval| (0..3).map(|k| b.hi[k] - b.lo[k]).sum::<f64>();
                assert!(width(&lc) <= width(&li));
                total += 1;
                tighter += usize::from(width(&lc) < 0.999 * width(&li));
            }
        }
    }
    assert!(
        tighter * 2 >= total,
        "CROWN tighter on {tighter} of {total}"
    );
}

/// 1×7×7 → conv3 (3 ch, pad 1) → ReLU → max-pool k3 s2 p1 (overlapping, padded; 3×4×4) →
/// conv3 (4 ch, pad 1) → ReLU → max-pool 2×2 (4×2×2) → dense 16 → 12 → ReLU → dense 12 → 3: a
/// flat LeNet-like network on which α-CROWN optimises every kind of relaxation it has.
fn flat_pool_net(seed: u64) -> Net {
    let mut r = rng(seed);
    let (c1, _) = conv(1, 3, 3, 1, 1, 7, &mut r);
    let (c2, _) = conv(3, 4, 3, 1, 1, 4, &mut r);
    let nodes = vec![
        c1,
        Node::Relu,
        Node::from(geo(3, 7, 3, 2, 1)),
        c2,
        Node::Relu,
        Node::MaxPool2 { c: 4, h: 4, w: 4 },
        dense(16, 12, &mut r),
        Node::Relu,
        dense(12, 3, &mut r),
    ];
    Net {
        input_shape: [1, 7, 7],
        num_classes: 3,
        nodes,
    }
}

/// α-CROWN (optimised ReLU slopes and max-pool upper planes) on flat networks with overlapping,
/// padded and 2×2 max-pools, average pools and padding: every node input box encloses 400
/// samples of ℓ2 and ℓ∞ balls (± the pixel box) and PGD's extremes of every sign-uncertain ReLU
/// input, and lies inside CROWN's box; on the LeNet-like net the sign-uncertain entries of the
/// ReLU inputs after the first ReLU are ≥ 0.5 % narrower in sum than CROWN's (0.7–3.6 %) on
/// every configuration.
#[test]
fn alpha_crown_boxes_enclose_samples_and_beat_crown() {
    let (mut tighter, mut total) = (0, 0);
    for seed in 0..3u64 {
        for (name, net) in [
            ("flat pools", flat_pool_net(40 + seed)),
            ("pools", pool_net(50 + seed)),
        ] {
            let mut r = rng(60 + seed);
            let x = random_image(net.input_dim(), &mut r);
            for norm in [Norm::L2, Norm::Linf] {
                let eps = if norm == Norm::L2 { 0.3 } else { 0.08 };
                let ball = Ball::new(x.clone(), eps, norm, seed % 2 == 1).unwrap();
                let what = format!("{name} seed {seed} {norm:?}");
                let plain = CrownBudget::with_max_dim(10_000);
                let alpha = CrownBudget {
                    alpha_iters: 10,
                    ..plain
                };
                let (tc, lc) = crown_trace_with(&net.nodes, &ball, &plain).unwrap();
                let (ta, la) = crown_trace_with(&net.nodes, &ball, &alpha).unwrap();
                for x in samples(&ball, 400, &mut r) {
                    let z = check_inside(&net.nodes, &ta, x.clone(), &format!("α-CROWN {what}"));
                    assert!(la.contains(&z), "α-CROWN logits {what}");
                }
                let (mut wa, mut wc) = (0.0, 0.0);
                for (i, (a, c)) in ta.iter().zip(&tc).enumerate() {
                    let (a, c) = (a.input(), c.input());
                    for j in 0..a.len() {
                        assert!(
                            c.lo[j] <= a.lo[j] && a.hi[j] <= c.hi[j],
                            "{what}: node {i} entry {j}: α-CROWN [{}, {}] outside CROWN [{}, {}]",
                            a.lo[j],
                            a.hi[j],
                            c.lo[j],
                            c.hi[j]
                        );
                    }
                    if !matches!(net.nodes[i], Node::Relu) {
                        continue;
                    }
                    if net.nodes[..i].iter().any(|n| matches!(n, Node::Relu)) {
                        // The entries α-CROWN works on: sign-uncertain in CROWN's box.
                        for j in (0..c.len()).filter(|&j| c.lo[j] < 0.0 && c.hi[j] > 0.0) {
                            wa += a.hi[j] - a.lo[j];
                            wc += c.hi[j] - c.lo[j];
                        }
                    }
                    // PGD on both signs of every sign-uncertain entry of this ReLU input.
                    let prefix = Net {
                        nodes: net.nodes[..i].to_vec(),
                        num_classes: a.len(),
                        ..net.clone()
                    };
                    for j in (0..a.len()).filter(|&j| a.lo[j] < 0.0 && a.hi[j] > 0.0) {
                        let mut e = vec![0.0; a.len()];
                        e[j] = 1.0;
                        let lo = pgd_min(&prefix, &ball, &e, x.clone(), 30);
                        e[j] = -1.0;
                        let hi = -pgd_min(&prefix, &ball, &e, x.clone(), 30);
                        assert!(
                            a.lo[j] <= lo && hi <= a.hi[j],
                            "{what}: node {i} entry {j}: PGD [{lo}, {hi}] outside [{}, {}]",
                            a.lo[j],
                            a.hi[j]
                        );
                    }
                }
                assert!(la.lo.iter().zip(&lc.lo).all(|(a, c)| a >= c));
                if name == "flat pools" {
                    total += 1;
                    tighter += usize::from(wa < 0.995 * wc);
                }
            }
        }
    }
    assert!(
        tighter == total,
        "α-CROWN tighter on {tighter} of {total} configurations of the flat LeNet-like net"
    );
}

/// Softmax at the corners of the logit box and at random points of it.
fn probabilities(logits: &Interval, r: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    let k = logits.len();
    let mut ps: Vec<Vec<f64>> = (0..1usize << k)
        .map(|mask| {
            let z: Vec<f64> = (0..k)
                .map(|i| {
                    if mask >> i & 1 == 1 {
                        logits.hi[i]
                    } else {
                        logits.lo[i]
                    }
                })
                .collect();
            softmax(&z)
        })
        .collect();
    for _ in 0..6 {
        let z: Vec<f64> = (0..k)
            .map(|i| r.random_range(logits.lo[i]..=logits.hi[i]))
            .collect();
        ps.push(softmax(&z));
    }
    ps
}

/// Every ReLU derivative pattern and max-pool route (overlapping windows choose independently)
/// that the traced boxes allow, with p at the logit-box corners and random points, gives a
/// gradient −Jᵀp inside the FastLip and RecurJac boxes and with ‖·‖_q below both values. (The
/// gradient set is a multilinear image of a product of simplices: these vertices cover its
/// convex hull. Jacobian LBP ties a ReLU's derivative to its pre-activation value, so it only
/// bounds consistent patterns: it is checked at sampled points below.)
#[test]
fn every_pattern_gradient_lies_in_the_local_boxes() {
    let (mut configs, mut multi, mut pool_free) = (0, 0, 0);
    let mut per_net = std::collections::BTreeMap::new();
    for seed in 0..3u64 {
        for (name, net) in nets(40 + seed) {
            let mut r = rng(50 + seed);
            let x = random_image(net.input_dim(), &mut r);
            for norm in [Norm::L2, Norm::Linf] {
                for eps in [0.002, 0.006, 0.02] {
                    let eps = if norm == Norm::Linf { eps / 3.0 } else { eps };
                    let ball = Ball::new(x.clone(), eps, norm, seed % 2 == 1).unwrap();
                    let pre = PRES[(seed % 2) as usize];
                    let what = format!("{name} seed {seed} {norm:?} eps {eps}");
                    let fl = fastlip_with(&net, &ball, 1.0, Head::Simplex, pre).unwrap();
                    let rj = recurjac_with(&net, &ball, 1.0, pre).unwrap();
                    let (traces, logits) = pre_bounds(&net, &ball, pre).unwrap();
                    let mut opts = Vec::new();
                    options(&net.nodes, &traces, &mut opts);
                    let ps = probabilities(&logits, &mut r);
                    let n = for_each_pattern(&opts, 1 << 12, |choices| {
                        for p in &ps {
                            let g = grad_for(&net, choices, p);
                            let tol = 1e-12 * (1.0 + g.iter().map(|v| v.abs()).sum::<f64>());
                            for (rule, b) in [("FastLip", &fl.grad), ("RecurJac", &rj.grad)] {
                                for (i, gi) in g.iter().enumerate() {
                                    assert!(
                                        b.lo[i] - tol <= *gi && *gi <= b.hi[i] + tol,
                                        "{what}: {rule} coordinate {i}: {gi} outside [{}, {}]",
                                        b.lo[i],
                                        b.hi[i]
                                    );
                                }
                            }
                            let v = norm.dual_norm(&g) * (1.0 - 1e-12);
                            assert!(v <= fl.value, "{what}: {v} > FastLip {}", fl.value);
                            assert!(v <= rj.recurjac_value, "{what}: {v} > RecurJac");
                        }
                    });
                    if let Some(n) = n {
                        configs += 1;
                        multi += usize::from(n > 1);
                        *per_net.entry(name).or_insert(0) += 1;
                        // A max-pool window with several candidates (routes enumerated).
                        pool_free += usize::from(
                            opts.iter()
                                .any(|(is_relu, u)| !is_relu && u.iter().any(|o| o.len() > 1)),
                        );
                    }
                }
            }
        }
    }
    eprintln!(
        "{configs} configurations enumerated, {multi} with several patterns, {pool_free} with \
         free max-pool routes; per net {per_net:?}"
    );
    assert!(configs >= 20, "only {configs} configurations enumerated");
    assert!(
        pool_free >= 8,
        "only {pool_free} configurations with free max-pool routes"
    );
    assert!(
        per_net.values().all(|&n| n >= 5) && per_net.len() == 3,
        "{per_net:?}"
    );
    assert!(
        multi >= 8,
        "only {multi} configurations with several patterns"
    );
}

/// The host gradient (branch and bound's point oracle) equals central differences of the f64
/// score at random points (ties have probability 0); sampled and PGD-free gradient norms in
/// the ball lie in the FastLip, RecurJac and Jacobian-LBP gradient boxes, their norms stay
/// below those rules (Jacobian LBP alone, not its minimum with FastLip) and branch and bound,
/// and everything stays below the global bound.
#[test]
fn sampled_gradients_stay_below_local_and_global_bounds() {
    let score = |net: &Net, x: &[f64]| {
        let z = net.forward(x).unwrap();
        oodcert::score::energy_f64(&z, 1.0)
    };
    for seed in 0..3u64 {
        for (name, net) in nets(60 + seed) {
            let mut r = rng(70 + seed);
            let x = random_image(net.input_dim(), &mut r);
            let g = score_grad(&net, &x, 1.0).unwrap();
            for i in 0..x.len() {
                let h = 1e-6;
                let (mut a, mut b) = (x.clone(), x.clone());
                a[i] += h;
                b[i] -= h;
                let fd = (score(&net, &a) - score(&net, &b)) / (2.0 * h);
                assert!(
                    (fd - g[i]).abs() <= 1e-6 * (1.0 + g[i].abs()),
                    "{name} seed {seed}: ∂S/∂x{i} = {} vs difference {fd}",
                    g[i]
                );
            }
            for norm in [Norm::L2, Norm::Linf] {
                let glob = global_bound(&net, norm).unwrap().value;
                let eps = if norm == Norm::L2 { 0.1 } else { 0.02 };
                let ball = Ball::new(x.clone(), eps, norm, false).unwrap();
                let pre = PreBounds::Crown { max_dim: 10_000 };
                let flb = fastlip_with(&net, &ball, 1.0, Head::Simplex, pre).unwrap();
                let rjb = recurjac_with(&net, &ball, 1.0, pre).unwrap();
                let jlb = jacobian_lbp(&net, &ball, 1.0, pre, LbpConfig::default()).unwrap();
                let (fl, rj, jl) = (flb.value, rjb.value, jlb.lbp_value);
                let cfg = BabConfig {
                    budget_s: 30.0,
                    max_domains: 40,
                    samples: 16,
                    ..BabConfig::default()
                };
                let bab = lipschitz_bab(&net, &ball, 1.0, &cfg, 0.0).unwrap();
                let what = format!("{name} seed {seed} {norm:?}");
                assert!(bab.lower <= bab.upper, "{what}: BaB lower > upper");
                let mut best: f64 = 0.0;
                for y in samples(&ball, 300, &mut r) {
                    let gy = score_grad(&net, &y, 1.0).unwrap();
                    for (rule, b) in [("FastLip", &flb.grad), ("RecurJac", &rjb.grad)]
                        .into_iter()
                        .chain([("Jacobian", &jlb.grad)])
                    {
                        let tol = 1e-12 * (1.0 + gy.iter().map(|v| v.abs()).sum::<f64>());
                        for (i, gi) in gy.iter().enumerate() {
                            assert!(
                                b.lo[i] - tol <= *gi && *gi <= b.hi[i] + tol,
                                "{name} seed {seed} {norm:?}: {rule} coordinate {i}: {gi} \
                                 outside [{}, {}]",
                                b.lo[i],
                                b.hi[i]
                            );
                        }
                    }
                    let v = norm.dual_norm(&gy);
                    best = best.max(v);
                    for (rule, b) in [("FastLip", fl), ("RecurJac", rj), ("Jacobian", jl)]
                        .into_iter()
                        .chain([("BaB", bab.upper), ("global", glob)])
                    {
                        assert!(v <= b * (1.0 + 1e-12), "{what}: ‖∇S‖ = {v} > {rule} {b}");
                    }
                }
                assert!(best > 0.0 && best.is_finite());
                // Hill climbing on ‖∇S‖ from the centre: random steps of shrinking size.
                let mut y = x.clone();
                let mut v = norm.dual_norm(&score_grad(&net, &y, 1.0).unwrap());
                for s in 0..300 {
                    let scale = eps * 0.5 * (1.0 - s as f64 / 300.0) + 1e-6;
                    let mut t: Vec<f64> = y
                        .iter()
                        .map(|a| a + scale * (2.0 * r.random::<f64>() - 1.0))
                        .collect();
                    ball.project(&mut t);
                    let vt = norm.dual_norm(&score_grad(&net, &t, 1.0).unwrap());
                    if vt > v {
                        (y, v) = (t, vt);
                    }
                }
                for (rule, b) in [("FastLip", fl), ("RecurJac", rj), ("Jacobian", jl)]
                    .into_iter()
                    .chain([("BaB", bab.upper), ("global", glob)])
                {
                    assert!(
                        v <= b * (1.0 + 1e-12),
                        "{what}: climbed ‖∇S‖ = {v} > {rule} {b}"
                    );
                }
                eprintln!(
                    "{what}: attained {:.4} | FastLip {fl:.4} RecurJac {rj:.4} Jacobian LBP \
                     {jl:.4} BaB {:.4} ({} domains) | global {glob:.3}",
                    best.max(v),
                    bab.upper,
                    bab.domains
                );
            }
            // Global bounds over the whole space: points far apart and anywhere.
            for norm in [Norm::L2, Norm::Linf] {
                let glob = global_bound(&net, norm).unwrap().value;
                for _ in 0..300 {
                    let y: Vec<f64> = (0..x.len())
                        .map(|_| r.random::<f64>() * 6.0 - 3.0)
                        .collect();
                    let v = norm.dual_norm(&score_grad(&net, &y, 1.0).unwrap());
                    assert!(
                        v <= glob,
                        "{name} seed {seed} {norm:?}: {v} > global {glob}"
                    );
                }
            }
        }
    }
}

fn ones_row(n: usize, scale: f64) -> Node {
    let mut w = vec![scale; n];
    w.extend(vec![0.0; n]);
    Node::Affine(Affine {
        name: "fc".into(),
        op: LinearOp::Dense(Dense { out: 2, inp: n, w }),
        bias: None,
    })
}

/// Where the global factors are attained: a 3×3 max-pool with stride 1 and padding 1 on a 3×3
/// input puts the centre in all 9 windows, so with logits (s·Σy, 0) the gradient at a point
/// whose centre dominates is −p₁·s·9·e_centre, ‖·‖₂ → 9s = √9·‖W‖₂ (the √(max cover) factor is
/// necessary); a concatenation of two identities followed by the same row has gradient norm
/// → 2s√n = √2·‖W‖₂·… (the √(Σ L²) rule is necessary, the max of the branches would be wrong).
/// Both global ℓ2 bounds are within 1e-6 of the attained value.
#[test]
fn global_overlap_and_concat_factors_are_attained() {
    let s = 5.0;
    let net = Net {
        input_shape: [1, 3, 3],
        num_classes: 2,
        nodes: vec![Node::from(geo(1, 3, 3, 1, 1)), ones_row(9, s)],
    };
    let mut x = vec![0.0; 9];
    x[4] = 10.0;
    let g = score_grad(&net, &x, 1.0).unwrap();
    let v = Norm::L2.dual_norm(&g);
    let glob = global_bound(&net, Norm::L2).unwrap().value;
    assert!(
        v <= glob && glob <= v * (1.0 + 1e-6),
        "max-pool: {v} vs global {glob}"
    );
    assert!((v - 9.0 * s).abs() <= 1e-6 * v);

    let n = 4;
    let net = Net {
        input_shape: [1, 2, 2],
        num_classes: 2,
        nodes: vec![
            Node::Concat {
                branches: vec![vec![], vec![]],
            },
            ones_row(2 * n, s),
        ],
    };
    let x = vec![3.0; n];
    let g = score_grad(&net, &x, 1.0).unwrap();
    let v = Norm::L2.dual_norm(&g);
    let glob = global_bound(&net, Norm::L2).unwrap().value;
    assert!(
        v <= glob && glob <= v * (1.0 + 1e-6),
        "concat: {v} vs global {glob}"
    );
    assert!((v - 2.0 * s * (n as f64).sqrt()).abs() <= 1e-6 * v);
}

/// Every weight and bias rounded to float32 (the f32 model's parameters).
fn to_f32(nodes: &mut [Node]) {
    let r = |v: &mut Vec<f64>| v.iter_mut().for_each(|x| *x = *x as f32 as f64);
    for node in nodes {
        match node {
            Node::Affine(a) => {
                match &mut a.op {
                    LinearOp::Dense(d) => r(&mut d.w),
                    LinearOp::Conv(c) => r(&mut c.k),
                    _ => {}
                }
                if let Some(b) = &mut a.bias {
                    r(b);
                }
            }
            Node::Residual { main, shortcut } => {
                to_f32(main);
                to_f32(shortcut);
            }
            Node::Concat { branches } => branches.iter_mut().for_each(|b| to_f32(b)),
            _ => {}
        }
    }
}

/// A float32 evaluation: GEMM/convolution as sequential f32 dot products plus bias, average
/// pools as an f32 window sum times fl32(1/n), padding and concatenation as copies, max-pool
/// and ReLU exact, residual sums in f32.
fn eval32(nodes: &[Node], mut x: Vec<f32>) -> Vec<f32> {
    for node in nodes {
        x = match node {
            Node::Affine(a) => {
                let m = a.op.map();
                match &a.op {
                    LinearOp::AvgPool(p) => p
                        .windows()
                        .iter()
                        .enumerate()
                        .map(|(k, win)| {
                            let s = win.iter().fold(0.0f32, |s, &i| s + x[i]);
                            s * (p.coef(k) as f32)
                        })
                        .collect(),
                    LinearOp::Pad(_) => {
                        let v: Vec<f64> = x.iter().map(|v| *v as f64).collect();
                        m.apply(&v, false).iter().map(|v| *v as f32).collect()
                    }
                    _ => {
                        let (out, inp) = (m.out_dim(), m.in_dim());
                        let mut cols = Vec::with_capacity(inp);
                        for i in 0..inp {
                            let mut e = vec![0.0; inp];
                            e[i] = 1.0;
                            cols.push(m.apply(&e, false));
                        }
                        (0..out)
                            .map(|o| {
                                let mut s = 0.0f32;
                                for (i, col) in cols.iter().enumerate() {
                                    if col[o] != 0.0 {
                                        s += col[o] as f32 * x[i];
                                    }
                                }
                                s + a.bias.as_ref().map_or(0.0, |b| b[o] as f32)
                            })
                            .collect()
                    }
                }
            }
            Node::Relu => x.iter().map(|v| v.max(0.0)).collect(),
            Node::MaxPool2 { .. } | Node::MaxPool { .. } => node
                .pool_windows()
                .iter()
                .map(|win| win.iter().fold(f32::NEG_INFINITY, |m, &i| m.max(x[i])))
                .collect(),
            Node::Residual { main, shortcut } => {
                let a = eval32(main, x.clone());
                let b = eval32(shortcut, x);
                a.iter().zip(&b).map(|(a, b)| a + b).collect()
            }
            Node::Concat { branches } => {
                branches.iter().flat_map(|b| eval32(b, x.clone())).collect()
            }
        };
    }
    x
}

/// The float32 error bound E of the logits over a box holds for a float32 evaluation at 300
/// float32 points of the box, and is small (finite, < 1e-4).
#[test]
fn f32_error_bound_holds_against_an_f32_evaluation() {
    for seed in 0..4u64 {
        for (name, mut net) in nets(80 + seed) {
            to_f32(&mut net.nodes);
            let plan = F32Plan::without_batch_norm(&net).unwrap();
            let mut r = rng(90 + seed);
            let c = random_image(net.input_dim(), &mut r);
            let eps = 0.05;
            let bx = Interval {
                lo: c.iter().map(|v| (v - eps) as f32 as f64).collect(),
                hi: c.iter().map(|v| (v + eps) as f32 as f64).collect(),
            };
            let walk = f32_walk(&net, &plan, &bx).unwrap();
            assert!(
                walk.err.iter().all(|e| e.is_finite() && *e < 1e-4),
                "{name}: {:?}",
                walk.err
            );
            let mut worst: f64 = 0.0;
            for _ in 0..300 {
                let x32: Vec<f32> = (0..c.len())
                    .map(|i| r.random_range(bx.lo[i]..=bx.hi[i]) as f32)
                    .collect();
                let x: Vec<f64> = x32.iter().map(|v| *v as f64).collect();
                let z = net.forward(&x).unwrap();
                let z32 = eval32(&net.nodes, x32);
                for k in 0..z.len() {
                    let d = (z32[k] as f64 - z[k]).abs();
                    worst = worst.max(d / walk.err[k]);
                    assert!(
                        d <= walk.err[k],
                        "{name} seed {seed}: logit {k} f32 error {d} > E {}",
                        walk.err[k]
                    );
                }
            }
            assert!(
                worst > 0.0,
                "{name}: the f32 evaluation was exact everywhere"
            );
        }
    }
}

/// The float32 error propagates through a max-pool as the largest error in each window
/// (overlapping, padded windows) and through a concatenation side by side, unchanged: the
/// walk of [dense, pool] and of [dense, Concat{identity | pool}] against the walk of [dense].
/// (Sampling cannot see a dropped propagation here: E is worst-case, the sampled errors are far
/// below it.)
#[test]
fn f32_error_propagates_through_pools_and_concatenations() {
    let mut r = rng(7);
    let mut head = vec![dense(8, 32, &mut r)];
    to_f32(&mut head);
    let pool = Node::from(geo(2, 4, 3, 1, 1));
    let with = |tail: Node| Net {
        input_shape: [1, 2, 4],
        num_classes: 1,
        nodes: vec![head[0].clone(), tail],
    };
    let prefix = Net {
        input_shape: [1, 2, 4],
        num_classes: 1,
        nodes: head.clone(),
    };
    let bx = Interval {
        lo: vec![-1.0; 8],
        hi: vec![1.0; 8],
    };
    let walk = |net: &Net| {
        let plan = F32Plan::without_batch_norm(net).unwrap();
        f32_walk(net, &plan, &bx).unwrap().err
    };
    let e0 = walk(&prefix);
    assert!(e0.iter().all(|e| *e > 0.0 && e.is_finite()));
    let want: Vec<f64> = pool
        .pool_windows()
        .iter()
        .map(|w| w.iter().map(|&i| e0[i]).fold(0.0, f64::max))
        .collect();
    assert_eq!(walk(&with(pool.clone())), want);
    let cat = walk(&with(Node::Concat {
        branches: vec![vec![], vec![pool]],
    }));
    assert_eq!(cat, [e0, want].concat());
}
