//! Outlier samplers (train::samplers): random, greedy, GReg+ (one- and two-way) and DOS, checked
//! by brute force against the energies and the clustering each selection reports.

use std::collections::HashSet;

use oodcert::Error;
use oodcert::train::samplers::greg_plus::{greg_plus_traced, rank_window};
use oodcert::train::samplers::{
    CandidatePool, SamplerKind, SamplerParams, Selection, dos::dos_traced, select, step_seed,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A pool of n candidates with d-dim features around `blobs` random directions and random energies.
fn pool_data(n: usize, d: usize, blobs: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..blobs * d)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut feats = Vec::with_capacity(n * d);
    for i in 0..n {
        let c = i % blobs;
        for j in 0..d {
            feats.push(3.0 * centres[c * d + j] + rng.random_range(-0.5..0.5));
        }
    }
    let energies = (0..n).map(|_| rng.random_range(-30.0..0.0)).collect();
    (feats, energies)
}

fn assert_distinct(sel: &Selection, n: usize) {
    let all = sel.indices();
    let set: HashSet<usize> = all.iter().copied().collect();
    assert_eq!(set.len(), all.len(), "duplicate indices in {all:?}");
    assert!(all.iter().all(|&i| i < n));
}

/// Brute force: for each non-empty cluster of the trace, the lowest- and highest-energy member.
fn brute_extremes(members: &[usize], labels: &[usize], energies: &[f32]) -> Vec<(usize, usize)> {
    let k = labels.iter().max().unwrap() + 1;
    (0..k)
        .filter_map(|c| {
            let m: Vec<usize> = (0..members.len())
                .filter(|&i| labels[i] == c)
                .map(|i| members[i])
                .collect();
            let lo = *m
                .iter()
                .min_by(|&&a, &&b| energies[a].total_cmp(&energies[b]).then(a.cmp(&b)))?;
            let hi = *m
                .iter()
                .max_by(|&&a, &&b| energies[a].total_cmp(&energies[b]).then(b.cmp(&a)))?;
            Some((lo, hi))
        })
        .collect()
}

fn greg(b: usize, k: usize, window: (usize, usize), two_way: bool) -> SamplerParams {
    let mut p = SamplerParams::new(SamplerKind::GregPlus, b);
    p.num_cluster = k;
    p.rank_start = window.0;
    p.rank_end = window.1;
    p.two_way = two_way;
    p
}

#[test]
fn greg_plus_one_lowest_energy_pick_per_cluster_in_window_filled_to_b() {
    let (n, d) = (400, 16);
    let (f, e) = pool_data(n, d, 10, 1);
    let pool = CandidatePool::new(&f, &e, d).unwrap();
    let params = greg(48, 12, (30, 330), false);
    let (sel, trace) = greg_plus_traced(&pool, &params, 5).unwrap();
    assert_eq!(sel.low.len(), 48);
    assert!(sel.high.is_empty());
    assert_distinct(&sel, n);
    // The window: ranks 30..330 of the energies, computed here independently.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| e[a].partial_cmp(&e[b]).unwrap());
    let kept: HashSet<usize> = order[30..330].iter().copied().collect();
    assert!(
        sel.low.iter().all(|i| kept.contains(i)),
        "a pick outside the rank window"
    );
    assert_eq!(trace.members.iter().copied().collect::<HashSet<_>>(), kept);
    assert_eq!(trace.k, 12);
    // Exactly one pick per non-empty cluster, and it is that cluster's lowest-energy member.
    let ex = brute_extremes(&trace.members, &trace.labels, &e);
    let expected_lows: Vec<usize> = ex.iter().map(|&(lo, _)| lo).collect();
    assert_eq!(&sel.low[..ex.len()], &expected_lows[..]);
    let fill = &sel.low[ex.len()..];
    assert_eq!(fill.len(), 48 - ex.len());
    // The random fill never repeats a cluster minimum (checked by distinctness) and is random:
    // it is not simply the next-lowest energies.
    let mut fill_e: Vec<f32> = fill.iter().map(|&i| e[i]).collect();
    fill_e.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(
        fill_e.last().unwrap() > &e[order[30 + 48]],
        "fill looks greedy, not random"
    );
}

#[test]
fn clustering_uses_l2_normalised_features() {
    // Scaling rows by powers of two leaves the normalised features bit-identical, so GReg+ and
    // DOS must select exactly the same indices; without normalisation the clusters would change.
    let (n, d) = (200, 8);
    let (f, e) = pool_data(n, d, 4, 3);
    let scaled: Vec<f32> = f
        .iter()
        .enumerate()
        .map(|(i, &v)| v * [0.125f32, 1.0, 8.0, 64.0][(i / d / 4) % 4])
        .collect();
    let a = CandidatePool::new(&f, &e, d).unwrap();
    let b = CandidatePool::new(&scaled, &e, d).unwrap();
    let mut dos = SamplerParams::new(SamplerKind::Dos, 16);
    dos.num_cluster = 6;
    for p in [greg(16, 6, (0, 150), true), dos] {
        assert_eq!(
            select(&p, &a, 21).unwrap(),
            select(&p, &b, 21).unwrap(),
            "{:?}",
            p.kind
        );
    }
}

#[test]
fn greg_plus_two_way_returns_both_extremes() {
    let (n, d) = (300, 8);
    let (f, e) = pool_data(n, d, 6, 2);
    let pool = CandidatePool::new(&f, &e, d).unwrap();
    let params = greg(16, 8, (0, 10_000), true);
    let (sel, trace) = greg_plus_traced(&pool, &params, 9).unwrap();
    assert_eq!(sel.low.len(), 16);
    assert_eq!(sel.high.len(), 16);
    assert_distinct(&sel, n);
    let ex = brute_extremes(&trace.members, &trace.labels, &e);
    assert_eq!(ex.len(), 8, "every cluster should be non-empty here");
    let lows: Vec<usize> = ex.iter().map(|&(lo, _)| lo).collect();
    let highs: Vec<usize> = ex
        .iter()
        .filter(|&&(lo, hi)| lo != hi)
        .map(|&(_, hi)| hi)
        .collect();
    assert_eq!(&sel.low[..8], &lows[..]);
    assert_eq!(&sel.high[..highs.len()], &highs[..]);
    // Two-way with the whole pool as the window: the globally lowest and highest energies are
    // a cluster minimum and a cluster maximum.
    let argmin = (0..n).min_by(|&a, &b| e[a].total_cmp(&e[b])).unwrap();
    let argmax = (0..n).max_by(|&a, &b| e[a].total_cmp(&e[b])).unwrap();
    assert!(sel.low[..8].contains(&argmin));
    assert!(sel.high[..highs.len()].contains(&argmax));
}

#[test]
fn greg_plus_with_singleton_clusters_fills_high_from_the_window() {
    // B = k = n/2 clusters on a tiny pool: one-member clusters give lo == hi, used once only.
    let (n, d) = (8, 2);
    let f: Vec<f32> = vec![
        0.0, 0.0, 0.0, 0.1, 5.0, 5.0, 5.0, 5.1, -5.0, 5.0, -5.0, 5.1, 9.0, -9.0, 30.0, 30.0,
    ];
    let e: Vec<f32> = (0..n).map(|i| -(i as f32)).collect();
    let pool = CandidatePool::new(&f, &e, d).unwrap();
    let sel = select(&greg(4, 4, (0, 8), true), &pool, 3).unwrap();
    assert_eq!(sel.len(), 8);
    assert_distinct(&sel, n);
}

#[test]
fn greedy_is_the_b_lowest_energies() {
    let e: Vec<f32> = vec![3.0, -1.0, 7.0, -1.0, -9.0, 0.5, 2.0];
    let pool = CandidatePool::new(&[], &e, 0).unwrap();
    let sel = select(&SamplerParams::new(SamplerKind::Greedy, 3), &pool, 0).unwrap();
    assert_eq!(sel.low, vec![4, 1, 3]); // ties keep index order
    assert!(sel.high.is_empty());
}

#[test]
fn random_batch_is_distinct_seeded_and_uniform() {
    let e = vec![0.0f32; 20];
    let pool = CandidatePool::new(&[], &e, 0).unwrap();
    let p = SamplerParams::new(SamplerKind::Random, 5);
    let a = select(&p, &pool, 7).unwrap();
    assert_eq!(a, select(&p, &pool, 7).unwrap());
    assert_ne!(a, select(&p, &pool, 8).unwrap());
    let mut counts = [0u32; 20];
    for s in 0..2000 {
        let sel = select(&p, &pool, step_seed(1, s)).unwrap();
        assert_eq!(sel.low.len(), 5);
        assert_distinct(&sel, 20);
        for &i in &sel.low {
            counts[i] += 1;
        }
    }
    // Each index is expected 2000·5/20 = 500 times (sd ≈ 19); ±100 is over 5 sd.
    assert!(
        counts.iter().all(|&c| (400..=600).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn dos_takes_the_lowest_energy_member_of_each_cluster() {
    let (n, d) = (250, 6);
    let (f, e) = pool_data(n, d, 5, 4);
    let pool = CandidatePool::new(&f, &e, d).unwrap();
    let mut p = SamplerParams::new(SamplerKind::Dos, 20);
    p.num_cluster = 7;
    let (sel, trace) = dos_traced(&pool, &p, 11).unwrap();
    assert_eq!(sel.low.len(), 20);
    assert!(sel.high.is_empty());
    assert_distinct(&sel, n);
    assert_eq!(trace.members, (0..n).collect::<Vec<_>>());
    let ex = brute_extremes(&trace.members, &trace.labels, &e);
    let lows: Vec<usize> = ex.iter().map(|&(lo, _)| lo).collect();
    assert_eq!(&sel.low[..lows.len()], &lows[..]);
    assert_eq!(select(&p, &pool, 11).unwrap(), sel);
}

#[test]
fn clustering_samplers_are_deterministic_per_seed() {
    let (n, d) = (300, 10);
    let (f, e) = pool_data(n, d, 8, 5);
    let pool = CandidatePool::new(&f, &e, d).unwrap();
    for p in [greg(32, 8, (0, 200), false), greg(32, 8, (0, 200), true), {
        let mut p = SamplerParams::new(SamplerKind::Dos, 32);
        p.num_cluster = 8;
        p
    }] {
        let a = select(&p, &pool, 123).unwrap();
        assert_eq!(a, select(&p, &pool, 123).unwrap(), "{:?}", p.kind);
        assert_ne!(a, select(&p, &pool, 124).unwrap(), "{:?}", p.kind);
    }
}

#[test]
fn rank_window_clamps_to_the_pool() {
    let e: Vec<f32> = vec![5.0, 1.0, 3.0, 2.0, 4.0];
    let f = vec![0.0f32; 5];
    let pool = CandidatePool::new(&f, &e, 1).unwrap();
    assert_eq!(
        rank_window(&pool, &greg(1, 1, (1, 10_000), false)).unwrap(),
        vec![3, 2, 4, 0]
    );
    assert_eq!(
        rank_window(&pool, &greg(1, 1, (0, 2), false)).unwrap(),
        vec![1, 3]
    );
}

fn expect_bad(r: Result<Selection, Error>, expect: &str) {
    match r {
        Err(Error::BadInput(msg)) => assert!(msg.contains(expect), "{msg:?} lacks {expect:?}"),
        other => panic!("expected BadInput({expect}), got {other:?}"),
    }
}

#[test]
fn bad_params_and_small_pools_are_clear_errors() {
    let (f, e) = pool_data(50, 4, 3, 6);
    let pool = CandidatePool::new(&f, &e, 4).unwrap();
    expect_bad(
        select(&SamplerParams::new(SamplerKind::Random, 0), &pool, 0),
        "sampler.batch_size",
    );
    expect_bad(
        select(&SamplerParams::new(SamplerKind::Random, 51), &pool, 0),
        "pool of 50",
    );
    expect_bad(
        select(&SamplerParams::new(SamplerKind::Greedy, 51), &pool, 0),
        "pool of 50",
    );
    expect_bad(
        select(&SamplerParams::new(SamplerKind::Dos, 51), &pool, 0),
        "pool of 50",
    );
    expect_bad(
        select(&greg(30, 8, (0, 100), true), &pool, 0),
        "fewer than the 60 outliers",
    );
    expect_bad(
        select(&greg(10, 8, (45, 100), false), &pool, 0),
        "keeps 5 of 50",
    );
    expect_bad(
        select(&greg(10, 8, (50, 100), false), &pool, 0),
        "is empty for a pool of 50",
    );
    expect_bad(
        select(&greg(10, 8, (9, 9), false), &pool, 0),
        "sampler.rank_start",
    );
    expect_bad(
        select(&greg(10, 0, (0, 50), false), &pool, 0),
        "sampler.num_cluster",
    );
    let mut p = greg(10, 8, (0, 50), false);
    p.n_init = 0;
    expect_bad(select(&p, &pool, 0), "sampler.n_init");
    p.n_init = 3;
    p.tol = f64::NAN;
    expect_bad(select(&p, &pool, 0), "sampler.tol");
    let mut p = SamplerParams::new(SamplerKind::Dos, 10);
    p.two_way = true;
    expect_bad(select(&p, &pool, 0), "greg-plus only");
    // Clustering needs features.
    let no_features = CandidatePool::new(&[], &e, 0).unwrap();
    expect_bad(
        select(&greg(10, 8, (0, 50), false), &no_features, 0),
        "no features",
    );
    // Pool validation.
    assert!(
        matches!(CandidatePool::new(&f[1..], &e, 4), Err(Error::BadInput(m)) if m.contains("expected 200"))
    );
    let mut bad_e = e.clone();
    bad_e[3] = f32::NAN;
    assert!(
        matches!(CandidatePool::new(&f, &bad_e, 4), Err(Error::BadInput(m)) if m.contains("candidate 3"))
    );
    let mut bad_f = f.clone();
    bad_f[9] = f32::INFINITY;
    assert!(
        matches!(CandidatePool::new(&bad_f, &e, 4), Err(Error::BadInput(m)) if m.contains("of candidate 2"))
    );
}

#[test]
fn step_seeds_differ_across_steps_and_runs() {
    let seeds: HashSet<u64> = (0..1000)
        .flat_map(|s| (0..10).map(move |r| step_seed(r, s)))
        .collect();
    assert_eq!(seeds.len(), 10_000);
}
