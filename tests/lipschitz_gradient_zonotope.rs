//! The gradient zonotope (src/lipschitz/gradient_zonotope.rs,
//! proofs/lipschitz_gradient_zonotope.md) tries to be broken: on random LeNet-like nets (conv +
//! ReLU + max-pool + dense), max-pool-only chains and MLPs, in ℓ2 and ℓ∞, for every ReLU
//! derivative pattern and max-pool selection the boxes allow and every vertex of the box of
//! ∂S/∂f, ‖Jᵀg‖_q is below it; exact gradients at 2000 points sampled in the ball stay below
//! it; it is `None` for residual nets; on a ball where every unit is stable it equals ‖∇S(x₀)‖
//! up to the softmax box's width; and it beats the scaled / masked product on some ℓ2 balls.

mod recurjac_nets;
use recurjac_nets::*;

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::{Ball, Interval, Net, Norm};
use oodcert::lipschitz::empirical::sample_ball;
use oodcert::lipschitz::gradient_zonotope::gradient_zonotope;
use oodcert::lipschitz::local::{PreBounds, neg_softmax_box, pre_bounds};
use oodcert::lipschitz::local_product::masked_product;
use oodcert::model::Arch;

fn nets(seed: u64) -> Vec<(String, Net)> {
    let mut v = vec![
        ("lenet".to_string(), tiny_lenet(seed)),
        ("pool_only".into(), pool_only(seed)),
        ("mlp".into(), mlp([1, 3, 3], &[7, 6], 3, seed).1),
        ("mlp wide".into(), mlp([1, 4, 4], &[12, 9, 8], 4, seed).1),
    ];
    if seed == 0 {
        v.push((
            "candle lenet".into(),
            model(Arch::Lenet, [1, 28, 28], 10, seed).1,
        ));
    }
    v
}

/// Every vertex of {g ∈ box : Σ g = −1} (g = −p, p in the simplex): all coordinates but one
/// (`f`) at a bound, g_f = −1 − Σ others within its bounds.
fn vertices(b: &Interval) -> Vec<Vec<f64>> {
    let k = b.lo.len();
    let mut out = Vec::new();
    for f in 0..k {
        for m in 0..1usize << k {
            let mut g: Vec<f64> = (0..k)
                .map(|j| if m >> j & 1 == 1 { b.hi[j] } else { b.lo[j] })
                .collect();
            g[f] = -1.0 - (0..k).filter(|&j| j != f).map(|j| g[j]).sum::<f64>();
            if g[f] >= b.lo[f] && g[f] <= b.hi[f] {
                out.push(g);
            }
        }
    }
    out
}

#[test]
fn every_allowed_pattern_and_head_vertex_stays_below_the_zonotope() {
    let mut enumerated = 0;
    let mut sampled = 0;
    for seed in 0..6u64 {
        for (name, net) in nets(seed) {
            let mut r = rng(4200 + seed);
            let x = random_image(net.input_dim(), &mut r);
            for norm in [Norm::L2, Norm::Linf] {
                let scale = if norm == Norm::L2 { 1.0 } else { 0.2 };
                for eps in [0.01, 0.05, 0.2, 0.6] {
                    let ball = Ball::new(x.clone(), eps * scale, norm, seed % 2 == 1).unwrap();
                    for pre in [PreBounds::Ibp, PreBounds::Crown { max_dim: 10_000 }] {
                        let (traces, logits) = pre_bounds(&net, &ball, pre).unwrap();
                        let neg_p = neg_softmax_box(&logits, 1.0);
                        let zb =
                            gradient_zonotope(&net, &traces, &neg_p, norm, None, f64::INFINITY)
                                .unwrap_or_else(|| panic!("{name}: a chain has a zonotope bound"));
                        let k = net.num_classes;
                        let verts = if k <= 4 { vertices(&neg_p) } else { Vec::new() };
                        assert!(
                            k > 4 || !verts.is_empty(),
                            "{name}: the head set is not empty"
                        );
                        let mut opts = Vec::new();
                        options(&net.nodes, &traces, &mut opts);
                        let n = if verts.is_empty() {
                            None
                        } else {
                            for_each_pattern(&opts, 4096, |ch| {
                                for g in &verts {
                                    let p: Vec<f64> = g.iter().map(|v| -v).collect();
                                    let v = norm.dual_norm(&grad_for(&net, ch, &p));
                                    assert!(
                                        v <= zb * (1.0 + 1e-12),
                                        "{name} seed {seed} {norm:?} eps {}: ‖Jᵀg‖ = {v} > zonotope {zb}",
                                        ball.eps
                                    );
                                }
                            })
                        };
                        if n.is_some() {
                            enumerated += 1;
                        }
                        if n.is_none() || seed < 2 {
                            sampled += 1;
                            let mut r = rng(5100 + seed);
                            for _ in 0..2000 {
                                let p = sample_ball(&ball, &mut r);
                                let (_, g) = score_and_grad(&net, &p);
                                let gn = norm.dual_norm(&g);
                                assert!(
                                    gn <= zb * (1.0 + 1e-12),
                                    "{name} seed {seed} {norm:?} eps {}: ‖∇S‖ = {gn} > zonotope {zb}",
                                    ball.eps
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(enumerated >= 60, "only {enumerated} balls enumerated");
    assert!(sampled >= 60, "only {sampled} balls sampled");
}

#[test]
fn residual_nets_have_no_zonotope_bound() {
    let net = tiny_resnet(0, false);
    let ball = Ball::new(vec![0.3; net.input_dim()], 0.05, Norm::L2, false).unwrap();
    let (traces, logits) = pre_bounds(&net, &ball, PreBounds::Ibp).unwrap();
    let neg_p = neg_softmax_box(&logits, 1.0);
    assert!(gradient_zonotope(&net, &traces, &neg_p, Norm::L2, None, f64::INFINITY).is_none());
}

/// On a ball so small that every ReLU and pool window is decided, the only generators are the
/// head's (the softmax box), so the bound is ‖∇S(x₀)‖ up to that box's width: the zonotope
/// loses nothing through the layers.
#[test]
fn stable_balls_give_the_centre_gradient() {
    for seed in 0..4u64 {
        for (name, net) in nets(seed) {
            let mut r = rng(4300 + seed);
            let x = random_image(net.input_dim(), &mut r);
            let (_, g0) = score_and_grad(&net, &x);
            for norm in [Norm::L2, Norm::Linf] {
                let ball = Ball::new(x.clone(), 1e-9, norm, false).unwrap();
                let (traces, logits) = pre_bounds(&net, &ball, PreBounds::Ibp).unwrap();
                let neg_p = neg_softmax_box(&logits, 1.0);
                let zb =
                    gradient_zonotope(&net, &traces, &neg_p, norm, None, f64::INFINITY).unwrap();
                let exact = norm.dual_norm(&g0);
                assert!(
                    zb >= exact && zb <= exact * (1.0 + 1e-4) + 1e-9,
                    "{name} seed {seed} {norm:?}: zonotope {zb} vs ‖∇S(x₀)‖ {exact}"
                );
            }
        }
    }
}

/// The zonotope keeps the layers' correlations that a product of (scaled, masked) norms loses:
/// it is below the masked product (which includes the scaled product) on some ℓ2 balls.
#[test]
fn the_zonotope_beats_the_product_on_some_l2_balls() {
    let (mut better, mut cases) = (0, 0);
    for seed in 0..6u64 {
        for (_, net) in nets(seed) {
            let mut r = rng(4400 + seed);
            let x = random_image(net.input_dim(), &mut r);
            for eps in [0.01, 0.05, 0.2] {
                let ball = Ball::new(x.clone(), eps, Norm::L2, false).unwrap();
                let (traces, logits) =
                    pre_bounds(&net, &ball, PreBounds::Crown { max_dim: 10_000 }).unwrap();
                let neg_p = neg_softmax_box(&logits, 1.0);
                let zb = gradient_zonotope(&net, &traces, &neg_p, Norm::L2, None, f64::INFINITY)
                    .unwrap();
                let lp = masked_product(&net, &traces, Norm::L2).unwrap().unwrap();
                cases += 1;
                if zb < lp.total {
                    better += 1;
                }
            }
        }
    }
    eprintln!("zonotope below the masked product on {better} of {cases} balls");
    assert!(better * 3 >= cases, "only {better} of {cases}");
}

/// The first pool's pairwise candidates (src/lipschitz/pool_pairs.rs) contain the argmax of the
/// pre-activations of every window at every sampled point of the ball, are never more than the
/// box's candidates, and are fewer somewhere; the zonotope that uses them (`ball_local_bound`)
/// stays above every sampled gradient norm.
#[test]
fn pairwise_pool_candidates_contain_every_sampled_argmax() {
    use oodcert::bounds::Node;
    use oodcert::bounds::max_pool::candidates;
    use oodcert::lipschitz::pool_pairs::{ball_local_bound, pool_pairs};
    let (mut fewer, mut windows) = (0, 0);
    for seed in 0..6u64 {
        for (name, net) in nets(seed) {
            let mut r = rng(4500 + seed);
            let x = random_image(net.input_dim(), &mut r);
            for norm in [Norm::L2, Norm::Linf] {
                let scale = if norm == Norm::L2 { 1.0 } else { 0.2 };
                for eps in [0.02, 0.1, 0.4] {
                    let ball = Ball::new(x.clone(), eps * scale, norm, seed % 2 == 1).unwrap();
                    let Some(pp) = pool_pairs(&net, &ball) else {
                        assert!(name.starts_with("mlp"), "{name}: starts with conv + pool");
                        continue;
                    };
                    let (traces, logits) =
                        pre_bounds(&net, &ball, PreBounds::Crown { max_dim: 10_000 }).unwrap();
                    let wins = net.nodes[pp.node].pool_windows();
                    for (w, win) in wins.iter().enumerate() {
                        let c = candidates(traces[pp.node].input(), win);
                        windows += 1;
                        if pp.cands[w].len() < c.len() {
                            fewer += 1;
                        }
                    }
                    // The pre-activations at the pool's input (before the ReLU, if any).
                    let z_node = if matches!(net.nodes[pp.node - 1], Node::Relu) {
                        pp.node - 1
                    } else {
                        pp.node
                    };
                    let bound = ball_local_bound(&net, &ball, &traces, &logits, 1.0, f64::INFINITY)
                        .unwrap();
                    let mut r = rng(5200 + seed);
                    for _ in 0..2000 {
                        let p = sample_ball(&ball, &mut r);
                        let mut z = p.clone();
                        for n in &net.nodes[..z_node] {
                            let Node::Affine(a) = n else { unreachable!() };
                            z = a.op.map().apply(&z, false);
                            if let Some(b) = &a.bias {
                                z.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                            }
                        }
                        for (w, win) in wins.iter().enumerate() {
                            let best = win
                                .iter()
                                .copied()
                                .max_by(|a, b| z[*a].total_cmp(&z[*b]))
                                .unwrap();
                            assert!(
                                pp.cands[w].contains(&best),
                                "{name} seed {seed} {norm:?} eps {eps}: argmax {best} of window {w} not a pairwise candidate"
                            );
                        }
                        let (_, g) = score_and_grad(&net, &p);
                        let gn = norm.dual_norm(&g);
                        assert!(
                            gn <= bound * (1.0 + 1e-12),
                            "{name} seed {seed} {norm:?} eps {eps}: ‖∇S‖ = {gn} > ball bound {bound}"
                        );
                    }
                }
            }
        }
    }
    eprintln!("pairwise candidates fewer than the box's on {fewer} of {windows} windows");
    assert!(fewer > 0 && windows > 100);
}

/// The ℓ2 shortcut (skip the Gram when ‖G‖_F already reaches the known bound) never changes the
/// bound that matters, min(zonotope, known): with a cutoff c, min(Z(c), c) = min(Z(∞), c), and it
/// does fire on some balls (Z(c) > Z(∞) there), so a shortcut taken too eagerly fails this.
#[test]
fn the_cutoff_shortcut_never_changes_the_min_with_the_known_bound() {
    let mut fired = 0;
    let mut checked = 0;
    for seed in 0..4u64 {
        // The small nets only (the 28×28 candle LeNet's 784-side Gram takes seconds per call).
        for (name, net) in nets(seed).into_iter().filter(|(n, _)| n != "candle lenet") {
            let mut r = rng(6100 + seed);
            let x = random_image(net.input_dim(), &mut r);
            for eps in [0.01, 0.05, 0.2, 0.6, 1.5] {
                let ball = Ball::new(x.clone(), eps, Norm::L2, seed % 2 == 1).unwrap();
                let (traces, logits) = pre_bounds(&net, &ball, PreBounds::Ibp).unwrap();
                let neg_p = neg_softmax_box(&logits, 1.0);
                let z =
                    |c: f64| gradient_zonotope(&net, &traces, &neg_p, Norm::L2, None, c).unwrap();
                let full = z(f64::INFINITY);
                for f in [0.05, 0.3, 0.7, 0.95, 1.0, 1.05, 1.3, 3.0] {
                    let c = full * f;
                    let got = z(c);
                    assert!(got >= full, "{name} eps {eps}: {got} < {full}");
                    fired += usize::from(got > full);
                    let (a, b) = (got.min(c), full.min(c));
                    assert!(
                        (a - b).abs() <= 1e-8 * b,
                        "{name} seed {seed} eps {eps} cutoff {c}: min {a} vs {b} (Z(∞) = {full}, Z(c) = {got})"
                    );
                    checked += 1;
                }
            }
        }
    }
    eprintln!("shortcut fired on {fired} of {checked}");
    assert!(
        fired >= 10,
        "the shortcut fired only {fired} times of {checked}"
    );
}
