//! `oodcert guaranteed` (issue #14 item 3, proofs/guaranteed_metrics.md): the per-sample score
//! bounds hold under dense sampling of the ball (float32 detector, as `oodcert eval` scores), PGD
//! (`oodcert verify`) does not beat them, a bound moved past the truth is caught, ε = 0 gives
//! `oodcert eval`'s metrics, and bad flags exit 2.

mod common;
use common::{lcg, ok, oodcert_in, s, save_mlp, splitmix_unit, write_idx};
use oodcert::evidence::CsvTable;
use oodcert::model::Model;
use oodcert::score::{ScoreKind, score_batch};
use std::path::{Path, PathBuf};

const SIDE: usize = 6;

/// Two classes of 6×6 images (class 0 bright left, class 1 bright right), label i % 2.
fn write_toy(dir: &Path, n: usize) -> PathBuf {
    let mut pix = Vec::with_capacity(n * SIDE * SIDE);
    let mut st = 3u64;
    for i in 0..n {
        for _ in 0..SIDE {
            for x in 0..SIDE {
                let bright = (x < SIDE / 2) == (i % 2 == 0);
                let base: u64 = if bright { 170 } else { 30 };
                pix.push((base + (lcg(&mut st) >> 33) % 80) as u8);
            }
        }
    }
    let labels: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
    write_idx(dir, "toy", [n, SIDE, SIDE], &pix, Some(&labels))
}

fn guaranteed(dir: &Path, model: &Path, data: &str, norm: &str, eps: &str, out: &str) -> PathBuf {
    let o = dir.join(out);
    ok(&oodcert_in(
        &[
            "guaranteed",
            "--model",
            s(model),
            "--id",
            &format!("{data}#0"),
            "--ood",
            &format!("{data}#1"),
            "--norm",
            norm,
            "--eps",
            eps,
            "--out",
            s(&o),
        ],
        dir,
    ));
    o
}

/// f32 detector scores of the given images (as `oodcert eval` computes them).
fn f32_scores(model: &Model, pts: &[Vec<f32>]) -> Vec<f64> {
    let flat: Vec<f32> = pts.iter().flatten().copied().collect();
    let x =
        candle_core::Tensor::from_vec(flat, (pts.len(), 1, SIDE, SIDE), &candle_core::Device::Cpu)
            .unwrap();
    score_batch(model, &x, ScoreKind::Energy, 1.0).unwrap()
}

#[test]
fn bounds_hold_under_dense_sampling_and_pgd_and_eps_0_is_eval() {
    let t = tempfile::tempdir().unwrap();
    let data = format!("path:{}", s(&write_toy(t.path(), 16)));
    let model_path = save_mlp(t.path(), [1, SIDE, SIDE], &[12, 8], 2);
    let model = Model::load(&model_path, &candle_core::Device::Cpu).unwrap();
    for (norm, eps) in [("linf", "0.02,0.1"), ("l2", "0.1,0.5")] {
        let out = guaranteed(t.path(), &model_path, &data, norm, eps, norm);
        let b = CsvTable::read(&out.join("bounds.csv")).unwrap();
        let c = |n: &str| b.col(n).unwrap();
        let (cs, ce, clo, chi, ci) = (c("score"), c("eps"), c("lower"), c("upper"), c("index"));
        assert_eq!(b.rows.len(), 16 * 3, "16 images × (ε = 0 and two radii)");
        let toy =
            oodcert::data::load_as(&format!("{data}#0-1"), t.path(), [1, SIDE, SIDE]).unwrap();
        for r in 0..b.rows.len() {
            let (score, e) = (b.num(r, cs).unwrap(), b.num(r, ce).unwrap());
            let (lo, hi) = (b.num(r, clo).unwrap(), b.num(r, chi).unwrap());
            assert!(lo <= score && score <= hi, "row {r}: {lo} {score} {hi}");
            if e == 0.0 {
                assert!(lo == score && hi == score);
                continue;
            }
            // Dense sampling: 300 points of the ball ∩ [0,1]^n (the centre's set, its index).
            let index = b.num(r, ci).unwrap() as usize;
            let is_id = b.cell(r, c("is_id")) == "1";
            let img = toy.image(if is_id { 2 * index } else { 2 * index + 1 });
            let u = splitmix_unit(r as u64, 300 * img.len());
            let pts: Vec<Vec<f32>> = (0..300)
                .map(|k| {
                    let d: Vec<f64> = (0..img.len())
                        .map(|j| 2.0 * u[k * img.len() + j] - 1.0)
                        .collect();
                    // ℓ∞: a corner-heavy draw; ℓ2: the same direction scaled to a radius ≤ ε.
                    let scale = if norm == "linf" {
                        e
                    } else {
                        e * u[k * img.len()] / d.iter().map(|v| v * v).sum::<f64>().sqrt()
                    };
                    let step = |v: f64| {
                        if norm == "linf" {
                            v.signum() * v.abs().sqrt()
                        } else {
                            v
                        }
                    };
                    img.iter()
                        .zip(&d)
                        .map(|(&p, &v)| ((p as f64 + scale * step(v)).clamp(0.0, 1.0)) as f32)
                        .collect()
                })
                .collect();
            for s32 in f32_scores(&model, &pts) {
                assert!(
                    lo <= s32 && s32 <= hi,
                    "row {r}: {s32} outside [{lo}, {hi}]"
                );
            }
        }
        // PGD does not beat any bound.
        let v = ok(&oodcert_in(&["verify", "--run", s(&out)], t.path()));
        assert!(v.contains("32 certificates attacked, 0 violated"), "{v}");
    }
    // ε = 0 is `oodcert eval`'s AUROC and FPR95 on the same sets.
    let g = CsvTable::read(&t.path().join("linf/guaranteed.csv")).unwrap();
    let ev = t.path().join("eval");
    ok(&oodcert_in(
        &[
            "eval",
            "--model",
            s(&model_path),
            "--id",
            &format!("{data}#0"),
            "--ood",
            &format!("{data}#1"),
            "--out",
            s(&ev),
        ],
        t.path(),
    ));
    let m = CsvTable::read(&ev.join("metrics.csv")).unwrap();
    let (ga, gf) = (g.col("auroc").unwrap(), g.col("fpr95").unwrap());
    assert_eq!(g.cell(0, g.col("eps").unwrap()), "0");
    assert_eq!(
        g.num(0, ga).unwrap(),
        m.num(0, m.col("auroc").unwrap()).unwrap()
    );
    assert_eq!(
        g.num(0, gf).unwrap(),
        m.num(0, m.col("fpr95").unwrap()).unwrap()
    );
    // Guaranteed metrics never exceed the clean ones (AUROC) or fall below them (FPR95).
    for r in 1..g.rows.len() {
        assert!(g.num(r, ga).unwrap() <= g.num(0, ga).unwrap() + 1e-12);
        assert!(g.num(r, gf).unwrap() >= g.num(0, gf).unwrap() - 1e-12);
    }
}

#[test]
fn a_bound_moved_past_the_truth_is_caught_by_verify() {
    let t = tempfile::tempdir().unwrap();
    let data = format!("path:{}", s(&write_toy(t.path(), 8)));
    let model_path = save_mlp(t.path(), [1, SIDE, SIDE], &[12, 8], 2);
    let out = guaranteed(t.path(), &model_path, &data, "linf", "0.1", "g");
    // Every OOD lower bound raised to the clean score + 0.01: the centre itself beats it.
    let p = out.join("bounds.csv");
    let text = std::fs::read_to_string(&p).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let mut moved = header.join(",") + "\n";
    for l in lines {
        let mut f: Vec<String> = l.split(',').map(String::from).collect();
        if f[col("is_id")] == "0" && f[col("eps")] != "0" {
            let s: f64 = f[col("score")].parse().unwrap();
            f[col("lower")] = format!("{:e}", s + 0.01);
        }
        moved += &(f.join(",") + "\n");
    }
    std::fs::write(&p, moved).unwrap();
    let o = oodcert_in(&["verify", "--run", s(&out)], t.path());
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 violated"));
}

#[test]
fn bad_flags_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let data = format!("path:{}", s(&write_toy(t.path(), 8)));
    let model_path = save_mlp(t.path(), [1, SIDE, SIDE], &[12, 8], 2);
    let run = |norm: &str, eps: &str, ood: &str| {
        oodcert_in(
            &[
                "guaranteed",
                "--model",
                s(&model_path),
                "--id",
                &format!("{data}#0"),
                "--ood",
                ood,
                "--norm",
                norm,
                "--eps",
                eps,
                "--out",
                s(&t.path().join("x")),
            ],
            t.path(),
        )
    };
    for o in [
        run("linf", "0", &format!("{data}#1")),
        run("l3", "0.1", &format!("{data}#1")),
        run("linf", "0.1", &format!("{data}#0-1")),
    ] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn reproduce_replays_a_guaranteed_run_bit_for_bit() {
    let t = tempfile::tempdir().unwrap();
    let data = format!("path:{}", s(&write_toy(t.path(), 8)));
    let model_path = save_mlp(t.path(), [1, SIDE, SIDE], &[12, 8], 2);
    let out = guaranteed(t.path(), &model_path, &data, "l2", "0.1,0.3", "g");
    let rep = t.path().join("rep");
    let o = ok(&oodcert_in(
        &[
            "reproduce",
            "--manifest",
            s(&out.join("manifest.json")),
            "--out",
            s(&rep),
        ],
        t.path(),
    ));
    let diff = CsvTable::read(&rep.join("reproduce_diff.csv")).unwrap();
    let (cf, ci) = (diff.col("file").unwrap(), diff.col("identical").unwrap());
    let files: Vec<&str> = (0..diff.rows.len()).map(|r| diff.cell(r, cf)).collect();
    assert_eq!(files, ["bounds.csv", "guaranteed.csv"], "{o}");
    assert!((0..diff.rows.len()).all(|r| diff.cell(r, ci) == "yes"));
    // A recorded hash that the replay does not match: reported, exit 1.
    let m = out.join("manifest.json");
    let sha = oodcert::evidence::sha256_file(out.join("guaranteed.csv")).unwrap();
    let text = std::fs::read_to_string(&m).unwrap();
    assert!(text.contains(&sha));
    std::fs::write(&m, text.replace(&sha, &"0".repeat(64))).unwrap();
    let o = oodcert_in(
        &[
            "reproduce",
            "--manifest",
            s(&m),
            "--out",
            s(&t.path().join("rep2")),
        ],
        t.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
