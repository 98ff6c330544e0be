//! k-means against scikit-learn (tests/reference/samplers/kmeans_sklearn.json, written by
//! analysis/reference/kmeans_sklearn.py): Lloyd from the same initial centroids must reproduce
//! sklearn's labels, centroids, inertia and iteration count; seeded k-means with n_init = 10
//! must reach the optimum that every sklearn restart set reaches.

use oodcert::train::samplers::{KMeansParams, kmeans, lloyd};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn cases() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/samplers/kmeans_sklearn.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["cases"].as_array().unwrap().clone()
}

#[test]
fn lloyd_matches_sklearn_from_the_same_init() {
    let cases = cases();
    assert!(!cases.is_empty());
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let (n, d) = (
            c["n"].as_u64().unwrap() as usize,
            c["d"].as_u64().unwrap() as usize,
        );
        let x: Vec<f32> = floats(&c["features"]).iter().map(|&v| v as f32).collect();
        let init = floats(&c["init"]);
        let r = lloyd(&x, n, d, &init, 300, 1e-4).unwrap();
        let sk = &c["lloyd"];
        let labels: Vec<usize> = sk["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(r.labels, labels, "{name}: labels");
        assert_eq!(
            r.n_iter as u64,
            sk["n_iter"].as_u64().unwrap(),
            "{name}: n_iter"
        );
        let inertia = sk["inertia"].as_f64().unwrap();
        assert!(
            (r.inertia - inertia).abs() <= 1e-9 * inertia,
            "{name}: {} vs {inertia}",
            r.inertia
        );
        for (a, b) in r.centroids.iter().zip(floats(&sk["centroids"])) {
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{name}: centroid {a} vs {b}"
            );
        }
    }
}

#[test]
fn seeded_kmeans_reaches_sklearns_optimum() {
    for c in cases() {
        let name = c["name"].as_str().unwrap();
        let (n, d, k) = (
            c["n"].as_u64().unwrap() as usize,
            c["d"].as_u64().unwrap() as usize,
            c["k"].as_u64().unwrap() as usize,
        );
        let x: Vec<f32> = floats(&c["features"]).iter().map(|&v| v as f32).collect();
        let best = c["best_inertia"].as_f64().unwrap();
        for seed in 0..3 {
            let mut p = KMeansParams::new(k, seed);
            p.n_init = 10;
            let r = kmeans(&x, n, d, &p).unwrap();
            assert!(
                (r.inertia - best).abs() <= 1e-9 * best,
                "{name} seed {seed}: {} vs {best}",
                r.inertia
            );
        }
    }
}
