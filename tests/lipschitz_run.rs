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
        shard: None,
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
                Method::Pattern,
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
        // The pattern search's value is a gradient norm at a point of the ball: below every
        // certified bound of the same ball, and the best lower bound is the largest of them.
        let pat = a.lower_pattern.unwrap();
        let best = a.lower_best().unwrap();
        assert!(best >= pat && best >= a.lower_pgd.unwrap());
        for up in [a.upper_local, a.upper_recurjac, a.upper_global] {
            assert!(
                best <= up.unwrap(),
                "row {}: lower {best} > {up:?}",
                a.index
            );
        }
        // The search starts from the ε-ball's certificate with the best local bound (RecurJac
        // included), so it never ends below radius_at_eps.
        assert!(a.radius_lipschitz >= a.radius_at_eps, "row {}", a.index);
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
            "lower_pattern" => |r| r.lower_pattern,
            "lower_best" => |r| r.lower_best(),
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
    assert_eq!(checked, 7);
}

/// The summary without its wall-clock `seconds_*` rows.
fn summary_sans_time(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("summary.csv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("seconds_"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn three_merged_shards_equal_one_run_and_mismatched_shards_are_refused() {
    use oodcert::lipschitz::merge::merge;
    use oodcert::smoothing::shard::Shard;
    let t = tempfile::tempdir().unwrap();
    let one = config(t.path(), "one");
    oodcert::lipschitz::run(&one).unwrap();
    let shard = |k: u64, n: u64, name: &str, seed: u64| {
        let mut c = config(t.path(), name);
        c.shard = Some(Shard { index: k, count: n });
        c.options.seed = seed;
        oodcert::lipschitz::run(&c).unwrap();
        c.out
    };
    let dirs: Vec<_> = (0..3).map(|k| shard(k, 3, &format!("s{k}"), 3)).collect();
    // Shards given in any order.
    let merged = t.path().join("merged");
    let order = [dirs[2].clone(), dirs[0].clone(), dirs[1].clone()];
    merge(&merged, &order).unwrap();
    for f in ["lipschitz.csv", "global.json"] {
        assert_eq!(
            std::fs::read(one.out.join(f)).unwrap(),
            std::fs::read(merged.join(f)).unwrap(),
            "{f} differs from the single run's"
        );
    }
    assert_eq!(summary_sans_time(&one.out), summary_sans_time(&merged));
    // Every sample's random draws depend on (seed, index) only: the shards split the rows 2/2/3.
    assert_eq!(read_csv(&dirs[0].join("lipschitz.csv")).unwrap().len(), 2);

    let refused = |shards: &[std::path::PathBuf], what: &str| {
        let out = t.path().join(format!("bad-{what}"));
        match merge(&out, shards) {
            Err(oodcert::error::Error::BadInput(msg)) => {
                assert!(!msg.contains('\n'), "{msg}");
            }
            other => panic!("{what}: expected BadInput, got {other:?}"),
        }
        assert!(!out.exists(), "{what}: wrote output");
    };
    refused(&dirs[..2], "missing");
    refused(
        &[dirs[0].clone(), dirs[1].clone(), dirs[1].clone()],
        "repeated",
    );
    let other_seed = shard(2, 3, "seed9", 9);
    refused(
        &[dirs[0].clone(), dirs[1].clone(), other_seed],
        "other-config",
    );
    let other_count = shard(1, 2, "of2", 3);
    refused(
        &[dirs[0].clone(), other_count, dirs[2].clone()],
        "other-count",
    );
    refused(std::slice::from_ref(&one.out), "not-a-shard");
    // A shard missing a row.
    let cut = t.path().join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    for f in ["manifest.json", "summary.csv", "global.json"] {
        std::fs::copy(dirs[1].join(f), cut.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(dirs[1].join("lipschitz.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(
        cut.join("lipschitz.csv"),
        lines[..lines.len() - 1].join("\n") + "\n",
    )
    .unwrap();
    refused(&[dirs[0].clone(), cut, dirs[2].clone()], "short");
}
