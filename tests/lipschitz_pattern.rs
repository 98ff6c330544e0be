// The pattern search (src/lipschitz/pattern_search.rs): a stronger empirical lower bound of the
// local Lipschitz constant. Its value is a true gradient norm at a point of the ball, so it never
// exceeds the exact constant (brute force on enumerable 2-input nets) nor any certified upper
// bound; and it reaches the exact constant on balls where PGD does not.

mod recurjac_nets;
use recurjac_nets::*;

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::net::Node;
use oodcert::bounds::{Ball, Net, Norm};
use oodcert::lipschitz::bab::point_grad::score_grad;
use oodcert::lipschitz::bab::{BabConfig, lipschitz_bab};
use oodcert::lipschitz::empirical::{GradOracle, PgdConfig, lower_by_pgd};
use oodcert::lipschitz::pattern_search::{
    PatternConfig, lower_by_pattern, pattern_ascent, surrogate_grad,
};

/// A candle MLP on 2 inputs whose energy is −f₁ exactly: its second logit is f₁ − 1000 (row 2 of
/// the last layer copied from row 1, bias lowered by 1000), so softmax is (1, 0) in f64 and ∇S
/// is constant on every activation region (the model needs 2 classes).
fn one_logit_mlp(hidden: &[usize], seed: u64) -> (oodcert::model::Model, Net) {
    let (m, _) = mlp([1, 1, 2], hidden, 2, seed);
    let last = *hidden.last().unwrap();
    {
        let data = m.varmap().data().lock().unwrap();
        let mut done = 0;
        for var in data.values() {
            let t = var.as_tensor();
            if t.dims() == [2, last] {
                let r0 = t.get(0).unwrap();
                var.set(&candle_core::Tensor::stack(&[&r0, &r0], 0).unwrap())
                    .unwrap();
                done += 1;
            } else if t.dims() == [2] {
                let b0 = t.get(0).unwrap().to_scalar::<f64>().unwrap();
                let nb = candle_core::Tensor::new(&[b0, b0 - 1000.0], t.device()).unwrap();
                var.set(&nb.to_dtype(t.dtype()).unwrap()).unwrap();
                done += 1;
            }
        }
        assert_eq!(done, 2, "last layer not found");
    }
    let net = Net::from_model(&m).unwrap();
    (m, net)
}

/// Issue #11 (lower side): on candle MLPs with 2 inputs and one logit (S = −f: ∇S is constant on
/// every activation region, the exact constant is the largest region gradient meeting the ball),
/// the pattern search never exceeds the exact constant, its point lies in the ball and carries
/// the reported gradient norm, and it reaches the exact constant on balls where PGD (default
/// settings, same oracle) stays below it — a search that degenerates to PGD fails here.
#[test]
fn pattern_search_reaches_the_exact_constant_where_pgd_does_not() {
    let (mut balls, mut reached, mut pgd_reached, mut beats) = (0, 0, 0, 0);
    for seed in 0..8u64 {
        let hidden: &[usize] = if seed % 2 == 0 { &[16, 12] } else { &[24] };
        let (m, net) = one_logit_mlp(hidden, 900 + seed);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 256,
        };
        let mut r = rng(910 + seed);
        for (norm, eps) in [(Norm::L2, 0.4), (Norm::Linf, 0.3), (Norm::L2, 1.0)] {
            let ball = Ball::new(random_image(2, &mut r), eps, norm, false).unwrap();
            let exact = exact_constant(&net, &ball);
            let pgd = lower_by_pgd(&oracle, &ball, &PgdConfig::default(), &mut r).unwrap();
            let p = lower_by_pattern(&oracle, &net, &ball, 1.0, &PatternConfig::default(), &mut r)
                .unwrap();
            assert!(
                ball.contains(&p.point),
                "seed {seed}: point outside the ball"
            );
            let at = oracle
                .grad_norms(std::slice::from_ref(&p.point), norm)
                .unwrap()[0];
            assert_eq!(
                at.to_bits(),
                p.value.to_bits(),
                "value not read at its point"
            );
            assert!(
                p.value <= exact * (1.0 + 1e-9) && pgd <= exact * (1.0 + 1e-9),
                "seed {seed} {norm:?}: pattern {} pgd {pgd} exact {exact}",
                p.value
            );
            let hit = |v: f64| v >= exact * (1.0 - 1e-6);
            balls += 1;
            reached += usize::from(hit(p.value));
            pgd_reached += usize::from(hit(pgd));
            beats += usize::from(hit(p.value) && !hit(pgd));
            eprintln!(
                "seed {seed} {norm:?} eps {eps}: exact {exact:.6} pattern {:.6} pgd {pgd:.6}",
                p.value
            );
        }
    }
    eprintln!("{balls} balls: pattern reached {reached}, PGD {pgd_reached}, pattern only {beats}");
    // Measured: 12 of 24 reached, PGD 3, pattern only 9; with τ = 0 throughout (hard gates: the
    // same ascent without the surrogate) 6, 4 and 3, which these thresholds refuse.
    assert!(
        beats >= 6,
        "pattern reached the exact constant where PGD did not on {beats} balls"
    );
    assert!(reached >= 2 * pgd_reached + 2, "{reached} vs {pgd_reached}");
}

/// On dense, conv + max-pool and residual nets, ℓ2 and ℓ∞, with and without the pixel box: the
/// pattern search's value is the true gradient norm at its point, the point lies in the ball,
/// and the value is below the certified local bound (the branch and bound, sound at any budget).
#[test]
fn pattern_search_stays_below_certified_bounds() {
    let cfg = BabConfig {
        budget_s: 600.0,
        max_domains: 20,
        ..BabConfig::default()
    };
    let pattern = PatternConfig {
        steps: 25,
        restarts: 3,
        ..PatternConfig::default()
    };
    for seed in 0..2u64 {
        let nets = [
            ("mlp", mlp([1, 3, 3], &[10, 8], 4, 940 + seed).1),
            ("lenet", tiny_lenet(950 + seed)),
            ("resnet", tiny_resnet(960 + seed, true)),
        ];
        for (name, net) in nets {
            let n = net.input_dim();
            let mut r = rng(970 + seed);
            for (norm, eps, unit) in [
                (Norm::L2, 0.5, false),
                (Norm::L2, 0.3, true),
                (Norm::Linf, 0.1, false),
                (Norm::Linf, 0.05, true),
            ] {
                let ball = Ball::new(random_image(n, &mut r), eps, norm, unit).unwrap();
                let true_norms = |xs: &[Vec<f64>]| {
                    xs.iter()
                        .map(|x| Ok(norm.dual_norm(&score_grad(&net, x, 1.0)?)))
                        .collect()
                };
                let p = pattern_ascent(true_norms, &net, &ball, 1.0, &pattern, &mut r).unwrap();
                assert!(ball.contains(&p.point), "{name}: point outside the ball");
                let at = norm.dual_norm(&score_grad(&net, &p.point, 1.0).unwrap());
                assert_eq!(at.to_bits(), p.value.to_bits());
                let b = lipschitz_bab(&net, &ball, 1.0, &cfg, p.value).unwrap();
                assert!(
                    p.value <= b.upper,
                    "{name} {norm:?} box {unit}: pattern {} > certified {}",
                    p.value,
                    b.upper
                );
            }
        }
    }
}

/// The surrogate's gradient at τ = 0 is the true ∇S (every gate hard), on every node kind; at
/// a small τ it is close to it away from kinks.
#[test]
fn surrogate_gradient_at_zero_temperature_is_the_true_gradient() {
    for seed in 0..3u64 {
        let nets = [
            ("mlp", mlp([1, 3, 3], &[10, 8], 4, 980 + seed).1),
            ("lenet", tiny_lenet(985 + seed)),
            ("resnet", tiny_resnet(990 + seed, true)),
        ];
        for (name, net) in nets {
            let mut r = rng(995 + seed);
            let x = random_image(net.input_dim(), &mut r);
            let g = score_grad(&net, &x, 1.0).unwrap();
            let s0 = surrogate_grad(&net, &x, &[], 1.0).unwrap();
            assert_eq!(g, s0, "{name}: τ = 0");
            let s1 = surrogate_grad(&net, &x, &[1e-9; 64], 1.0).unwrap();
            let d: f64 = g.iter().zip(&s1).map(|(a, b)| (a - b).abs()).sum();
            let gn: f64 = g.iter().map(|a| a.abs()).sum();
            assert!(d <= 1e-6 * gn.max(1e-12), "{name}: τ = 1e-9 differs by {d}");
            // A large τ changes the gradient (the surrogate is not the network).
            let s2 = surrogate_grad(&net, &x, &[10.0; 64], 1.0).unwrap();
            assert_ne!(g, s2, "{name}: τ = 10");
        }
    }
}

/// `--pattern-restarts 0` with `pattern` in `--methods` is refused before anything is read.
#[test]
fn zero_pattern_restarts_or_steps_is_bad_input() {
    for flag in ["--pattern-restarts", "--pattern-steps"] {
        let dir = tempfile::tempdir().unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_oodcert"))
            .args([
                "lipschitz",
                "--model",
                "/nonexistent/m.safetensors",
                "--data",
                "digits8:test",
                "--methods",
                "pgd,pattern",
                flag,
                "0",
                "--out",
                dir.path().join("o").to_str().unwrap(),
            ])
            .env("OODCERT_NO_FETCH", "1")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(flag), "{err}");
        assert!(!dir.path().join("o").exists());
    }
}

/// Probe (ignored): on a trained model, the ReLUs whose sign at the pattern search's best point
/// differs from the centre's, per ReLU layer, against the units the certified pre-activation
/// boxes leave sign-uncertain (`local::pre_bounds`, CROWN); and the ratio of the search's value
/// to PGD's. `OODCERT_PROBE_MODEL=/work/bench/lenet.safetensors OODCERT_DATA=/work/bench/data
/// OODCERT_PROBE_NORM=linf OODCERT_PROBE_EPS=0.005 cargo test --release --test lipschitz_pattern
/// probe -- --ignored --nocapture`.
#[test]
#[ignore = "probe on a trained model (OODCERT_PROBE_MODEL), run by hand"]
fn probe_flipped_units_at_the_best_point() {
    use oodcert::bounds::ibp::Trace;
    use oodcert::lipschitz::local::{PreBounds, pre_bounds};
    let Ok(path) = std::env::var("OODCERT_PROBE_MODEL") else {
        eprintln!("set OODCERT_PROBE_MODEL");
        return;
    };
    let norm = match std::env::var("OODCERT_PROBE_NORM").as_deref() {
        Ok("l2") => Norm::L2,
        _ => Norm::Linf,
    };
    let eps: f64 = std::env::var("OODCERT_PROBE_EPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.005);
    let dev = candle_core::Device::Cpu;
    let m = oodcert::model::Model::load_energy_of_as(
        &path,
        &dev,
        oodcert::score::ScoreKind::Energy,
        "--score",
        candle_core::DType::F64,
    )
    .unwrap();
    let net = Net::from_model(&m).unwrap();
    let data = oodcert::data::load_as(
        "mnist:test",
        &oodcert::data::default_data_dir(),
        net.input_shape,
    )
    .unwrap();
    let oracle = GradOracle {
        model: &m,
        temperature: 1.0,
        batch: 256,
    };
    // The inputs of the ReLU nodes (a chain) at x.
    let relu_inputs = |x: &[f64]| -> Vec<Vec<f64>> {
        let mut v = x.to_vec();
        let mut out = Vec::new();
        for node in &net.nodes {
            if matches!(node, Node::Relu) {
                out.push(v.clone());
            }
            v = oodcert::bounds::net::forward_nodes(std::slice::from_ref(node), v).unwrap();
        }
        out
    };
    for i in 0..5 {
        let x: Vec<f64> = data.image(i).iter().map(|&v| v as f64).collect();
        let ball = Ball::new(x.clone(), eps, norm, false).unwrap();
        let mut r = rng(i as u64);
        let pgd = lower_by_pgd(&oracle, &ball, &PgdConfig::default(), &mut r).unwrap();
        let p =
            lower_by_pattern(&oracle, &net, &ball, 1.0, &PatternConfig::default(), &mut r).unwrap();
        let (traces, _) = pre_bounds(&net, &ball, PreBounds::Crown { max_dim: 4096 }).unwrap();
        let boxes: Vec<_> = net
            .nodes
            .iter()
            .zip(&traces)
            .filter(|(n, _)| matches!(n, Node::Relu))
            .map(|(_, t)| match t {
                Trace::Leaf(b) => b.clone(),
                _ => panic!("chain nets only"),
            })
            .collect();
        let (zc, zp) = (relu_inputs(&x), relu_inputs(&p.point));
        let mut line = format!(
            "image {i}: pattern {:.4} pgd {pgd:.4} ratio {:.3}; per ReLU layer flipped at the point / uncertain in the boxes (on→off, off→on):",
            p.value,
            p.value / pgd
        );
        for ((a, b), bx) in zc.iter().zip(&zp).zip(&boxes) {
            let on_off = a
                .iter()
                .zip(b)
                .filter(|(a, b)| **a > 0.0 && **b <= 0.0)
                .count();
            let off_on = a
                .iter()
                .zip(b)
                .filter(|(a, b)| **a <= 0.0 && **b > 0.0)
                .count();
            let unc = bx
                .lo
                .iter()
                .zip(&bx.hi)
                .filter(|(l, h)| **l < 0.0 && **h > 0.0)
                .count();
            line += &format!(" {}/{unc} ({on_off}, {off_on})", on_off + off_on);
        }
        eprintln!("{line}");
    }
}

/// On MNIST-like centres (float32 k/255 pixels) and the benchmarked ℓ∞ ε = 0.005, an iterate
/// clamped to the rounded c ± ε lies an ulp outside the ball for most pixel values; the search
/// must pull it back, so no point it reads is outside the ball (it used to drop ~9 of 10
/// iterates there, review 2026-12-06) and its best point is not merely a starting point.
#[test]
fn linf_iterates_on_the_edge_of_a_pixel_ball_stay_in_the_ball() {
    let net = tiny_lenet(990);
    let n = net.input_dim();
    // Every pixel a nonzero k/255 in f32, as a decoded image is.
    let x: Vec<f64> = (0..n)
        .map(|i| ((1 + (i * 37) % 254) as f32 / 255.0) as f64)
        .collect();
    let pattern = PatternConfig {
        steps: 20,
        restarts: 2,
        ..PatternConfig::default()
    };
    for unit in [false, true] {
        let ball = Ball::new(x.clone(), 0.005, Norm::Linf, unit).unwrap();
        let mut r = rng(991);
        let true_norms = |xs: &[Vec<f64>]| {
            xs.iter()
                .map(|x| Ok(Norm::Linf.dual_norm(&score_grad(&net, x, 1.0)?)))
                .collect()
        };
        let p = pattern_ascent(true_norms, &net, &ball, 1.0, &pattern, &mut r).unwrap();
        assert_eq!(
            p.rejected, 0,
            "box {unit}: {} of {} points outside",
            p.rejected, p.points
        );
        assert_eq!(p.points, 2 * 21);
        assert!(ball.contains(&p.point));
        // The sign steps reach the edge: the best point has coordinates at distance ε.
        let at_edge = p
            .point
            .iter()
            .zip(&x)
            .filter(|(a, c)| (*a - *c).abs() > 0.999 * 0.005)
            .count();
        assert!(
            at_edge > n / 2,
            "box {unit}: only {at_edge} of {n} coordinates at the edge"
        );
    }
}
