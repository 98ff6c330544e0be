//! The main job's presets: every config under analysis/configs/ parses and validates; each
//! preset's stages parse with the `--set` keys the main job adds, fine-tune from a model of the
//! same architecture, and `quick` stays the default with today's protocol. No training.

use clap::Parser;
use oodcert::cli::reproduce::{Preset, Protocol};
use oodcert::train::TrainConfig;
use std::path::Path;

const CONFIGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/analysis/configs");

#[test]
fn every_config_file_parses_and_validates() {
    let mut n = 0;
    for e in std::fs::read_dir(CONFIGS).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let cfg = TrainConfig::load(&p, &[]).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        cfg.arch()
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        n += 1;
    }
    assert!(n >= 7, "{n} configs");
}

/// The stages of `p` as the main job loads them (with `seed=` and `model.init_from=`).
fn stages(p: &Protocol) -> Vec<TrainConfig> {
    let dir = tempfile::tempdir().unwrap();
    p.stages
        .iter()
        .map(|st| {
            let path = dir.path().join(format!("{}.toml", st.name));
            std::fs::write(&path, st.config).unwrap();
            let mut sets = vec!["seed=7".to_string()];
            if let Some(from) = st.init_from {
                sets.push(format!("model.init_from=runs/x/{from}/model.safetensors"));
            }
            TrainConfig::load(&path, &sets).unwrap_or_else(|e| panic!("{}: {e}", st.name))
        })
        .collect()
}

#[test]
fn each_preset_pretrains_then_fine_tunes_energy_and_greg_on_one_architecture() {
    for preset in [Preset::Quick, Preset::Paper] {
        let p = preset.protocol();
        let names: Vec<&str> = p.stages.iter().map(|s| s.name).collect();
        assert_eq!(names, ["ce", "energy", "greg"]);
        let cfgs = stages(&p);
        for c in &cfgs {
            assert_eq!(c.seed, 7);
            assert_eq!(c.arch().unwrap(), cfgs[0].arch().unwrap(), "{preset:?}");
            assert_eq!(c.data.id, "mnist:train");
        }
        assert_eq!(
            cfgs[0].data.aux, None,
            "pre-training is cross-entropy on ID data"
        );
        assert_eq!(cfgs[0].loss.lambda_grad, 0.0);
        for c in &cfgs[1..] {
            assert_eq!(c.data.aux.as_deref(), Some("fashion-mnist:train"));
            assert!(c.model.init_from.is_some());
        }
        assert_eq!(cfgs[1].loss.lambda_grad, 0.0, "energy baseline");
        assert!(cfgs[2].loss.lambda_grad > 0.0, "GReg");
        assert_eq!(cfgs[1].loss.lambda_energy, cfgs[2].loss.lambda_energy);
    }
}

#[test]
fn quick_is_the_default_and_unchanged_and_paper_is_larger() {
    let cli = oodcert::cli::Cli::try_parse_from(["oodcert", "reproduce"]).unwrap();
    let oodcert::cli::Command::Reproduce(a) = cli.command else {
        panic!("not reproduce")
    };
    assert_eq!(a.preset, Preset::Quick);
    assert_eq!(a.certify_limit, None, "the preset's own limit");
    let q = Preset::Quick.protocol();
    // Today's quick protocol, as it ran before presets existed.
    assert_eq!((q.certify_limit, q.lipschitz_limit), (20, 20));
    assert_eq!(
        (q.smoothing_n0, q.smoothing_n, q.smoothing_cal_limit),
        (100, 2000, 1000)
    );
    assert_eq!(q.lipschitz_id_val_limit, 5000);
    assert_eq!(q.verify_lipschitz, (20, 3));
    assert_eq!(q.verify_smoothing, (10, 2, 1000));
    for (st, file) in q
        .stages
        .iter()
        .zip(["quick", "finetune-energy", "finetune-greg"])
    {
        let text = std::fs::read_to_string(Path::new(CONFIGS).join(format!("{file}.toml")));
        assert_eq!(st.config, text.unwrap(), "{file}");
    }
    let p = Preset::Paper.protocol();
    let (qc, pc) = (stages(&q), stages(&p));
    assert_eq!(pc[0].model.arch, "lenet");
    // Full epochs: no step cap, and more epochs than quick (20 fine-tuning epochs, the paper's).
    for (a, b) in qc.iter().zip(&pc) {
        assert_eq!(b.train.max_steps, 0, "paper stages run whole epochs");
        assert!(b.train.epochs > a.train.epochs);
    }
    assert_eq!(pc[2].train.epochs, 20);
    assert_eq!(
        (pc[2].train.batch_size, pc[2].train.aux_batch_size),
        (64, Some(64))
    );
    assert!(p.certify_limit >= 25 * q.certify_limit);
    assert!(p.lipschitz_limit > q.lipschitz_limit);
    assert_eq!(p.smoothing_n, 100_000);
    let cli = oodcert::cli::Cli::try_parse_from([
        "oodcert",
        "reproduce",
        "--preset",
        "paper",
        "--certify-limit",
        "7",
    ])
    .unwrap();
    let oodcert::cli::Command::Reproduce(a) = cli.command else {
        panic!("not reproduce")
    };
    assert_eq!((a.preset, a.certify_limit), (Preset::Paper, Some(7)));
}
