//! Results do not depend on batch size, thread count or shard split; `merge` rebuilds a single
//! run byte for byte and refuses inconsistent shards; `--shard env` reads Slurm / Kubernetes
//! indices; the CLI end to end (single run vs shards + merge).

use indicatif::ProgressBar;
use oodcert::data::Dataset;
use oodcert::smoothing::calibrate::Calibration;
use oodcert::smoothing::clip::ClipRange;
use oodcert::smoothing::coupling::Coupling;
use oodcert::smoothing::engine::FnScorer;
use oodcert::smoothing::manifest::{CertifyManifest, DatasetEntry, FORMAT, RunConfig, conventions};
use oodcert::smoothing::merge::merge;
use oodcert::smoothing::noise::NoiseLayout;
use oodcert::smoothing::output::write_run;
use oodcert::smoothing::record::CertifyRecord;
use oodcert::smoothing::run::{CertifySet, certify_sets};
use oodcert::smoothing::sample::{SmoothingParams, Thresholds};
use oodcert::smoothing::shard::Shard;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;
use common::{oodcert, save_mlp};

const D: usize = 6;

fn dataset(name: &str, n: usize, offset: f32) -> Dataset {
    Dataset {
        name: name.into(),
        images: (0..n * D)
            .map(|i| (i as f32 * 0.37 + offset).sin() * 0.5 + 0.5)
            .collect(),
        labels: vec![-1; n],
        shape: [1, 2, 3],
        sha256: format!("sha-{name}"),
        selection: None,
    }
}

/// A nonlinear score with values around 0.
fn score(x: &[f32], count: usize) -> oodcert::Result<Vec<f64>> {
    Ok((0..count)
        .map(|i| {
            x[i * D..(i + 1) * D]
                .iter()
                .enumerate()
                .map(|(j, &v)| ((j + 1) as f64 * v as f64).sin())
                .sum::<f64>()
                - 2.0
        })
        .collect())
}

fn params(batch: usize, noise: NoiseLayout) -> SmoothingParams {
    SmoothingParams {
        sigma: 0.3,
        n0: 20,
        n: 300,
        alpha: 0.01,
        batch,
        noise,
        coupling: Coupling::Candidates,
    }
}

fn thresholds() -> Thresholds {
    Thresholds {
        gamma: 0.0,
        gamma_smoothed: 0.0,
        clip: ClipRange::new(-3.0, 3.0).unwrap(),
    }
}

fn run(
    sets: &[CertifySet<'_>],
    noise: NoiseLayout,
    batch: usize,
    shard: Option<Shard>,
) -> Vec<CertifyRecord> {
    let scorer = FnScorer { dim: D, f: score };
    certify_sets(
        &scorer,
        &params(batch, noise),
        &thresholds(),
        5,
        sets,
        Some(7),
        shard,
        false,
        &ProgressBar::hidden(),
    )
    .unwrap()
}

fn manifest(sets: &[CertifySet<'_>], noise: NoiseLayout, shard: Option<Shard>) -> CertifyManifest {
    let th = thresholds();
    CertifyManifest {
        format: FORMAT.into(),
        oodcert_version: "test".into(),
        candle_version: "test".into(),
        config: RunConfig {
            sigma: 0.3,
            n0: 20,
            n: 300,
            alpha: 0.01,
            seed: 5,
            limit: Some(7),
            score: "test".into(),
            temperature: 1.0,
            radius_step: 0.03,
            cal_n: 0,
            cal_limit: None,
            clip_quantiles: (0.01, 0.99),
            tpr: 0.95,
            timing: false,
            subset: None,
        },
        calibration: Calibration {
            gamma: th.gamma,
            gamma_rule: "given".into(),
            gamma_clean: None,
            gamma_noisy: None,
            clip: th.clip,
            clip_rule: "given".into(),
            gamma_smoothed: th.gamma_smoothed,
            gamma_smoothed_rule: "given".into(),
            t: 0.5,
            smoothed_tpr: None,
        },
        datasets: sets
            .iter()
            .map(|s| DatasetEntry {
                name: s.data.name.clone(),
                sha256: s.data.sha256.clone(),
                role: if s.is_id { "id" } else { "ood" }.into(),
                size: s.data.len() as u64,
                used: s.data.len().min(7) as u64,
                indices: None,
                indices_sha256: None,
                class_filter: None,
            })
            .collect(),
        model_sha256: "m".into(),
        model_spec: serde_json::Value::Null,
        device: "cpu".into(),
        noise_layout: noise.describe().into(),
        coupling: Coupling::Candidates.manifest_field(),
        conventions: conventions(),
        total_samples: sets.iter().map(|s| s.data.len().min(7) as u64).sum(),
        shard,
    }
}

fn read_dir_files(dir: &Path) -> HashMap<String, Vec<u8>> {
    [
        "certify.csv",
        "curves.csv",
        "curves_all.csv",
        "manifest.json",
    ]
    .iter()
    .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
    .collect()
}

#[test]
fn results_do_not_depend_on_batch_threads_or_shards() {
    let mut wholes = Vec::new();
    for noise in [NoiseLayout::V1, NoiseLayout::V2] {
        wholes.push(batch_threads_and_shards_agree(noise));
    }
    // The layouts draw different noise (so the comparison above is per layout).
    assert_ne!(wholes[0], wholes[1]);
}

/// One layout: batch sizes, thread counts and shard splits give the same records.
fn batch_threads_and_shards_agree(noise: NoiseLayout) -> Vec<CertifyRecord> {
    let (a, b) = (
        dataset("toy-id:test", 9, 0.0),
        dataset("toy-ood:test", 5, 1.0),
    );
    let sets = [
        CertifySet {
            data: &a,
            is_id: true,
        },
        CertifySet {
            data: &b,
            is_id: false,
        },
    ];
    let whole = run(&sets, noise, 1000, None);
    assert_eq!(whole.len(), 12);
    assert_eq!(run(&sets, noise, 1, None), whole);
    assert_eq!(run(&sets, noise, 7, None), whole);
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        assert_eq!(
            pool.install(|| run(&sets, noise, 64, None)),
            whole,
            "{threads} threads"
        );
    }
    for n in [2u64, 3, 5] {
        let joined: Vec<CertifyRecord> = (0..n)
            .flat_map(|k| run(&sets, noise, 13, Some(Shard { index: k, count: n })))
            .collect();
        assert_eq!(joined, whole, "{n} shards, {noise:?}");
    }
    // A different seed changes the noise (the test can fail).
    let scorer = FnScorer { dim: D, f: score };
    let other = certify_sets(
        &scorer,
        &params(64, noise),
        &thresholds(),
        6,
        &sets,
        Some(7),
        None,
        false,
        &ProgressBar::hidden(),
    )
    .unwrap();
    assert_ne!(other, whole);
    whole
}

#[test]
fn merge_is_byte_identical_and_refuses_bad_shards() {
    for noise in [NoiseLayout::V1, NoiseLayout::V2] {
        merge_one_layout(noise);
    }
}

/// One layout: the merge equals the single run; bad shard sets are refused, among them a shard
/// of the other layout.
fn merge_one_layout(noise: NoiseLayout) {
    let (a, b) = (
        dataset("toy-id:test", 9, 0.0),
        dataset("toy-ood:test", 5, 1.0),
    );
    let sets = [
        CertifySet {
            data: &a,
            is_id: true,
        },
        CertifySet {
            data: &b,
            is_id: false,
        },
    ];
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    write_run(
        &single,
        &run(&sets, noise, 100, None),
        &manifest(&sets, noise, None),
    )
    .unwrap();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for k in 0..3 {
        let s = Shard { index: k, count: 3 };
        let d = tmp.path().join(format!("shard{k}"));
        write_run(
            &d,
            &run(&sets, noise, 100, Some(s)),
            &manifest(&sets, noise, Some(s)),
        )
        .unwrap();
        dirs.push(d);
    }
    let merged = tmp.path().join("merged");
    // Shard order on the command line does not matter.
    merge(
        &merged,
        &[dirs[2].clone(), dirs[0].clone(), dirs[1].clone()],
    )
    .unwrap();
    assert_eq!(read_dir_files(&merged), read_dir_files(&single));

    let err = |shards: &[PathBuf]| {
        merge(&tmp.path().join("bad"), shards)
            .unwrap_err()
            .to_string()
    };
    assert!(err(&dirs[..2]).contains("shard 2/3 is missing"));
    assert!(err(&[dirs[0].clone(), dirs[1].clone(), dirs[1].clone()]).contains("given twice"));
    assert!(err(std::slice::from_ref(&single)).contains("not a shard"));
    // A shard with another seed in its manifest.
    let odd = tmp.path().join("odd");
    let s1 = Shard { index: 1, count: 3 };
    let mut m = manifest(&sets, noise, Some(s1));
    m.config.seed = 6;
    write_run(&odd, &run(&sets, noise, 100, Some(s1)), &m).unwrap();
    assert!(err(&[dirs[0].clone(), odd.clone(), dirs[2].clone()]).contains("manifest differs"));
    // A shard of the other noise layout.
    let other = match noise {
        NoiseLayout::V1 => NoiseLayout::V2,
        NoiseLayout::V2 => NoiseLayout::V1,
    };
    let mixed = tmp.path().join("mixed");
    write_run(
        &mixed,
        &run(&sets, other, 100, Some(s1)),
        &manifest(&sets, other, Some(s1)),
    )
    .unwrap();
    let e = err(&[dirs[0].clone(), mixed, dirs[2].clone()]);
    assert!(
        e.contains("in its noise layout") && e.contains("--noise-layout"),
        "{e}"
    );
    // A shard recorded under the other coupling rule (absent = count-against).
    let rule = tmp.path().join("rule");
    let mut m = manifest(&sets, noise, Some(s1));
    m.coupling = None;
    write_run(&rule, &run(&sets, noise, 100, Some(s1)), &m).unwrap();
    let e = err(&[dirs[0].clone(), rule, dirs[2].clone()]);
    assert!(
        e.contains("in its coupling rule") && e.contains("--coupling"),
        "{e}"
    );
    // A shard whose rows are not its slice.
    let wrong = tmp.path().join("wrong");
    write_run(
        &wrong,
        &run(&sets, noise, 100, Some(Shard { index: 0, count: 3 })),
        &manifest(&sets, noise, Some(s1)),
    )
    .unwrap();
    assert!(err(&[dirs[0].clone(), wrong, dirs[2].clone()]).contains("does not hold exactly"));
}

#[test]
fn shard_env_reads_slurm_and_kubernetes_indices() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let slurm = env(&[
        ("SLURM_ARRAY_TASK_ID", "5"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_COUNT", "8"),
    ]);
    assert_eq!(
        Shard::parse_with("env", slurm).unwrap(),
        Shard { index: 4, count: 8 }
    );
    let k8s = env(&[("JOB_COMPLETION_INDEX", "3")]);
    assert_eq!(
        Shard::parse_with("env/4", k8s).unwrap(),
        Shard { index: 3, count: 4 }
    );
    assert!(
        Shard::parse_with("env", env(&[("JOB_COMPLETION_INDEX", "3")]))
            .unwrap_err()
            .to_string()
            .contains("env/N")
    );
    assert!(Shard::parse_with("env/4", env(&[("JOB_COMPLETION_INDEX", "4")])).is_err());
    assert!(Shard::parse_with("env", env(&[])).is_err());
    assert!(
        Shard::parse_with(
            "env",
            env(&[("JOB_COMPLETION_INDEX", "0"), ("SLURM_ARRAY_TASK_ID", "0")])
        )
        .is_err()
    );
    assert_eq!(
        Shard::parse_with("2/5", env(&[])).unwrap(),
        Shard { index: 2, count: 5 }
    );
    for bad in ["5/5", "1/0", "x/2", "3", "-1/2"] {
        assert!(Shard::parse_with(bad, env(&[])).is_err(), "{bad}");
    }
}

#[test]
fn cli_shards_under_slurm_and_kubernetes_merge_to_the_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let model_path = save_mlp(tmp.path(), [1, 8, 8], &[16], 3);
    let model = model_path.to_str().unwrap().to_string();
    let out = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let base = |dir: &str| -> Vec<String> {
        [
            "certify",
            "--model",
            &model,
            "--data",
            "noise-gauss:test?n=8",
            "--ood",
            "noise-uniform:test?n=8",
            "--sigma",
            "0.25",
            "--n0",
            "10",
            "--n",
            "100",
            "--alpha",
            "0.01",
            "--limit",
            "5",
            "--id-val",
            "noise-gauss:train?n=20",
            "--cal-n",
            "20",
            "--batch",
            "32",
            "--no-timing",
            "--out",
            dir,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let go = |args: Vec<String>, envs: &[(&str, &str)]| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = oodcert(&refs, envs);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    go(base(&out("single")), &[]);
    // Shard 0 given explicitly, shard 1 by a Kubernetes Indexed Job, shard 2 by a Slurm array.
    let mut a0 = base(&out("s0"));
    a0.extend(["--shard".into(), "0/3".into()]);
    go(a0, &[]);
    let mut a1 = base(&out("s1"));
    a1.extend(["--shard".into(), "env/3".into()]);
    go(a1, &[("JOB_COMPLETION_INDEX", "1")]);
    let mut a2 = base(&out("s2"));
    a2.extend(["--shard".into(), "env".into()]);
    go(
        a2,
        &[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ],
    );
    go(
        [
            "merge",
            "--out",
            &out("merged"),
            &out("s0"),
            &out("s1"),
            &out("s2"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        &[],
    );
    let single = read_dir_files(&tmp.path().join("single"));
    assert_eq!(read_dir_files(&tmp.path().join("merged")), single);
    let csv = String::from_utf8(single["certify.csv"].clone()).unwrap();
    assert_eq!(csv.lines().count(), 11, "{csv}");
    assert!(
        csv.starts_with("idx,label,predict,radius,correct,time,dataset,is_id,score,n,count,p_lo")
    );
    let curves = String::from_utf8(single["curves.csv"].clone()).unwrap();
    assert!(curves.starts_with(
        "radius,certified_id_rate,certified_ood_rate,guaranteed_fpr95,guaranteed_auroc\n"
    ));
    let all = String::from_utf8(single["curves_all.csv"].clone()).unwrap();
    assert!(all.starts_with("certificate,radius,certified_id_rate,certified_ood_rate,guaranteed_fpr95,guaranteed_auroc\n"));
    // curves.csv is exactly the detector rows of curves_all.csv, without the label column.
    let detector: Vec<&str> = all
        .lines()
        .filter_map(|l| l.strip_prefix("detector,"))
        .collect();
    assert_eq!(curves.lines().skip(1).collect::<Vec<_>>(), detector);
    // Missing shard and bad flags: one-line errors, exit 2.
    let o = oodcert(
        &["merge", "--out", &out("bad"), &out("s0"), &out("s2")],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("shard 1/3 is missing"));
    // A shard whose certify.csv was edited after its run (one radius raised, the manifest
    // untouched) is refused by the SHA-256 its provenance.json records, and nothing is written.
    let s1 = tmp.path().join("s1").join("certify.csv");
    let text = std::fs::read_to_string(&s1).unwrap();
    let line = text.lines().nth(1).unwrap().to_string();
    let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
    cells[3] = format!("{}", cells[3].parse::<f64>().unwrap() + 0.3);
    std::fs::write(&s1, text.replacen(&line, &cells.join(","), 1)).unwrap();
    let o = oodcert(
        &[
            "merge",
            "--out",
            &out("edited"),
            &out("s0"),
            &out("s1"),
            &out("s2"),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("certify.csv is not the file its run wrote"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!tmp.path().join("edited").exists());
    let mut bad = base(&out("x"));
    bad.extend(["--shard".into(), "3/3".into()]);
    let refs: Vec<&str> = bad.iter().map(String::as_str).collect();
    let o = oodcert(&refs, &[]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// n0 + n is refused when it overflows or passes 2⁵³ (it once wrapped to a few copies and then
/// panicked allocating); 2⁵³ itself is accepted.
#[test]
fn copy_counts_that_overflow_are_refused() {
    let with = |n0: u64, n: u64| SmoothingParams {
        n0,
        n,
        ..params(100, NoiseLayout::V2)
    };
    assert!(with(1, (1 << 53) - 1).check().is_ok());
    for (n0, n) in [(20, u64::MAX - 15), (u64::MAX, 1), (1, 1 << 53)] {
        let e = with(n0, n).check().unwrap_err().to_string();
        assert!(e.contains("at most 2^53"), "{e}");
    }
}
