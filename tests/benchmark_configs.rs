//! The benchmarks of analysis/benchmarks/ (issue #14 item 2, papers/benchmarks.md) are what their
//! documentation says: each stage's config trains on the benchmark's ID set with its auxiliary
//! set, LeNet at a fine-tuning rate that does not collapse it, and no test set shares a class of
//! one dataset with the auxiliary set or the ID set (any split). No data is read.

use oodcert::data::class_filter::shares_classes;
use oodcert::train::config::TrainConfig;
use std::collections::BTreeMap;
use std::path::Path;

/// `KEY="VALUE"` lines of a sets.env file.
fn sets(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

#[test]
fn every_benchmark_is_consistent_and_its_sets_are_disjoint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("analysis/benchmarks");
    let names = ["mnist-open-set", "fashion-mnist", "good-comparable"];
    for name in names {
        let dir = root.join(name);
        let s = sets(&dir.join("sets.env"));
        let (id_train, id_test, aux) = (&s["ID_TRAIN"], &s["ID_TEST"], &s["AUX"]);
        let tests: Vec<String> = std::iter::once(s["NEAR_OOD"].clone())
            .chain(s["FAR_OOD"].split(',').map(String::from))
            .collect();
        let pre = TrainConfig::load(&dir.join("pretrain.toml"), &[]).unwrap();
        assert_eq!(&pre.data.id, id_train, "{name}");
        assert_eq!(pre.model.arch, "lenet", "{name}");
        // Every arm of the benchmark (finetune-ARM.toml; benchmark.sh's ARMS).
        let arms = arms(&dir);
        for arm in [
            "ce-ft",
            "energy",
            "greg",
            "energy-plus",
            "greg-plus",
            "dos",
            "greg-l0.1",
            "greg-l10",
        ] {
            assert!(
                arms.iter().any(|a| a == arm),
                "{name}: no finetune-{arm}.toml"
            );
        }
        for arm in &arms {
            let c = TrainConfig::load(&dir.join(format!("finetune-{arm}.toml")), &[]).unwrap();
            assert_eq!(&c.data.id, id_train, "{name} {arm}");
            // The CE control trains without outliers; every other arm on this benchmark's.
            let want_aux = (arm != "ce-ft").then_some(aux.as_str());
            assert_eq!(c.data.aux.as_deref(), want_aux, "{name} {arm}");
            assert_eq!(c.model.arch, "lenet", "{name} {arm}");
            assert_eq!(c.model.absent_class, arm == "dos", "{name} {arm}");
            assert!(c.optim.lr <= 1e-3, "{name} {arm}: LeNet collapses at 0.01");
            assert_eq!(
                c.loss.lambda_grad > 0.0,
                arm.starts_with("greg"),
                "{name} {arm}"
            );
            let sampler = match arm.as_str() {
                "energy-plus" | "greg-plus" => "greg-plus",
                "dos" => "dos",
                _ => "random",
            };
            assert_eq!(c.sampler.kind, sampler, "{name} {arm}");
        }
        // The pre-training's lr: LeNet on mnist#0-5 collapsed at step 200 of 564 at lr 0.05 (seed 0).
        assert!(
            pre.optim.lr <= 0.01,
            "{name}: pre-training lr {}",
            pre.optim.lr
        );
        assert!(!shares_classes(id_train, aux).unwrap(), "{name}: ID vs aux");
        // The ID test set is the ID training set's classes on the test split.
        assert!(shares_classes(id_train, id_test).unwrap(), "{name}");
        for t in &tests {
            assert!(
                !shares_classes(aux, t).unwrap(),
                "{name}: test {t} vs aux {aux}"
            );
            assert!(
                !shares_classes(id_train, t).unwrap(),
                "{name}: test {t} vs ID"
            );
            assert!(
                !shares_classes(id_test, t).unwrap(),
                "{name}: test {t} vs ID test"
            );
        }
    }
    let found: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        found.len(),
        names.len(),
        "every benchmark is checked: {found:?}"
    );
}

/// The arms of a benchmark folder: `finetune-ARM.toml` files.
fn arms(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            Some(
                n.strip_prefix("finetune-")?
                    .strip_suffix(".toml")?
                    .to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn shares_classes_sees_splits_and_filters() {
    assert!(shares_classes("mnist:train", "mnist:test").unwrap());
    assert!(shares_classes("mnist:train#0-4", "mnist:test#4-9").unwrap());
    assert!(!shares_classes("mnist:train#0-4", "mnist:test#5-9").unwrap());
    assert!(!shares_classes("mnist", "fashion-mnist").unwrap());
    assert!(shares_classes("animal-mnist:train", "animal-mnist:test").unwrap());
}
