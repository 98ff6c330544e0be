//! DOS (Jiang et al., ICLR 2024) as a training baseline: the (K+1)-output absent-class model, its
//! K-output view, the absent-class score, the config rules, and the trainer's DOS objective
//! checked against a hand computation, for determinism, resumption and learning.

mod common;

use candle_core::{D, DType, Device, Tensor};
use oodcert::Error;
use oodcert::model::{Arch, Classifier, Model, ModelSpec};
use oodcert::score::{ScoreKind, energy_f64, score_and_input_grad, score_batch};
use oodcert::train::losses::{absent_class_ce, dos_objective};
use oodcert::train::{TrainConfig, TrainOptions, train};
use std::path::{Path, PathBuf};

fn spec(k_outputs: usize) -> ModelSpec {
    ModelSpec {
        arch: Arch::Mlp { hidden: vec![6] },
        input_shape: [1, 4, 4],
        num_classes: k_outputs,
        mean: vec![0.4],
        std: vec![0.3],
    }
}

/// Deterministic pseudo-random pixels in [0,1] (splitmix64), shape (n, 1, 4, 4).
fn pixels(seed: u64, n: usize) -> Tensor {
    Tensor::from_vec(
        common::splitmix_unit(seed, n * 16),
        (n, 1, 4, 4),
        &Device::Cpu,
    )
    .unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap()
}

fn lse(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|z| (z - m).exp()).sum::<f64>().ln()
}

#[test]
fn absent_class_model_forward_save_and_load() {
    let t = tempfile::tempdir().unwrap();
    let full = Model::init(spec(4), &Device::Cpu, DType::F64, 5)
        .unwrap()
        .into_absent_class()
        .unwrap();
    assert!(full.has_absent_class());
    assert_eq!(full.id_classes(), 3);
    let x = pixels(1, 7);
    let z = full.logits(&x).unwrap();
    assert_eq!(z.dims(), &[7, 4]);
    let p = t.path().join("dos.safetensors");
    full.save(&p).unwrap();
    // As stored: K+1 outputs, the absent class kept, identical logits.
    let back = Model::load_full(&p, &Device::Cpu).unwrap();
    assert!(back.has_absent_class());
    assert_eq!(back.spec(), full.spec());
    assert_eq!(rows(&back.logits(&x).unwrap()), rows(&z));
    // The format tag tells readers apart.
    let bytes = std::fs::read(&p).unwrap();
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).to_string();
    assert!(head.contains("oodcert-model-v1-absent-class"), "{head}");
    // `load` is the scorer's view: K outputs, exactly the first K logits.
    let view = Model::load(&p, &Device::Cpu).unwrap();
    assert!(!view.has_absent_class());
    assert_eq!(view.spec().num_classes, 3);
    let zv = rows(&view.logits(&x).unwrap());
    for (a, b) in zv.iter().zip(rows(&z)) {
        assert_eq!(a[..], b[..3]);
    }
    // The flag survives a dtype change; a plain model keeps the old format and loads unchanged.
    assert!(full.to_dtype(DType::F32).unwrap().has_absent_class());
    let plain = Model::init(spec(3), &Device::Cpu, DType::F32, 5).unwrap();
    let pp = t.path().join("plain.safetensors");
    plain.save(&pp).unwrap();
    let pb = std::fs::read(&pp).unwrap();
    let ph = String::from_utf8_lossy(&pb[..pb.len().min(4096)]).to_string();
    assert!(
        ph.contains("\"oodcert-model-v1\"") && !ph.contains("absent"),
        "{ph}"
    );
    let a = Model::load(&pp, &Device::Cpu).unwrap();
    let b = Model::load_full(&pp, &Device::Cpu).unwrap();
    assert!(!a.has_absent_class() && !b.has_absent_class());
    assert_eq!(a.all_tensors().len(), b.all_tensors().len());
    // Too few outputs for an absent class.
    assert!(
        Model::init(spec(2), &Device::Cpu, DType::F32, 0)
            .unwrap()
            .into_absent_class()
            .is_err()
    );
}

#[test]
fn k_output_view_scores_the_energy_of_the_first_k_logits() {
    let full = Model::init(spec(4), &Device::Cpu, DType::F64, 9)
        .unwrap()
        .into_absent_class()
        .unwrap();
    let view = full.id_logits_view().unwrap();
    let x = pixels(2, 6);
    let z = rows(&full.logits(&x).unwrap());
    for t in [1.0, 2.5] {
        let s_view = score_batch(&view, &x, ScoreKind::Energy, t).unwrap();
        // The full model scored by energy reads its K ID logits too.
        let s_full = score_batch(&full, &x, ScoreKind::Energy, t).unwrap();
        for i in 0..6 {
            let want = energy_f64(&z[i][..3], t);
            assert!((s_view[i] - want).abs() < 1e-12, "{} vs {want}", s_view[i]);
            assert!((s_full[i] - want).abs() < 1e-12);
            // ... and not over all K+1 logits.
            assert!((want - energy_f64(&z[i], t)).abs() > 1e-9);
        }
        let (_, gv) = score_and_input_grad(&view, &x, ScoreKind::Energy, t).unwrap();
        let (_, gf) = score_and_input_grad(&full, &x, ScoreKind::Energy, t).unwrap();
        let d = (gv - gf).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f64>().unwrap() < 1e-12);
    }
    // DOS's score: log-odds of the absent-class probability, on the full model only.
    let s = score_batch(&full, &x, ScoreKind::AbsentClass, 1.0).unwrap();
    for i in 0..6 {
        let p = (z[i][3] - lse(&z[i])).exp();
        assert!(
            (s[i] - (p / (1.0 - p)).ln()).abs() < 1e-9,
            "{} vs {p}",
            s[i]
        );
    }
    let err = score_batch(&view, &x, ScoreKind::AbsentClass, 1.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent-class output"), "{err}");
}

#[test]
fn absent_row_extension_copies_k_rows_and_is_seeded() {
    let plain = Model::init(spec(3), &Device::Cpu, DType::F64, 4).unwrap();
    let a = plain.with_absent_row(11).unwrap();
    let b = plain.with_absent_row(11).unwrap();
    let c = plain.with_absent_row(12).unwrap();
    assert!(a.has_absent_class() && a.spec().num_classes == 4);
    let x = pixels(3, 5);
    let z0 = rows(&plain.logits(&x).unwrap());
    let za = rows(&a.logits(&x).unwrap());
    for (r0, ra) in z0.iter().zip(&za) {
        assert_eq!(r0[..], ra[..3]);
    }
    assert_eq!(za, rows(&b.logits(&x).unwrap()));
    assert_ne!(za, rows(&c.logits(&x).unwrap()));
    // The absent row follows nn.Linear's default: U(±1/√fan_in), fan_in = 6.
    let w = rows(a.classifier().weight());
    let bound = 1.0 / 6f64.sqrt();
    assert!(w[3].iter().all(|v| v.abs() <= bound), "{:?}", w[3]);
    assert!(a.with_absent_row(1).is_err());
}

#[test]
fn dos_objective_is_ce_plus_beta_absent_ce_on_a_hand_built_batch() {
    let z = [
        [2.0f64, -1.0, 0.5],
        [0.0, 3.0, -2.0],
        [1.0, 1.0, 4.0],
        [-0.5, 0.2, 0.1],
        [5.0, -3.0, 0.0],
    ];
    let logits = Tensor::new(&z, &Device::Cpu).unwrap();
    let labels = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
    let beta = 0.7;
    let (ce, abs) = dos_objective(&logits, &labels, 2, beta).unwrap();
    let ce_want = ((lse(&z[0]) - z[0][1]) + (lse(&z[1]) - z[1][0])) / 2.0;
    let abs_want = beta * (2..5).map(|i| lse(&z[i]) - z[i][2]).sum::<f64>() / 3.0;
    assert!((ce.to_scalar::<f64>().unwrap() - ce_want).abs() < 1e-12);
    assert!((abs.to_scalar::<f64>().unwrap() - abs_want).abs() < 1e-12);
    let plain = absent_class_ce(&logits.narrow(0, 2, 3).unwrap()).unwrap();
    assert!((plain.to_scalar::<f64>().unwrap() * beta - abs_want).abs() < 1e-12);
    assert!(dos_objective(&logits, &labels, 5, beta).is_err());
    assert!(dos_objective(&logits, &labels, 0, beta).is_err());
}

// ---- configs -------------------------------------------------------------------------------

const DOS_TOML: &str = r#"
[data]
id = "mnist:train"
aux = "fashion-mnist:train"
[model]
arch = "mlp"
hidden = [8]
absent_class = true
[train]
epochs = 1
batch_size = 16
[loss]
lambda_absent = 1.0
[sampler]
kind = "dos"
"#;

fn with(extra: &[(&str, &str)]) -> std::result::Result<TrainConfig, Error> {
    let mut table: toml::Table = DOS_TOML.parse().unwrap();
    for (k, v) in extra {
        oodcert::train::config::apply_override(&mut table, &format!("{k}={v}")).unwrap();
    }
    TrainConfig::from_toml(&toml::to_string(&table).unwrap())
}

#[test]
fn config_rules_for_the_absent_class() {
    let cfg = with(&[]).unwrap();
    assert!(cfg.model.absent_class && cfg.loss.lambda_absent == 1.0);
    for (set, key) in [
        (vec![("model.absent_class", "false")], "loss.lambda_absent"),
        (vec![("loss.lambda_absent", "0.0")], "model.absent_class"),
        (vec![("loss.lambda_absent", "-1.0")], "loss.lambda_absent"),
        (vec![("loss.lambda_energy", "0.1")], "loss.lambda_energy"),
        (vec![("loss.lambda_grad", "1.0")], "loss.lambda_grad"),
        (vec![("loss.lambda_oe", "0.5")], "loss.lambda_oe"),
        (vec![("sampler.kind", "\"greg-plus\"")], "sampler.kind"),
    ] {
        let err = with(&set).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::BadInput(_)), "{set:?}: {msg}");
        assert!(msg.contains(key), "{set:?} should name `{key}`: {msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
    // Random and greedy samplers are allowed (DOS's ablations); outliers are required.
    assert!(with(&[("sampler.kind", "\"random\"")]).is_ok());
    assert!(with(&[("sampler.kind", "\"greedy\"")]).is_ok());
    let mut table: toml::Table = DOS_TOML.parse().unwrap();
    table["data"].as_table_mut().unwrap().remove("aux");
    let err = TrainConfig::from_toml(&toml::to_string(&table).unwrap()).unwrap_err();
    assert!(err.to_string().contains("data.aux"), "{err}");
    // Plain configs serialise (and so hash) exactly as before the new keys existed.
    let plain = with(&[
        ("model.absent_class", "false"),
        ("loss.lambda_absent", "0.0"),
        ("loss.lambda_energy", "0.1"),
        ("sampler.kind", "\"random\""),
    ])
    .unwrap();
    let json = serde_json::to_string(&plain).unwrap();
    assert!(!json.contains("absent"), "{json}");
}

// ---- the trainer ---------------------------------------------------------------------------

/// Writes an IDX3 u8 image file (n images of 8×8); with `classes`, a sibling IDX1 label file.
/// ID: class 0 bright left half, class 1 bright right half; outliers (`classes` = None): bright
/// top half. Noise from a fixed LCG.
fn write_idx(dir: &Path, name: &str, n: usize, classes: Option<u8>, seed: u64) -> PathBuf {
    let (h, w) = (8usize, 8usize);
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    let (mut pix, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = classes.map(|k| (i % k as usize) as u8);
        labels.push(c.unwrap_or(0));
        for y in 0..h {
            for x in 0..w {
                let bright = match c {
                    Some(c) => (x < w / 2) == (c == 0),
                    None => y < h / 2,
                };
                let base: u32 = if bright { 170 } else { 30 };
                pix.push((base + next() % 80) as u8);
            }
        }
    }
    let mut img = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        img.extend_from_slice(&(d as u32).to_be_bytes());
    }
    img.extend_from_slice(&pix);
    let p = dir.join(format!("{name}-images-idx3-ubyte"));
    std::fs::write(&p, img).unwrap();
    if classes.is_some() {
        let mut lab = vec![0, 0, 8, 1];
        lab.extend_from_slice(&(n as u32).to_be_bytes());
        lab.extend_from_slice(&labels);
        std::fs::write(dir.join(format!("{name}-labels-idx1-ubyte")), lab).unwrap();
    }
    p
}

struct Toy {
    dir: tempfile::TempDir,
    id: PathBuf,
    aux: PathBuf,
}

fn toy() -> Toy {
    let dir = tempfile::tempdir().unwrap();
    let id = write_idx(dir.path(), "id", 32, Some(2), 7);
    let aux = write_idx(dir.path(), "aux", 64, None, 8);
    Toy { dir, id, aux }
}

fn dos_config(toy: &Toy) -> TrainConfig {
    let text = format!(
        r#"seed = 3
[data]
id = "path:{}"
aux = "path:{}"
[model]
arch = "mlp"
hidden = [16]
absent_class = true
mean = [0.45]
std = [0.3]
[optim]
kind = "sgd"
lr = 0.05
[schedule]
kind = "constant"
[train]
epochs = 100
batch_size = 16
aux_batch_size = 16
max_steps = 30
log_every = 1
[loss]
lambda_absent = 1.0
[sampler]
kind = "dos"
pool_factor = 2
num_cluster = 4
n_init = 2
"#,
        toy.id.display(),
        toy.aux.display()
    );
    TrainConfig::from_toml(&text).unwrap()
}

fn run(cfg: &TrainConfig, toy: &Toy, out: &str, resume: bool) -> PathBuf {
    let out = toy.dir.path().join(out);
    let opts = TrainOptions {
        out: out.clone(),
        data_root: toy.dir.path().to_path_buf(),
        device: Device::Cpu,
        resume,
        progress: false,
    };
    train(cfg, &opts).unwrap();
    out
}

fn log_column(out: &Path, col: &str) -> Vec<f64> {
    let mut r = csv::Reader::from_path(out.join("train_log.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let i = h.iter().position(|c| c == col).unwrap();
    r.records()
        .map(|rec| rec.unwrap()[i].parse::<f64>().unwrap())
        .collect()
}

#[test]
fn trainer_dos_loss_equals_ce_plus_absent_ce_computed_by_hand() {
    let toy = toy();
    // One full-batch step: every ID image and (pool = batch = the whole auxiliary set, so DOS
    // selects all of it) every outlier, from a known f64 starting model.
    let init = Model::init(
        ModelSpec {
            arch: Arch::Mlp { hidden: vec![16] },
            input_shape: [1, 8, 8],
            num_classes: 3,
            mean: vec![0.45],
            std: vec![0.3],
        },
        &Device::Cpu,
        DType::F64,
        21,
    )
    .unwrap()
    .into_absent_class()
    .unwrap();
    let init_path = toy.dir.path().join("init.safetensors");
    init.save(&init_path).unwrap();
    let mut cfg = dos_config(&toy);
    cfg.model.init_from = Some(init_path.display().to_string());
    cfg.train.batch_size = 32;
    cfg.train.aux_batch_size = Some(64);
    cfg.sampler.pool_factor = 1;
    cfg.train.max_steps = 1;
    cfg.loss.lambda_absent = 0.6;
    let out = run(&cfg, &toy, "one-step", false);
    let (loss, ce, abs) = (
        log_column(&out, "loss")[0],
        log_column(&out, "ce")[0],
        log_column(&out, "loss_absent")[0],
    );
    // By hand, from the starting model's logits.
    let id = oodcert::data::load(&format!("path:{}", toy.id.display()), toy.dir.path()).unwrap();
    let aux = oodcert::data::load_as(
        &format!("path:{}", toy.aux.display()),
        toy.dir.path(),
        id.shape,
    )
    .unwrap();
    let all = |n: usize| (0..n).collect::<Vec<_>>();
    let zi = rows(
        &init
            .logits(&id.batch(&all(32), &Device::Cpu).unwrap())
            .unwrap(),
    );
    let za = rows(
        &init
            .logits(&aux.batch(&all(64), &Device::Cpu).unwrap())
            .unwrap(),
    );
    let ce_want = zi
        .iter()
        .zip(&id.labels)
        .map(|(z, &y)| lse(z) - z[y as usize])
        .sum::<f64>()
        / 32.0;
    let abs_want = 0.6 * za.iter().map(|z| lse(z) - z[2]).sum::<f64>() / 64.0;
    assert!((ce - ce_want).abs() < 1e-9, "ce {ce} vs {ce_want}");
    assert!((abs - abs_want).abs() < 1e-9, "absent {abs} vs {abs_want}");
    assert!((loss - (ce_want + abs_want)).abs() < 1e-9, "loss {loss}");
    // The accuracy column is over the K ID logits.
    let acc_want = zi
        .iter()
        .zip(&id.labels)
        .filter(|(z, y)| {
            let best = if z[0] >= z[1] { 0 } else { 1 };
            best == **y as usize
        })
        .count() as f64
        / 32.0;
    assert!((log_column(&out, "acc")[0] - acc_want).abs() < 1e-12);
}

#[test]
fn same_seed_same_log_and_weights_and_resume_keeps_the_absent_class() {
    let toy = toy();
    // Fine-tuning from a K-output checkpoint: the absent row is drawn under the seed.
    let plain = Model::init(
        ModelSpec {
            arch: Arch::Mlp { hidden: vec![16] },
            input_shape: [1, 8, 8],
            num_classes: 2,
            mean: vec![0.45],
            std: vec![0.3],
        },
        &Device::Cpu,
        DType::F32,
        2,
    )
    .unwrap();
    let ck = toy.dir.path().join("ce.safetensors");
    plain.save(&ck).unwrap();
    let mut cfg = dos_config(&toy);
    cfg.model.init_from = Some(ck.display().to_string());
    cfg.train.max_steps = 12;
    cfg.train.checkpoint_every = 6;
    let a = run(&cfg, &toy, "a", false);
    let b = run(&cfg, &toy, "b", false);
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    let log = String::from_utf8(read(&a, "train_log.csv")).unwrap();
    assert_eq!(
        log.lines().next().unwrap(),
        "step,epoch,lr,loss,ce,loss_energy,loss_grad,frac_in_masked,frac_aux_masked,\
         grad_norm_in,grad_norm_aux,acc,loss_absent"
    );
    assert_eq!(read(&a, "train_log.csv"), read(&b, "train_log.csv"));
    assert_eq!(read(&a, "model.safetensors"), read(&b, "model.safetensors"));
    cfg.seed = 4;
    let c = run(&cfg, &toy, "c", false);
    assert_ne!(read(&a, "model.safetensors"), read(&c, "model.safetensors"));
    // The trained model keeps the copied K rows' role: first K logits = ID classes; it is an
    // absent-class model on disk.
    let m = Model::load_full(a.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(m.has_absent_class() && m.spec().num_classes == 3);
    // Resuming from the last checkpoint reads the K+1 model and reproduces the same file.
    cfg.seed = 3;
    let before = read(&a, "model.safetensors");
    run(&cfg, &toy, "a", true);
    assert_eq!(read(&a, "model.safetensors"), before);
    // An absent-class checkpoint cannot start a K-output run.
    let mut plain_cfg = cfg.clone();
    plain_cfg.model.absent_class = false;
    plain_cfg.loss.lambda_absent = 0.0;
    plain_cfg.loss.lambda_energy = 0.1;
    plain_cfg.sampler.kind = "random".into();
    plain_cfg.model.init_from = Some(a.join("model.safetensors").display().to_string());
    let opts = TrainOptions {
        out: toy.dir.path().join("refused"),
        data_root: toy.dir.path().to_path_buf(),
        device: Device::Cpu,
        resume: false,
        progress: false,
    };
    let err = train(&plain_cfg, &opts).err().unwrap().to_string();
    assert!(
        err.contains("model.init_from") && err.contains("absent_class"),
        "{err}"
    );
}

#[test]
fn a_short_dos_run_lowers_the_absent_class_loss_and_separates_outliers() {
    let toy = toy();
    let mut cfg = dos_config(&toy);
    cfg.train.max_steps = 60;
    let out = run(&cfg, &toy, "learn", false);
    let abs = log_column(&out, "loss_absent");
    assert_eq!(abs.len(), 60);
    let first: f64 = abs[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = abs[55..].iter().sum::<f64>() / 5.0;
    assert!(
        last < 0.5 * first,
        "absent-class loss did not fall: {first} → {last}"
    );
    // DOS's score ranks the (training) outliers above every ID image.
    let m = Model::load_full(out.join("model.safetensors"), &Device::Cpu).unwrap();
    let id = oodcert::data::load(&format!("path:{}", toy.id.display()), toy.dir.path()).unwrap();
    let aux = oodcert::data::load_as(
        &format!("path:{}", toy.aux.display()),
        toy.dir.path(),
        id.shape,
    )
    .unwrap();
    let s = |d: &oodcert::data::Dataset| {
        let x = d
            .batch(&(0..d.len()).collect::<Vec<_>>(), &Device::Cpu)
            .unwrap();
        score_batch(&m, &x, ScoreKind::AbsentClass, 1.0).unwrap()
    };
    let (si, so) = (s(&id), s(&aux));
    let max_id = si.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let min_ood = so.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(max_id < min_ood, "ID max {max_id} vs outlier min {min_ood}");
    // And the ID classes are still told apart through the first K logits.
    let x = id
        .batch(&(0..32).collect::<Vec<_>>(), &Device::Cpu)
        .unwrap();
    let pred = m
        .logits(&x)
        .unwrap()
        .narrow(1, 0, 2)
        .unwrap()
        .argmax(D::Minus1)
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    let ok = pred
        .iter()
        .zip(&id.labels)
        .filter(|(p, y)| **p as i64 == **y)
        .count();
    assert!(ok >= 30, "ID accuracy {ok}/32");
}

#[test]
fn eval_scores_an_absent_class_model_both_ways() {
    use oodcert::evaluation::{EvalConfig, evaluate};
    let toy = toy();
    let mut cfg = dos_config(&toy);
    cfg.train.max_steps = 20;
    let out = run(&cfg, &toy, "evald", false);
    let model = out.join("model.safetensors");
    let eval = |score: ScoreKind, dir: &str| {
        let c = EvalConfig {
            model: model.clone(),
            id: format!("path:{}", toy.id.display()),
            ood: vec![format!("path:{}", toy.aux.display())],
            score,
            temperature: 1.0,
            rule: oodcert::metrics::FprRule::FPR95,
            limit: 0,
            subset: Default::default(),
            batch_size: 10,
            data_root: toy.dir.path().to_path_buf(),
            out: toy.dir.path().join(dir),
            progress: false,
        };
        evaluate(&c, &Device::Cpu)
    };
    let full = Model::load_full(&model, &Device::Cpu).unwrap();
    let id = oodcert::data::load(&format!("path:{}", toy.id.display()), toy.dir.path()).unwrap();
    let z = rows(
        &full
            .logits(
                &id.batch(&(0..32).collect::<Vec<_>>(), &Device::Cpu)
                    .unwrap(),
            )
            .unwrap(),
    );
    let abs = eval(ScoreKind::AbsentClass, "abs").unwrap();
    let en = eval(ScoreKind::Energy, "energy").unwrap();
    assert_eq!(z.len(), 32);
    for (i, zi) in z.iter().enumerate() {
        let log_odds = zi[2] - lse(&zi[..2]);
        let energy = -lse(&zi[..2]);
        assert!((abs.id.scores[i] - log_odds).abs() < 1e-5, "{i}");
        assert!((en.id.scores[i] - energy).abs() < 1e-5, "{i}");
        // Predictions are over the two ID classes only, whichever score.
        let want = if zi[0] >= zi[1] { 0 } else { 1 };
        assert_eq!(abs.id.predictions[i], want);
        assert_eq!(en.id.predictions[i], want);
    }
    assert_eq!(abs.id_accuracy, en.id_accuracy);
    // A K-output model has no absent class to score.
    let ce_path = toy.dir.path().join("plain.safetensors");
    Model::init(
        ModelSpec {
            arch: Arch::Mlp { hidden: vec![4] },
            input_shape: [1, 8, 8],
            num_classes: 2,
            mean: vec![0.5],
            std: vec![0.3],
        },
        &Device::Cpu,
        DType::F32,
        0,
    )
    .unwrap()
    .save(&ce_path)
    .unwrap();
    let c = EvalConfig {
        model: ce_path,
        id: format!("path:{}", toy.id.display()),
        ood: vec![format!("path:{}", toy.aux.display())],
        score: ScoreKind::AbsentClass,
        temperature: 1.0,
        rule: oodcert::metrics::FprRule::FPR95,
        limit: 0,
        subset: Default::default(),
        batch_size: 10,
        data_root: toy.dir.path().to_path_buf(),
        out: toy.dir.path().join("refused"),
        progress: false,
    };
    let err = evaluate(&c, &Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("--score absent-class") && err.contains("no absent class"),
        "{err}"
    );
}
