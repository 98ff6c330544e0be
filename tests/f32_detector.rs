//! The float32 detector against its certified error bound (proofs/f32_detector.md): candle's f32
//! score of every input, at batch sizes 1, 7 and 256 (the sample at different positions) and on
//! 1 and 2 rayon threads, must lie within E of the exact score's enclosure, at points and over
//! balls; and a sample within float32 rounding of γ gets radius 0 (the "Done when" of issue 12).

mod lipschitz_common;

use candle_core::{DType, Device, Tensor};
use lipschitz_common::{rng, spec};
use oodcert::bounds::energy::energy_bounds;
use oodcert::bounds::f32_detector::F32Detector;
use oodcert::bounds::ibp::ibp;
use oodcert::bounds::{Ball, Interval, Net, Norm};
use oodcert::lipschitz::f32_margin::{
    bound_prop_certify_f32, centre_margin, lipschitz_certify_f32,
};
use oodcert::lipschitz::local::PreBounds;
use oodcert::lipschitz::radius::{bound_prop_certify, lipschitz_certify};
use oodcert::model::{Arch, Classifier, Model};
use oodcert::score::{ScoreKind, score_batch};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::Path;

/// An f32 model with non-trivial BatchNorm statistics (running mean/var, affine weights).
fn f32_model(arch: Arch, shape: [usize; 3], k: usize, seed: u64, absent: bool) -> Model {
    scaled_model(arch, shape, k, seed, absent, 1.0)
}

/// [`f32_model`] with every Linear/conv weight times `scale` (trained nets have logits of ~10;
/// large logits make the GEMM rounding, not the logsumexp's, dominate the error).
fn scaled_model(
    arch: Arch,
    shape: [usize; 3],
    k: usize,
    seed: u64,
    absent: bool,
    scale: f32,
) -> Model {
    let m = Model::init(spec(arch, shape, k), &Device::Cpu, DType::F32, seed).unwrap();
    let mut r = rng(seed + 1000);
    let mut t: HashMap<String, Tensor> = m.all_tensors().into_iter().collect();
    for (name, v) in t.iter_mut() {
        let n = v.elem_count();
        let vals: Option<Vec<f32>> = if name.ends_with("running_mean") {
            Some((0..n).map(|_| r.random_range(-0.5f32..0.5)).collect())
        } else if name.ends_with("running_var") {
            Some((0..n).map(|_| r.random_range(0.2f32..3.0)).collect())
        } else if name.contains("bn") && name.ends_with("weight") {
            Some((0..n).map(|_| r.random_range(0.5f32..1.5)).collect())
        } else if name.contains("bn") && name.ends_with("bias") {
            Some((0..n).map(|_| r.random_range(-0.3f32..0.3)).collect())
        } else if name.ends_with("weight") && !name.contains("bn") {
            Some(
                v.flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|w| w * scale)
                    .collect(),
            )
        } else {
            None
        };
        if let Some(vals) = vals {
            *v = Tensor::from_vec(vals, v.shape(), &Device::Cpu).unwrap();
        }
    }
    let m = Model::from_tensors(
        m.spec().clone(),
        t,
        DType::F32,
        &Device::Cpu,
        Path::new("<test>"),
    )
    .unwrap();
    if absent {
        m.into_absent_class().unwrap()
    } else {
        m
    }
}

fn images(n: usize, dim: usize, r: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| (0..dim).map(|_| r.random::<f32>()).collect())
        .collect()
}

/// f32 scores of `xs` run in consecutive batches of `batch`.
fn scores(model: &Model, xs: &[Vec<f32>], batch: usize, kind: ScoreKind, t: f64) -> Vec<f64> {
    let [c, h, w] = model.spec().input_shape;
    let mut out = vec![];
    for chunk in xs.chunks(batch) {
        let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
        let x = Tensor::from_vec(flat, (chunk.len(), c, h, w), &Device::Cpu).unwrap();
        out.extend(score_batch(model, &x, kind, t).unwrap());
    }
    out
}

/// [S_lo, S_hi] ∋ the exact score at the point (IBP of the point, outward-rounded).
fn enclosure(net: &Net, x: &[f64], t: f64) -> (f64, f64) {
    let (_, z) = ibp(&net.nodes, Interval::point(x)).unwrap();
    energy_bounds(&z, t)
}

/// The exact network whose energy is the detector's score (the absent-class view for DOS).
fn exact_net(model: &Model, kind: ScoreKind) -> Net {
    let m = model.to_dtype(DType::F64).unwrap();
    let m = match kind {
        ScoreKind::AbsentClass => m.absent_score_view().unwrap(),
        _ => m.id_logits_view().unwrap(),
    };
    Net::from_model(&m).unwrap()
}

struct Stats {
    worst_ratio: f64,
    max_err: f64,
    max_bound: f64,
}

/// Every f32 score of the first `n_check` of 256 inputs, in every batching, lies in
/// [S_lo − E, S_hi + E].
fn check_points(model: &Model, kind: ScoreKind, t: f64, n_check: usize, seed: u64) -> Stats {
    let det = F32Detector::new(model, kind, t).unwrap();
    let net = exact_net(model, kind);
    let mut r = rng(seed);
    let xs = images(256, net.input_dim(), &mut r);
    let mut runs: Vec<(String, Vec<f64>)> = vec![];
    for b in [1usize, 7, 256] {
        let take = (n_check.div_ceil(b) * b).min(256);
        runs.push((format!("batch {b}"), scores(model, &xs[..take], b, kind, t)));
    }
    // The sample at a different position of a full batch.
    let mut rev = xs.clone();
    rev.reverse();
    let mut s = scores(model, &rev, 256, kind, t);
    s.reverse();
    runs.push(("batch 256 reversed".into(), s));
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let s = pool.install(|| scores(model, &xs, 256, kind, t));
        runs.push((format!("batch 256 on {threads} threads"), s));
    }
    let mut st = Stats {
        worst_ratio: 0.0,
        max_err: 0.0,
        max_bound: 0.0,
    };
    for (i, x) in xs.iter().enumerate().take(n_check) {
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let e = det.error_at(&x64).unwrap();
        let (lo, hi) = enclosure(&net, &x64, t);
        assert!(e > 0.0 && !e.is_nan() && lo <= hi, "{e} [{lo}, {hi}]");
        st.max_bound = st.max_bound.max(e);
        for (name, s) in &runs {
            let s = s[i];
            assert!(
                lo - e <= s && s <= hi + e,
                "sample {i}, {name}: f32 score {s} outside [{lo}, {hi}] ± E = {e}"
            );
            let d = (s - 0.5 * (lo + hi)).abs();
            st.max_err = st.max_err.max(d);
            st.worst_ratio = st.worst_ratio.max(d / e);
        }
    }
    eprintln!(
        "{kind:?} T={t}: max |S32 − S| = {:.3e}, max E = {:.3e}, max ratio {:.3}",
        st.max_err, st.max_bound, st.worst_ratio
    );
    st
}

#[test]
fn mlp_f32_scores_lie_within_the_bound() {
    for (seed, t, hidden, scale) in [
        (1u64, 1.0, vec![64, 32], 1.0),
        (2, 2.5, vec![128], 1.0),
        (3, 0.5, vec![], 1.0),
        (4, 1.0, vec![64, 32], 4.0),
        (5, 1.0, vec![256, 256], 3.0),
    ] {
        let m = scaled_model(Arch::Mlp { hidden }, [1, 12, 12], 10, seed, false, scale);
        let st = check_points(&m, ScoreKind::Energy, t, 256, seed);
        // Useful, not only sound: E stays far below any practical margin.
        assert!(st.max_bound < 5e-2, "E = {}", st.max_bound);
    }
}

#[test]
fn absent_class_f32_scores_lie_within_the_bound() {
    for t in [1.0, 2.0] {
        let m = f32_model(Arch::Mlp { hidden: vec![48] }, [1, 10, 10], 6, 7, true);
        check_points(&m, ScoreKind::AbsentClass, t, 128, 7);
        check_points(&m, ScoreKind::Energy, t, 64, 8);
    }
}

#[test]
fn lenet_f32_scores_lie_within_the_bound() {
    let m = f32_model(Arch::Lenet, [1, 12, 12], 10, 4, false);
    check_points(&m, ScoreKind::Energy, 1.0, 48, 4);
}

#[test]
fn resnet_f32_scores_lie_within_the_bound() {
    let m = f32_model(Arch::Resnet18, [3, 8, 8], 10, 5, false);
    check_points(&m, ScoreKind::Energy, 1.0, 8, 5);
}

/// Over a ball: every f32 point sampled in it scores within E_ball of its exact enclosure, for E
/// on the ball's bounding box alone and for E with the detector's own IBP / CROWN trace of the ball
/// (`f32_margin::ball_error`, what the certificates use), which must be no larger.
#[test]
fn f32_scores_over_a_ball_lie_within_the_ball_bound() {
    use oodcert::lipschitz::f32_margin::ball_error;
    use oodcert::lipschitz::local::PreBounds;
    for (arch, shape, eps, norm, unit_box) in [
        (
            Arch::Mlp {
                hidden: vec![64, 32],
            },
            [1, 12, 12],
            0.05,
            Norm::Linf,
            false,
        ),
        (
            Arch::Mlp {
                hidden: vec![64, 32],
            },
            [1, 12, 12],
            0.5,
            Norm::L2,
            false,
        ),
        (Arch::Lenet, [1, 12, 12], 0.5, Norm::L2, true),
    ] {
        let m = f32_model(arch, shape, 10, 11, false);
        let det = F32Detector::new(&m, ScoreKind::Energy, 1.0).unwrap();
        let net = exact_net(&m, ScoreKind::Energy);
        let mut r = rng(12);
        let centre: Vec<f64> = images(1, net.input_dim(), &mut r)[0]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let ball = Ball::new(centre.clone(), eps, norm, unit_box).unwrap();
        let bx = ball.to_box();
        let e_box = det.error(&bx).unwrap();
        let e_ibp = ball_error(&det, &ball, PreBounds::Ibp).unwrap();
        let e_crown = ball_error(&det, &ball, PreBounds::Crown { max_dim: 4096 }).unwrap();
        let e_centre = det.error_at(&centre).unwrap();
        assert!(
            e_crown <= e_ibp && e_ibp <= e_box,
            "{e_crown} {e_ibp} {e_box}"
        );
        assert!(e_crown >= e_centre && e_crown.is_finite());
        let mut pts = vec![];
        while pts.len() < 64 {
            // Points of the ball, some on its boundary (shrunk a hair so that the f32 rounding of
            // the point stays inside: the certificate covers the f32 inputs of the ball).
            let mut y: Vec<f64> = centre
                .iter()
                .map(|c| c + 4.0 * eps * (2.0 * r.random::<f64>() - 1.0))
                .collect();
            ball.with_eps(eps * (1.0 - 1e-6)).project(&mut y);
            let y32: Vec<f32> = y.iter().map(|&v| v as f32).collect();
            let y64: Vec<f64> = y32.iter().map(|&v| v as f64).collect();
            if bx.contains(&y64) && ball.contains(&y64) {
                pts.push(y32);
            }
        }
        for b in [1usize, 7, 64] {
            let s = scores(&m, &pts, b, ScoreKind::Energy, 1.0);
            for (p, s) in pts.iter().zip(s) {
                let p64: Vec<f64> = p.iter().map(|&v| v as f64).collect();
                let (lo, hi) = enclosure(&net, &p64, 1.0);
                assert!(
                    lo - e_crown <= s && s <= hi + e_crown,
                    "{s} [{lo}, {hi}] ± {e_crown}"
                );
            }
        }
        eprintln!(
            "ball {norm:?} ε={eps}: E_centre = {e_centre:.3e}, E on the box {e_box:.3e}, with IBP trace {e_ibp:.3e}, with CROWN trace {e_crown:.3e}"
        );
    }
}

/// Issue 12's "Done when": γ between two float32 evaluations of the detector on one image (the
/// evaluation forward in a batch of 256, and the training forward alone, whose dense GEMMs sum
/// in another order; a PyTorch deployment of the same weights would be a third). The
/// exact-arithmetic certificates claim a positive radius, yet the float32 detector decides the
/// centre both ways; with the f32 error bound the sample is undecided, radius 0.
#[test]
fn a_sample_within_f32_rounding_of_gamma_gets_radius_zero() {
    let m = f32_model(
        Arch::Mlp {
            hidden: vec![64, 32],
        },
        [1, 12, 12],
        10,
        21,
        false,
    );
    let det = F32Detector::new(&m, ScoreKind::Energy, 1.0).unwrap();
    let net = exact_net(&m, ScoreKind::Energy);
    let mut r = rng(22);
    let xs = images(256, net.input_dim(), &mut r);
    let alone: Vec<f64> = xs
        .iter()
        .map(|x| {
            let t = Tensor::from_vec(x.clone(), (1, 1, 12, 12), &Device::Cpu).unwrap();
            let (s, _) =
                oodcert::score::score_and_input_grad(&m, &t, ScoreKind::Energy, 1.0).unwrap();
            s.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()[0]
        })
        .collect();
    let batched = scores(&m, &xs, 256, ScoreKind::Energy, 1.0);
    let i = (0..xs.len())
        .find(|&i| alone[i] != batched[i])
        .expect("some image scores differently in the two float32 forwards");
    let gamma = 0.5 * (alone[i] + batched[i]);
    // The two deployed decisions differ at the centre itself.
    assert_ne!(alone[i] > gamma, batched[i] > gamma);
    let x: Vec<f64> = xs[i].iter().map(|&v| v as f64).collect();
    let s64 = score_batch(
        &m.to_dtype(DType::F64).unwrap(),
        &Tensor::from_vec(x.clone(), (1, 1, 12, 12), &Device::Cpu).unwrap(),
        ScoreKind::Energy,
        1.0,
    )
    .unwrap()[0];
    assert!(s64 != gamma);
    let ball = Ball::new(x.clone(), 0.1, Norm::L2, false).unwrap();
    let gl = oodcert::lipschitz::global_bound(&net, Norm::L2)
        .unwrap()
        .value;
    // The exact-arithmetic rule certifies a positive radius (the defect).
    let old_lip = lipschitz_certify(&net, &ball.with_eps(1e-12), 1.0, s64, gamma, gl).unwrap();
    let old_bp = bound_prop_certify(&net, &ball.with_eps(1e-12), 1.0, s64, gamma).unwrap();
    assert!(old_lip > 0.0 || old_bp > 0.0, "{old_lip} {old_bp}");
    // The float32 rule: undecided, radius 0 on both routes, at every radius.
    let c = centre_margin(&net, &det, &x, s64, gamma, 1.0).unwrap();
    assert!(c.undecided(), "{c:?}");
    for eps in [1e-12, 1e-6, 0.1] {
        let b = ball.with_eps(eps);
        assert_eq!(
            lipschitz_certify_f32(&net, &det, &b, &c, gl, PreBounds::Ibp).unwrap(),
            0.0
        );
        assert_eq!(
            bound_prop_certify_f32(&net, &det, &b, &c, PreBounds::Ibp).unwrap(),
            0.0
        );
    }
    // A sample far from γ keeps a positive radius, smaller than the exact-arithmetic one.
    let far = s64 + 0.05;
    let c = centre_margin(&net, &det, &x, s64, far, 1.0).unwrap();
    assert!(!c.undecided() && c.err > 0.0);
    let b = ball.with_eps(0.1);
    let new = lipschitz_certify_f32(&net, &det, &b, &c, gl, PreBounds::Ibp).unwrap();
    let old = lipschitz_certify(&net, &b, 1.0, s64, far, gl).unwrap();
    assert!(new > 0.0 && new <= old, "{new} {old}");
    eprintln!(
        "sample {i}: f32 alone {} vs batched {}, S64 {s64}, E_centre {:.3e}; far: {new} ≤ {old}",
        alone[i], batched[i], c.err
    );
}

/// The score's own f32 rounding (no network): candle's f32 energy / absent-class log-odds of
/// exactly representable logits lies within `score_error(z, 0)` of the exact value.
#[test]
fn logsumexp_rounding_is_within_the_eval_bound() {
    use oodcert::bounds::f32_energy::score_error;
    let mut r = rng(31);
    let mut worst: f64 = 0.0;
    for trial in 0..400 {
        let k = [2usize, 3, 10, 100, 1000][trial % 5];
        let spread = [0.1f32, 3.0, 30.0, 100.0][trial / 5 % 4];
        let t = [1.0, 0.3, 2.5][trial / 20 % 3];
        let rows: Vec<Vec<f32>> = (0..8)
            .map(|_| {
                (0..k)
                    .map(|_| spread * (2.0 * r.random::<f32>() - 1.0))
                    .collect()
            })
            .collect();
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let z = Tensor::from_vec(flat, (8, k), &Device::Cpu).unwrap();
        for kind in [ScoreKind::Energy, ScoreKind::AbsentClass] {
            if kind == ScoreKind::AbsentClass && k < 3 {
                continue;
            }
            let s32 = oodcert::score::score(&z, kind, t)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            for (row, s) in rows.iter().zip(s32) {
                let z64: Vec<f64> = row.iter().map(|&v| v as f64).collect();
                let exact = match kind {
                    ScoreKind::Energy => oodcert::score::energy_f64(&z64, t),
                    _ => z64[k - 1] + oodcert::score::energy_f64(&z64[..k - 1], t),
                };
                let e = score_error(&Interval::point(&z64), &vec![0.0; k], kind, t).unwrap();
                // The f64 reference is itself within ~1e-15 relative of the exact value.
                let slack = 1e-14 * (1.0 + exact.abs());
                assert!(
                    (s - exact).abs() <= e + slack,
                    "{kind:?} K={k} T={t}: |{s} − {exact}| > {e}"
                );
                worst = worst.max((s - exact).abs() / e);
            }
        }
    }
    eprintln!("logsumexp: worst |S32 − S| / E = {worst:.3}");
}

/// The reproduction through the library's Lipschitz run: γ from the same 24 images, so
/// one sample's score sits on γ. That sample is undecided in float32 (radius 0 on both routes);
/// every row carries a positive, finite E, and exactly the rows whose margin exceeds E are
/// decided.
/// A Lipschitz run on 24 digits8 test images, γ from the same images, of the model at `mpath`.
fn run_config(dir: &Path, mpath: std::path::PathBuf) -> oodcert::lipschitz::Config {
    use oodcert::lipschitz::{BoundsKind, Config, Method, Options};
    Config {
        model: mpath,
        data: "digits8:test".into(),
        id_val: Some("digits8:test".into()),
        id_val_limit: 24,
        is_ood: false,
        limit: 24,
        subset: Default::default(),
        data_dir: Some(dir.to_path_buf()),
        out: dir.join("run"),
        quiet: true,
        shard: None,
        options: Options {
            norm: Norm::L2,
            eps: 0.1,
            unit_box: false,
            methods: vec![Method::Local, Method::Global, Method::Radius],
            score: ScoreKind::Energy,
            temperature: 1.0,
            samples: 8,
            pgd_steps: 3,
            pgd_restarts: 2,
            clever_batches: 5,
            clever_samples: 8,
            radius_iters: 5,
            radius_max: None,
            bounds: BoundsKind::Ibp,
            crown_max_dim: 4096,
            alpha_iters: 0,
            recurjac_max_work: 1e10,
            jacobian_max_work: 3e9,
            simplex: false,
            seed: 3,
            bab_budget: 10.0,
            bab_max_domains: None,
            pattern_steps: 40,
            pattern_restarts: 4,
        },
    }
}

#[test]
fn lipschitz_run_marks_the_sample_on_gamma_undecided() {
    use oodcert::lipschitz::record::read_csv;
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = lipschitz_common::mlp([1, 8, 8], &[16, 12], 10, 7);
    let mpath = dir.path().join("m.safetensors");
    m.to_dtype(DType::F32).unwrap().save(&mpath).unwrap();
    let cfg = run_config(dir.path(), mpath);
    oodcert::lipschitz::run(&cfg).unwrap();
    let rows = read_csv(&cfg.out.join("lipschitz.csv")).unwrap();
    assert_eq!(rows.len(), 24);
    let mut undecided = 0;
    for r in &rows {
        let e = r.f32_err_bound.unwrap();
        assert!(e > 0.0 && e.is_finite(), "{e}");
        let u = r.f32_undecided.unwrap();
        let margin = (r.score - r.threshold).abs();
        if margin <= e {
            assert!(u, "row {}: margin {margin} ≤ E {e} but decided", r.index);
        }
        if margin > 2.0 * e + 1e-9 {
            assert!(!u, "row {}: margin {margin} ≫ E {e} but undecided", r.index);
        }
        if u {
            undecided += 1;
            assert_eq!(r.radius_lipschitz, Some(0.0));
            assert_eq!(r.radius_bound_prop, Some(0.0));
            assert_eq!(r.radius_at_eps, Some(0.0));
        }
    }
    assert!((1..24).contains(&undecided), "{undecided} undecided");
    let s = std::fs::read_to_string(cfg.out.join("summary.csv")).unwrap();
    assert!(s.contains("share_f32_undecided") && s.contains("f32_err_bound"));
}

/// proofs/smoothing_floating_point.md: copies that cannot be certified equal to fl₃₂(x + σZ) of
/// the coupled ideal Gaussian are rare on MNIST-sized inputs (they only weaken bounds).
#[test]
fn checked_noise_is_almost_always_exact() {
    use oodcert::smoothing::noise::NoiseKey;
    let key = NoiseKey::new(0, "mnist:test");
    let mut r = rng(41);
    let x: Vec<f32> = (0..784)
        .map(|_| (r.random_range(0u32..256) as f32) / 255.0)
        .collect();
    let mut out = vec![0.0f32; 784];
    for sigma in [0.12, 0.25, 0.5, 1.0] {
        let copies = 2000u64;
        let inexact = (0..copies)
            .filter(|&c| !key.add_noise_checked(7, c, sigma, &x, &mut out))
            .count();
        eprintln!("σ = {sigma}: {inexact} of {copies} copies inexact");
        assert!((inexact as f64) < 1e-2 * copies as f64, "{inexact}");
    }
}

/// A model whose f32 forward overflows (two layers × 1e30: finite in f64, ∞ in f32) is undecided
/// everywhere: E = ∞, every radius 0. A NaN input box is an error (exit 1), never a bound.
#[test]
fn an_overflowing_f32_model_is_undecided_and_nan_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = lipschitz_common::mlp([1, 8, 8], &[16, 12], 10, 7);
    let t: HashMap<String, Tensor> = m
        .all_tensors()
        .into_iter()
        .map(|(k, v)| {
            let big = k == "fc2.weight" || k == "fc3.weight";
            let v = if big { (v * 1e30).unwrap() } else { v };
            (k, v.to_dtype(DType::F32).unwrap())
        })
        .collect();
    let big = Model::from_tensors(
        m.spec().clone(),
        t,
        DType::F32,
        &Device::Cpu,
        Path::new("<t>"),
    )
    .unwrap();
    let det = F32Detector::new(&big, ScoreKind::Energy, 1.0).unwrap();
    let x = vec![0.5; 64];
    assert_eq!(det.error_at(&x).unwrap(), f64::INFINITY);
    let mut nan = Interval::point(&x);
    nan.lo[3] = f64::NAN;
    assert!(det.error(&nan).is_err());
    let mpath = dir.path().join("big.safetensors");
    big.save(&mpath).unwrap();
    let cfg = run_config(dir.path(), mpath);
    match oodcert::lipschitz::run(&cfg) {
        // The f64 γ computation may already refuse the model (non-finite scores).
        Err(e) => assert!(e.exit_code() >= 1, "{e}"),
        Ok(rows) => {
            for r in rows {
                assert_eq!(r.f32_undecided, Some(true));
                assert_eq!(r.radius_lipschitz, Some(0.0));
                assert_eq!(r.radius_bound_prop, Some(0.0));
            }
        }
    }
}

/// `oodcert verify` checks the float32 detector too: a certificate whose γ lies between a
/// sample's f64 score and the f32 scores the detector gives it (alone and in a batch of two) is
/// reported violated, however small its radius (the f64 attack alone cannot see it).
#[test]
fn verify_catches_a_certificate_the_f32_detector_breaks() {
    use oodcert::lipschitz::record::{read_csv, to_csv_bytes};
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = lipschitz_common::mlp([1, 8, 8], &[16, 12], 10, 7);
    let mpath = dir.path().join("m.safetensors");
    let m32 = m.to_dtype(DType::F32).unwrap();
    m32.save(&mpath).unwrap();
    let cfg = run_config(dir.path(), mpath);
    oodcert::lipschitz::run(&cfg).unwrap();
    let csv = cfg.out.join("lipschitz.csv");
    let mut rows = read_csv(&csv).unwrap();
    let data = oodcert::data::load_as("digits8:test", dir.path(), [1, 8, 8]).unwrap();
    let f32_score = |x: &[f32], copies: usize| {
        let flat: Vec<f32> = (0..copies).flat_map(|_| x.iter().copied()).collect();
        let t = Tensor::from_vec(flat, (copies, 1, 8, 8), &Device::Cpu).unwrap();
        score_batch(&m32, &t, ScoreKind::Energy, 1.0).unwrap()[0]
    };
    // A sample whose f32 scores (batch 1 and 2) both lie strictly on one side of its f64 score.
    let (line, gamma) = rows
        .iter()
        .enumerate()
        .find_map(|(i, r)| {
            let x = data.image(r.index);
            let (a, b) = (f32_score(x, 1) - r.score, f32_score(x, 2) - r.score);
            (a * b > 0.0).then(|| (i, r.score + 0.5 * a.signum() * a.abs().min(b.abs())))
        })
        .expect("a sample whose f32 score differs from its f64 score");
    for (i, r) in rows.iter_mut().enumerate() {
        r.threshold = gamma;
        r.radius_bound_prop = Some(0.0);
        r.radius_lipschitz = Some(if i == line { 1e-12 } else { 0.0 });
    }
    std::fs::write(&csv, to_csv_bytes(&rows).unwrap()).unwrap();
    let mp = cfg.out.join("manifest.json");
    let mut man: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mp).unwrap()).unwrap();
    man["config"]["threshold"] = serde_json::json!(gamma);
    std::fs::write(&mp, serde_json::to_string_pretty(&man).unwrap()).unwrap();
    let (vrows, _) = oodcert::verify::verify_lipschitz_run(
        &cfg.out,
        None,
        dir.path(),
        &oodcert::verify::AttackConfig::default(),
        0,
    )
    .unwrap();
    assert_eq!(vrows.len(), 1);
    assert!(vrows[0].violated, "{:?}", vrows[0]);
}

/// An imported-graph model (`Arch::Graph`: residual block, zero padding, average pooling, a
/// channel concat with an identity branch, overlapping padded max-pooling): f32 scores within the
/// bound of the exact network's enclosure, so the Net lowering computes the model's map and its
/// float32 rules cover the layers' rounding.
#[test]
fn imported_graph_f32_scores_lie_within_the_bound() {
    use oodcert::model::arch::GraphLayer as G;
    let conv = |name: &str, c_in, c_out| G::Conv {
        name: name.into(),
        c_in,
        c_out,
        kernel: [3, 3],
        stride: 1,
        padding: 1,
        bias: true,
    };
    let bn = |name: &str, c| G::BatchNorm {
        name: name.into(),
        channels: c,
    };
    let layers = vec![
        conv("conv1", 3, 4),
        bn("bn1", 4),
        G::Relu,
        G::Pad { pads: [1; 4] },
        G::Residual {
            main: vec![conv("conv2", 4, 4), bn("bn2", 4), G::Relu],
            shortcut: vec![],
        },
        G::AvgPool {
            kernel: [2, 2],
            stride: [2, 2],
            pad: [0, 0],
        },
        G::Concat {
            branches: vec![vec![], vec![conv("conv3", 4, 2), G::Relu]],
        },
        G::MaxPool {
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
        },
        G::Relu,
        G::AvgPool {
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
        },
        G::Flatten,
        G::Linear {
            name: "fc".into(),
            in_features: 6 * 5 * 5,
            out_features: 10,
            bias: true,
        },
    ];
    let arch = Arch::Graph {
        name: "graph".into(),
        layers,
    };
    for scale in [1.0, 4.0] {
        let m = scaled_model(arch.clone(), [3, 8, 8], 10, 21, false, scale);
        let st = check_points(&m, ScoreKind::Energy, 1.0, 32, 21);
        assert!(st.max_bound < 5e-2, "E = {}", st.max_bound);
    }
}
