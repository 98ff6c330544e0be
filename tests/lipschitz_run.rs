//! The library's Lipschitz run (`oodcert::lipschitz::run`): lipschitz.csv and summary.csv hold
//! the exact f64 the run computed (parsing gives back the same bits).

mod lipschitz_common;
use lipschitz_common::*;
use oodcert::bounds::Norm;
use oodcert::lipschitz::record::{LipschitzRecord, read_csv};
use oodcert::lipschitz::summary::median;
use oodcert::lipschitz::{BoundsKind, Config, Method, Options};
use std::path::Path;

/// A small run on digits8:test with every column filled (RecurJac included).
fn config(dir: &Path, out: &str) -> Config {
    let (m, _) = mlp([1, 8, 8], &[16, 12], 10, 7);
    let mpath = dir.join("m.safetensors");
    if !mpath.exists() {
        m.save(&mpath).unwrap();
    }
    Config {
        model: mpath,
        data: "digits8:test".into(),
        id_val: None,
        id_val_limit: 200,
        is_ood: false,
        limit: 7,
        subset: Default::default(),
        data_dir: Some(dir.to_path_buf()),
        out: dir.join(out),
        quiet: true,
        options: Options {
            norm: Norm::L2,
            eps: 0.1,
            unit_box: false,
            methods: vec![
                Method::Sample,
                Method::Pgd,
                Method::Clever,
                Method::Local,
                Method::Global,
                Method::Radius,
                Method::Recurjac,
            ],
            score: oodcert::score::ScoreKind::Energy,
            temperature: 1.0,
            samples: 8,
            pgd_steps: 3,
            pgd_restarts: 2,
            clever_batches: 5,
            clever_samples: 8,
            radius_iters: 5,
            radius_max: None,
            bounds: BoundsKind::Crown,
            crown_max_dim: 4096,
            recurjac_max_work: 1e10,
            simplex: false,
            seed: 3,
        },
    }
}

/// The floats of a record, in column order (`None` as NaN with a distinct payload).
fn floats(r: &LipschitzRecord) -> Vec<u64> {
    let o = |v: Option<f64>| v.map_or(u64::MAX, f64::to_bits);
    vec![
        r.score.to_bits(),
        r.threshold.to_bits(),
        r.eps.to_bits(),
        o(r.grad_norm),
        o(r.lower_sample),
        o(r.lower_pgd),
        o(r.clever),
        o(r.clever_ks),
        o(r.upper_local),
        o(r.upper_global),
        o(r.radius_at_eps),
        o(r.radius_lipschitz),
        o(r.radius_bound_prop),
        o(r.upper_recurjac),
        o(r.fastlip_simplex),
    ]
}

#[test]
fn lipschitz_csv_and_summary_hold_the_exact_f64() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config(t.path(), "run");
    let rows = oodcert::lipschitz::run(&cfg).unwrap();
    assert_eq!(rows.len(), 7);
    let back = read_csv(&cfg.out.join("lipschitz.csv")).unwrap();
    assert_eq!(back.len(), rows.len());
    for (a, b) in rows.iter().zip(&back) {
        assert_eq!(floats(a), floats(b), "row {}", a.index);
        assert!(a.upper_recurjac.is_some() && a.radius_lipschitz.is_some());
        assert_eq!(
            (a.index, a.label, a.is_id, &a.recurjac_rule),
            (b.index, b.label, b.is_id, &b.recurjac_rule)
        );
    }
    // The manifest's γ (JSON) and the CSV's threshold are the same f64.
    let man: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cfg.out.join("manifest.json")).unwrap())
            .unwrap();
    let gamma = man["config"]["threshold"].as_f64().unwrap();
    assert_eq!(gamma.to_bits(), rows[0].threshold.to_bits());
    // summary.csv: mean and median of every bound column are the exact f64 of the rows.
    let mut rd = csv::Reader::from_path(cfg.out.join("summary.csv")).unwrap();
    let mut checked = 0;
    for rec in rd.records() {
        let rec = rec.unwrap();
        let col: fn(&LipschitzRecord) -> Option<f64> = match &rec[0] {
            "upper_local" => |r| r.upper_local,
            "lower_pgd" => |r| r.lower_pgd,
            "radius_lipschitz" => |r| r.radius_lipschitz,
            "radius_bound_prop" => |r| r.radius_bound_prop,
            "upper_recurjac" => |r| r.upper_recurjac,
            _ => continue,
        };
        let mut v: Vec<f64> = rows.iter().filter_map(col).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert_eq!(rec[2].parse::<f64>().unwrap().to_bits(), mean.to_bits());
        assert_eq!(
            rec[3].parse::<f64>().unwrap().to_bits(),
            median(&mut v).to_bits()
        );
        checked += 1;
    }
    assert_eq!(checked, 5);
}
