//! DOS's own score certified: the K-output view with rows w_k − w_K (`Model::absent_score_view`)
//! has as energy exactly the absent-class log-odds score, at every temperature; `oodcert
//! lipschitz --score absent-class` and `certify --score absent-class` certify it, and `verify`
//! attacks that same score (honest certificates hold, inflated ones are caught).

mod common;
use candle_core::{DType, Device, Tensor};
use common::{inflate, lcg, oodcert_in as run, verify_summary as summary, write_idx};
use oodcert::model::{Arch, Classifier, Model, ModelSpec};
use oodcert::score::{absent_class_log_odds, energy};
use std::path::Path;

/// A random DOS model: 3 ID classes plus the absent class, 6×6 inputs.
fn dos_model(dtype: DType) -> Model {
    let spec = ModelSpec {
        arch: Arch::Mlp {
            hidden: vec![12, 8],
        },
        input_shape: [1, 6, 6],
        num_classes: 4,
        mean: vec![0.5],
        std: vec![0.25],
    };
    Model::init(spec, &Device::Cpu, dtype, 7)
        .unwrap()
        .into_absent_class()
        .unwrap()
}

#[test]
fn the_view_energy_is_the_absent_class_score_at_every_temperature() {
    let full = dos_model(DType::F64);
    let view = full.absent_score_view().unwrap();
    assert_eq!(view.spec().num_classes, 3);
    assert!(!view.has_absent_class());
    let x = Tensor::from_vec(
        common::splitmix_unit(5, 16 * 36),
        (16, 1, 6, 6),
        &Device::Cpu,
    )
    .unwrap();
    for t in [1.0, 0.7, 2.5] {
        let want = common::flat_f64(&absent_class_log_odds(&full.logits(&x).unwrap(), t).unwrap());
        let got = common::flat_f64(&energy(&view.logits(&x).unwrap(), t).unwrap());
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() < 1e-10 * (1.0 + b.abs()),
                "T = {t}: {a} vs {b}"
            );
        }
        // (Not the energy of the ID logits: the view is a different function.)
        let id = common::flat_f64(
            &energy(&full.id_logits_view().unwrap().logits(&x).unwrap(), t).unwrap(),
        );
        assert!(id.iter().zip(&want).any(|(a, b)| (a - b).abs() > 1e-3));
    }
    let plain = full.id_logits_view().unwrap();
    let err = plain.absent_score_view().err().unwrap().to_string();
    assert!(err.contains("no absent class"), "{err}");
}

/// `n` unlabelled 6×6 images of LCG bytes, as a `path:` spec.
fn images(dir: &Path, n: usize) -> String {
    let mut s = 999u64;
    let pixels: Vec<u8> = (0..n * 36).map(|_| (lcg(&mut s) >> 56) as u8).collect();
    let p = write_idx(dir, "pts", [n, 6, 6], &pixels, None);
    format!("path:{}", p.display())
}

#[test]
fn lipschitz_and_smoothing_certify_the_dos_score_and_verify_attacks_it() {
    let t = tempfile::tempdir().unwrap();
    let data = images(t.path(), 8);
    let m = t.path().join("dos.safetensors");
    dos_model(DType::F32).save(&m).unwrap();
    let ms = m.to_str().unwrap();

    // Lipschitz: the CSV's score is DOS's score of the full model.
    let lip = t.path().join("lip");
    let o = run(
        &[
            "lipschitz",
            "--model",
            ms,
            "--data",
            &data,
            "--id-val",
            &data,
            "--norm",
            "l2",
            "--eps",
            "0.5",
            "--score",
            "absent-class",
            "--out",
            lip.to_str().unwrap(),
            "--quiet",
        ],
        t.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let full = Model::load_full(&m, &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let ds = oodcert::data::load(&data, t.path()).unwrap();
    let mut r = csv::Reader::from_path(lip.join("lipschitz.csv")).unwrap();
    let head = r.headers().unwrap().clone();
    let (ci, cs) = (
        head.iter().position(|h| h == "index").unwrap(),
        head.iter().position(|h| h == "score").unwrap(),
    );
    for rec in r.records() {
        let rec = rec.unwrap();
        let i: usize = rec[ci].parse().unwrap();
        let x = ds
            .batch(&[i], &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let want =
            common::flat_f64(&absent_class_log_odds(&full.logits(&x).unwrap(), 1.0).unwrap())[0];
        let got: f64 = rec[cs].parse().unwrap();
        assert!(
            (got - want).abs() < 1e-5 * (1.0 + want.abs()),
            "image {i}: {got} vs {want}"
        );
    }
    let verify_lip = |steps: &str| {
        run(
            &[
                "verify",
                "--run",
                lip.to_str().unwrap(),
                "--steps",
                steps,
                "--restarts",
                "3",
            ],
            t.path(),
        )
    };
    let v = verify_lip("20");
    assert!(
        v.status.success(),
        "honest: {}",
        String::from_utf8_lossy(&v.stderr)
    );
    let s = summary(&lip);
    assert_eq!(s[3], "0", "{s:?}");
    assert!(s[2].parse::<usize>().unwrap() > 0, "{s:?}");
    inflate(
        &lip.join("lipschitz.csv"),
        &["radius_lipschitz", "radius_bound_prop"],
        200.0,
    );
    assert_eq!(
        verify_lip("30").status.code(),
        Some(1),
        "inflated radii not caught"
    );

    // Smoothing.
    let cert = t.path().join("cert");
    let o = run(
        &[
            "certify",
            "--model",
            ms,
            "--data",
            &data,
            "--id-val",
            &data,
            "--sigma",
            "0.25",
            "--n0",
            "50",
            "--n",
            "2000",
            "--alpha",
            "0.001",
            "--score",
            "absent-class",
            "--out",
            cert.to_str().unwrap(),
        ],
        t.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let args = [
        "verify",
        "--run",
        cert.to_str().unwrap(),
        "--model",
        ms,
        "--steps",
        "20",
        "--restarts",
        "3",
        "--n-fresh",
        "2000",
    ];
    let v = run(&args, t.path());
    assert!(
        v.status.success(),
        "honest: {} {}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(summary(&cert)[2].parse::<usize>().unwrap() > 0);
    inflate(&cert.join("certify.csv"), &["radius", "radius_score"], 50.0);
    assert_eq!(
        run(&args, t.path()).status.code(),
        Some(1),
        "inflated radii not caught"
    );
}

#[test]
fn absent_class_on_a_plain_model_and_other_scores_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let data = images(t.path(), 4);
    let m = common::save_mlp(t.path(), [1, 6, 6], &[8], 3);
    let ms = m.to_str().unwrap();
    let out = t.path().join("o");
    let go = |score: &str| {
        run(
            &[
                "lipschitz",
                "--model",
                ms,
                "--data",
                &data,
                "--id-val",
                &data,
                "--norm",
                "l2",
                "--eps",
                "0.1",
                "--score",
                score,
                "--out",
                out.to_str().unwrap(),
                "--quiet",
            ],
            t.path(),
        )
    };
    let o = go("absent-class");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no absent class"));
    let o = go("msp");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--score msp"));
}
