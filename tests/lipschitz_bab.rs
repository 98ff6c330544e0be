// Branch and bound on the local Lipschitz constant (src/lipschitz/bab.rs; proofs/lipschitz_bab.md):
// exactness against an exact enumeration of activation regions, domain-level soundness at
// sampled points, the anytime bound against sampling / PGD, monotonicity, bad settings.

mod recurjac_nets;
use recurjac_nets::*;

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::net::{Node, forward_nodes};
use oodcert::bounds::{Ball, Net, Norm};
use oodcert::error::Error;
use oodcert::lipschitz::bab::domain::{ACTIVE, Domain, FREE, INACTIVE, Outcome, Problem, state};
use oodcert::lipschitz::bab::point_grad::score_grad;
use oodcert::lipschitz::bab::{BabConfig, DomainRows, lipschitz_bab, lipschitz_bab_capped};
use oodcert::lipschitz::empirical::{GradOracle, PgdConfig, lower_by_pgd, sample_ball};
use rand::Rng;

/// A dense ReLU net on 2 inputs with `hidden` widths and `k` outputs.
fn dense_2d(hidden: &[usize], k: usize, seed: u64) -> Net {
    let mut r = rng(seed);
    let mut nodes = Vec::new();
    let mut inp = 2;
    for &h in hidden {
        nodes.push(dense(inp, h, &mut r));
        nodes.push(Node::Relu);
        inp = h;
    }
    nodes.push(dense(inp, k, &mut r));
    Net {
        input_shape: [1, 1, 2],
        num_classes: k,
        nodes,
    }
}

fn cfg(max_domains: usize) -> BabConfig {
    BabConfig {
        budget_s: 600.0,
        max_domains,
        ..BabConfig::default()
    }
}

/// The enumerated 2-D cases of the exactness tests, per seed: a one-logit dense net with one to
/// three hidden layers (by seed mod 3), a centre, and for ℓ2 then ℓ∞ a ball of radius in
/// [0.4, 1) with its exact constant: (seed, ball, net, exact).
fn enumerated_2d_cases(seeds: std::ops::Range<u64>) -> Vec<(u64, Ball, Net, f64)> {
    let mut cases = Vec::new();
    for seed in seeds {
        let hidden: &[usize] = match seed % 3 {
            0 => &[10],
            1 => &[7, 6],
            _ => &[6, 5, 4],
        };
        let net = dense_2d(hidden, 1, 100 + seed);
        let mut r = rng(200 + seed);
        let x = random_image(2, &mut r);
        for norm in [Norm::L2, Norm::Linf] {
            let eps = 0.4 + 0.6 * r.random::<f64>();
            let ball = Ball::new(x.clone(), eps, norm, false).unwrap();
            let exact = exact_constant(&net, &ball);
            cases.push((seed, ball, net.clone(), exact));
        }
    }
    cases
}

/// Issue #11 item 3: on dense nets with 2 inputs and one logit (S = −f, so ∇S is constant on
/// every activation region and the exact constant is the maximum over the regions that meet the
/// ball), the completed BaB bound equals the exact local constant to 1e-6 relative — ℓ2 and ℓ∞,
/// one to three hidden layers, with CROWN + RecurJac and with IBP + FastLip only.
#[test]
fn bab_equals_the_exact_constant_on_enumerated_2d_nets() {
    let mut strictly_tighter = 0;
    for (seed, ball, net, exact) in enumerated_2d_cases(0..12) {
        let norm = ball.norm;
        let mut c = cfg(1_000_000);
        if seed % 4 == 1 {
            c.crown_max_dim = None;
            c.recurjac_max_work = None;
        }
        let b = lipschitz_bab(&net, &ball, 1.0, &c, 0.0).unwrap();
        assert!(
            (b.upper - exact).abs() <= 1e-6 * exact,
            "seed {seed} {norm:?}: BaB {} exact {exact} ({b:?})",
            b.upper
        );
        eprintln!(
            "seed {seed} {norm:?} exact {exact:.6} upper {:.6} root {:.4} lower {:.6} dom {} leaves {} pl {} eb {} ed {} open {}",
            b.upper,
            b.root,
            b.lower,
            b.domains,
            b.leaves,
            b.pruned_by_lower,
            b.empty_by_bounds,
            b.empty_by_dual,
            b.open
        );
        assert!(b.lower <= exact * (1.0 + 1e-9) && b.root >= b.upper);
        if b.root > exact * (1.0 + 1e-3) {
            strictly_tighter += 1;
        }
    }
    // The enumeration is not trivially reached by the unsplit bound.
    assert!(strictly_tighter >= 12, "{strictly_tighter}");
}

/// The pre-activations at x of every top-level ReLU node (None for other nodes).
fn relu_inputs(net: &Net, x: &[f64]) -> Vec<Option<Vec<f64>>> {
    (0..net.nodes.len())
        .map(|i| {
            matches!(net.nodes[i], Node::Relu)
                .then(|| forward_nodes(&net.nodes[..i], x.to_vec()).unwrap())
        })
        .collect()
}

fn nets(seed: u64) -> Vec<(&'static str, Net)> {
    vec![
        ("dense-2d", dense_2d(&[6, 5], 3, 300 + seed)),
        ("mlp", mlp([1, 3, 3], &[10, 8], 4, 310 + seed).1),
        ("lenet", tiny_lenet(320 + seed)),
        ("resnet", tiny_resnet(330 + seed, true)),
    ]
}

/// Every domain that contains a point of the ball (splits chosen along the point's own activation
/// pattern) is never proven empty, its clamped boxes contain the point's node inputs, and its
/// bound is at least the gradient norm there: the split, clamp, CROWN-on-domain, derivative and
/// Lagrangian rules each checked at the point.
#[test]
fn domains_along_a_points_pattern_are_kept_and_bound_its_gradient() {
    let mut deep = 0;
    for seed in 0..3u64 {
        for (name, net) in nets(seed) {
            let n = net.input_dim();
            let mut r = rng(400 + seed);
            for (norm, eps, unit) in [(Norm::L2, 0.6, false), (Norm::Linf, 0.15, true)] {
                let ball = Ball::new(random_image(n, &mut r), eps, norm, unit).unwrap();
                // The energy-row-only RecurJac bound (root and children) on seed 0, all rows on
                // seed 1, the adaptive rule on seed 2.
                let rows =
                    [DomainRows::Energy, DomainRows::All, DomainRows::Adaptive][seed as usize];
                let prob = Problem::new(&net, &ball, 1.0, Some(4096), Some(1e10), rows).unwrap();
                let Outcome::Bounded(root) = prob.root().unwrap() else {
                    panic!("root empty")
                };
                for _ in 0..25 {
                    let xp = sample_ball(&ball, &mut r);
                    let g = ball.norm.dual_norm(&score_grad(&net, &xp, 1.0).unwrap());
                    let z = relu_inputs(&net, &xp);
                    let mut d: Domain = root.clone();
                    for depth in 0..10 {
                        let free: Vec<(usize, usize)> = (0..net.nodes.len())
                            .filter(|&i| z[i].is_some())
                            .flat_map(|i| {
                                let b = d.traces[i].input().clone();
                                let s = d.splits.clone();
                                (0..b.len())
                                    .filter(move |&j| {
                                        state(&s, i, j) == FREE && b.lo[j] <= 0.0 && b.hi[j] >= 0.0
                                    })
                                    .map(move |j| (i, j))
                            })
                            .filter(|&(i, j)| z[i].as_ref().unwrap()[j] != 0.0)
                            .collect();
                        if free.is_empty() {
                            break;
                        }
                        let (i, j) = free[r.random_range(0..free.len())];
                        let st = if z[i].as_ref().unwrap()[j] > 0.0 {
                            ACTIVE
                        } else {
                            INACTIVE
                        };
                        d = match prob.child(&d, i, j, st).unwrap() {
                            Outcome::Bounded(c) => c,
                            _ => panic!("{name} {norm:?}: a domain holding a point was emptied"),
                        };
                        deep = deep.max(depth + 1);
                        for (k, zk) in z.iter().enumerate() {
                            if let Some(zk) = zk {
                                assert!(d.traces[k].input().contains(zk), "{name}: box misses z");
                            }
                        }
                        assert!(
                            d.ub >= g * (1.0 - 1e-12),
                            "{name} {norm:?}: domain bound {} < gradient norm {g}",
                            d.ub
                        );
                    }
                }
            }
        }
    }
    assert!(deep >= 5, "{deep}");
}

/// The anytime bound: at every budget (domains), upper ≥ every gradient norm found by dense
/// sampling (and PGD on the candle MLP), upper ≤ the root bound, lower ≤ upper, and the upper
/// bound never grows with the budget — dense, conv, max-pool and residual nets, ℓ2 and ℓ∞,
/// with and without the pixel box.
#[test]
fn anytime_bound_covers_sampling_and_pgd_and_shrinks_with_the_budget() {
    let mut improved = 0;
    for seed in 0..2u64 {
        for (name, net) in nets(seed) {
            let n = net.input_dim();
            let mut r = rng(500 + seed);
            for (norm, eps, unit) in [
                (Norm::L2, 0.5, false),
                (Norm::L2, 0.3, true),
                (Norm::Linf, 0.1, false),
                (Norm::Linf, 0.05, true),
            ] {
                let ball = Ball::new(random_image(n, &mut r), eps, norm, unit).unwrap();
                let mut sampled = 0.0f64;
                for _ in 0..3000 {
                    let xp = sample_ball(&ball, &mut r);
                    sampled = sampled.max(norm.dual_norm(&score_grad(&net, &xp, 1.0).unwrap()));
                }
                let mut prev = f64::INFINITY;
                for k in [1, 5, 25, 125] {
                    let b = lipschitz_bab(&net, &ball, 1.0, &cfg(k), 0.0).unwrap();
                    assert!(
                        b.upper >= sampled * (1.0 - 1e-12),
                        "{name} {norm:?}: upper {} < sampled {sampled}",
                        b.upper
                    );
                    assert!(b.upper <= prev && b.upper <= b.root && b.lower <= b.upper);
                    assert!(b.domains <= k + 1);
                    if k == 125 && b.upper < b.root * 0.99 {
                        improved += 1;
                    }
                    prev = b.upper;
                }
            }
        }
    }
    assert!(improved >= 8, "{improved}");
    // PGD through the candle model on an MLP.
    for seed in 0..3u64 {
        let (m, net) = mlp([1, 4, 4], &[12, 10], 5, 600 + seed);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 256,
        };
        let mut r = rng(610 + seed);
        for (norm, eps) in [(Norm::L2, 0.5), (Norm::Linf, 0.1)] {
            let ball = Ball::new(random_image(16, &mut r), eps, norm, true).unwrap();
            let pgd = PgdConfig {
                steps: 30,
                restarts: 8,
                step_frac: 0.1,
                fd_frac: 1e-3,
            };
            let lo = lower_by_pgd(&oracle, &ball, &pgd, &mut r).unwrap();
            let b = lipschitz_bab(&net, &ball, 1.0, &cfg(200), lo).unwrap();
            assert!(b.upper >= lo * (1.0 - 1e-9) && b.lower >= lo);
        }
    }
}

/// A budget ≤ 0 or not finite, no domain at all, or a negative gap is refused as bad input.
#[test]
fn bad_settings_are_refused() {
    let net = dense_2d(&[3], 2, 1);
    let ball = Ball::new(vec![0.5, 0.5], 0.1, Norm::L2, false).unwrap();
    for c in [
        BabConfig {
            budget_s: 0.0,
            ..cfg(10)
        },
        BabConfig {
            budget_s: -1.0,
            ..cfg(10)
        },
        BabConfig {
            budget_s: f64::NAN,
            ..cfg(10)
        },
        cfg(0),
        BabConfig {
            rel_gap: -0.1,
            ..cfg(10)
        },
    ] {
        assert!(matches!(
            lipschitz_bab(&net, &ball, 1.0, &c, 0.0),
            Err(Error::BadInput(_))
        ));
    }
}

/// `OODCERT_PROBE_MODEL=FILE OODCERT_DATA=DIR cargo test --release --test lipschitz_bab probe --
/// --ignored --nocapture` (optional OODCERT_PROBE_NORM=l2|linf, OODCERT_PROBE_EPS,
/// OODCERT_PROBE_BUDGET seconds, OODCERT_PROBE_ROWS=all|energy|all-at-root|adaptive,
/// OODCERT_PROBE_PGD=STEPS,RESTARTS (default 20,4), OODCERT_PROBE_N images, OODCERT_PROBE_RJ RecurJac max work or
/// `none`, OODCERT_PROBE_CROWN max dimension or `none`, OODCERT_PROBE_BOX=1 for ∩ [0,1]): BaB on the first `mnist:test` images
/// of a trained model against PGD (the CLI's defaults), with the root bound for comparison.
#[test]
#[ignore = "probe on a trained model"]
fn probe_bab_on_a_trained_model() {
    let Ok(path) = std::env::var("OODCERT_PROBE_MODEL") else {
        return;
    };
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let norm = if env("OODCERT_PROBE_NORM", "l2") == "linf" {
        Norm::Linf
    } else {
        Norm::L2
    };
    let eps: f64 = env("OODCERT_PROBE_EPS", "0.3").parse().unwrap();
    let budget: f64 = env("OODCERT_PROBE_BUDGET", "10").parse().unwrap();
    let n: usize = env("OODCERT_PROBE_N", "5").parse().unwrap();
    let dev = candle_core::Device::Cpu;
    let m = oodcert::model::Model::load(std::path::Path::new(&path), &dev)
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap();
    let net = Net::from_model(&m).unwrap();
    let shape = net.input_shape;
    let data =
        oodcert::data::load_as("mnist:test", &oodcert::data::default_data_dir(), shape).unwrap();
    let oracle = GradOracle {
        model: &m,
        temperature: 1.0,
        batch: 256,
    };
    let mut r = rng(0);
    let mut ratios = Vec::new();
    for i in 0..n {
        let x: Vec<f64> = data.image(i).iter().map(|&v| v as f64).collect();
        let ball = Ball::new(x, eps, norm, env("OODCERT_PROBE_BOX", "0") == "1").unwrap();
        let mut pc = PgdConfig::default();
        if let Ok(v) = std::env::var("OODCERT_PROBE_PGD") {
            let (a, b) = v.split_once(',').expect("OODCERT_PROBE_PGD=STEPS,RESTARTS");
            (pc.steps, pc.restarts) = (a.parse().unwrap(), b.parse().unwrap());
        }
        let pgd = lower_by_pgd(&oracle, &ball, &pc, &mut r).unwrap();
        let c = BabConfig {
            budget_s: budget,
            max_domains: env("OODCERT_PROBE_DOMAINS", "0")
                .parse::<usize>()
                .ok()
                .filter(|&d| d > 0)
                .unwrap_or(usize::MAX),
            recurjac_max_work: env("OODCERT_PROBE_RJ", "1e10").parse().ok(),
            crown_max_dim: env("OODCERT_PROBE_CROWN", "4096").parse().ok(),
            rows: match env("OODCERT_PROBE_ROWS", "all").as_str() {
                "energy" => DomainRows::Energy,
                "all-at-root" => DomainRows::AllAtRoot,
                "adaptive" => DomainRows::Adaptive,
                _ => DomainRows::All,
            },
            ..BabConfig::default()
        };
        let b = lipschitz_bab(&net, &ball, 1.0, &c, pgd).unwrap();
        eprintln!(
            "image {i}: pgd {pgd:.4} root {:.4} ({:.3}×) bab {:.4} ({:.3}×) lower {:.4} domains {} open {} empty {}+{} pruned {} {:.1}s",
            b.root,
            b.root / pgd,
            b.upper,
            b.upper / pgd,
            b.lower,
            b.domains,
            b.open,
            b.empty_by_bounds,
            b.empty_by_dual,
            b.pruned_by_lower,
            b.seconds
        );
        ratios.push(b.upper / pgd);
    }
    ratios.sort_by(f64::total_cmp);
    eprintln!("median upper/pgd {:.4}", ratios[ratios.len() / 2]);
}

/// A finite cap (a valid bound of the whole ball, as RecurJac's is) caps the result and keeps it
/// sound: on enumerable nets the capped search still ends at the exact constant, never above the
/// cap; a cap below a gradient norm found in the ball is refused, not certified.
#[test]
fn capped_bab_stays_between_the_exact_constant_and_the_cap() {
    let mut checked = 0;
    for seed in 0..6u64 {
        let net = dense_2d(&[6, 5], 1, 300 + seed);
        let mut r = rng(400 + seed);
        let x = random_image(2, &mut r);
        for norm in [Norm::L2, Norm::Linf] {
            let ball = Ball::new(x.clone(), 0.5 + 0.5 * r.random::<f64>(), norm, false).unwrap();
            let exact = exact_constant(&net, &ball);
            let free = lipschitz_bab(&net, &ball, 1.0, &cfg(1), 0.0).unwrap();
            // Caps: the exact constant (rounded up), and halfway between it and the root bound.
            for cap in [exact * (1.0 + 1e-9), 0.5 * (exact + free.root)] {
                let b = lipschitz_bab_capped(&net, &ball, 1.0, &cfg(1_000_000), 0.0, cap).unwrap();
                assert!(
                    b.upper <= cap && b.upper >= exact * (1.0 - 1e-6),
                    "seed {seed} {norm:?}: capped {} exact {exact} cap {cap}",
                    b.upper
                );
                checked += 1;
            }
            // The search's lower bound starts at the centre's gradient norm at least.
            let at_centre = norm.dual_norm(&score_grad(&net, &x, 1.0).unwrap());
            if at_centre > 0.0 {
                let bad = lipschitz_bab_capped(&net, &ball, 1.0, &cfg(10), 0.0, 0.5 * at_centre);
                assert!(
                    matches!(bad, Err(Error::Internal(_))),
                    "seed {seed} {norm:?}: a cap below the constant was accepted: {bad:?}"
                );
            }
        }
    }
    assert_eq!(checked, 24);
}

/// The two children of a domain are bounded on two threads; the search (its bound, lower bound
/// and domain counts) is the same bit for bit on one thread and on three, ℓ2 (pattern-Gram rule,
/// split cuts) and ℓ∞, at a deterministic domain budget.
#[test]
fn bab_does_not_depend_on_the_thread_count() {
    let (mut runs, mut branched) = (0, 0);
    for seed in 0..2u64 {
        for (name, net) in nets(seed) {
            let n = net.input_dim();
            let mut r = rng(900 + seed);
            for (norm, eps, unit) in [(Norm::L2, 0.5, false), (Norm::Linf, 0.1, true)] {
                let ball = Ball::new(random_image(n, &mut r), eps, norm, unit).unwrap();
                let run = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let b = pool
                        .install(|| lipschitz_bab(&net, &ball, 1.0, &cfg(60), 0.0))
                        .unwrap();
                    (
                        b.upper.to_bits(),
                        b.lower.to_bits(),
                        b.domains,
                        b.open,
                        b.leaves,
                        b.pruned_by_lower,
                        b.empty_by_bounds,
                        b.empty_by_dual,
                    )
                };
                let one = run(1);
                runs += 1;
                branched += usize::from(one.2 > 1);
                assert_eq!(run(3), one, "{name} {norm:?}");
            }
        }
    }
    assert!(
        branched * 2 >= runs,
        "only {branched} of {runs} searches branched"
    );
}

/// Issue #11 item 3 in general, not only on chosen nets: on 300 random 2-input, one-logit dense
/// nets (one to three hidden layers, ℓ2 and ℓ∞ balls) every completed search equals the exact
/// constant of the region enumeration to 1e-6 relative (an absolute 1e-100 where the exact
/// constant is 0: rounding's floor). Before the phase-I emptiness solve (`bab::emptiness`), leaves
/// whose cuts were only jointly infeasible escaped the multiplier game and about 1 % of these
/// runs ended above the exact constant (seeds 1076, 1249, 1250 of this range).
#[test]
fn bab_is_exact_on_300_random_2d_nets() {
    let mut runs = 0;
    for (seed, ball, net, exact) in enumerated_2d_cases(1000..1300) {
        let norm = ball.norm;
        let b = lipschitz_bab(&net, &ball, 1.0, &cfg(1_000_000), 0.0).unwrap();
        assert_eq!(
            b.open, 0,
            "seed {seed} {norm:?}: the search did not complete"
        );
        assert!(
            (b.upper - exact).abs() <= 1e-6 * exact + 1e-100,
            "seed {seed} {norm:?}: BaB {} exact {exact} ({b:?})",
            b.upper
        );
        runs += 1;
    }
    assert_eq!(runs, 600);
}
