//! Generated sets (noise, digits, conversions): deterministic per seed, different across seeds,
//! statistically what the docs say; bilinear resize equal to PyTorch's on a reference file.

use oodcert::data::named::{FetchPolicy, load_as_with, load_with};
use oodcert::data::noise::{NoiseKind, noise_images, noise_sha256};
use oodcert::data::{convert, npy};
use std::path::Path;

fn nowhere() -> &'static Path {
    Path::new("/nonexistent-oodcert-data")
}

#[test]
fn noise_is_deterministic_per_seed_and_differs_across_seeds() {
    for kind in [NoiseKind::Gauss, NoiseKind::Uniform] {
        let a = noise_images(kind, 50, [1, 28, 28], 7);
        assert_eq!(a, noise_images(kind, 50, [1, 28, 28], 7));
        let b = noise_images(kind, 50, [1, 28, 28], 8);
        assert_ne!(a, b);
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_ne!(
            noise_sha256(kind, 50, [1, 28, 28], 7),
            noise_sha256(kind, 50, [1, 28, 28], 8)
        );
    }
    // the named sets: test and train use different seeds; ?seed= overrides
    let t = load_with("noise-gauss:test", nowhere(), FetchPolicy::Never).unwrap();
    let r = load_with("noise-gauss:train", nowhere(), FetchPolicy::Never).unwrap();
    assert_ne!(t.images, r.images);
    assert_ne!(t.sha256, r.sha256);
    let s = load_with(
        "noise-uniform:test?n=20&seed=5",
        nowhere(),
        FetchPolicy::Never,
    )
    .unwrap();
    assert_eq!(
        (s.len(), s.name.as_str()),
        (20, "noise-uniform:test?n=20&seed=5")
    );
    assert!(load_with("noise-uniform?n=0", nowhere(), FetchPolicy::Never).is_err());
    assert!(load_with("noise-uniform?bogus=1", nowhere(), FetchPolicy::Never).is_err());
}

#[test]
fn noise_moments_match_the_documented_distributions() {
    let n = 200_000;
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let var =
        |v: &[f32], m: f64| v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64;
    let u = noise_images(NoiseKind::Uniform, n, [1, 1, 1], 1);
    let mu = mean(&u);
    assert!((mu - 0.5).abs() < 0.005 && (var(&u, mu) - 1.0 / 12.0).abs() < 0.002);
    let g = noise_images(NoiseKind::Gauss, n, [1, 1, 1], 1);
    let mg = mean(&g);
    // N(0.5, 0.25²) clipped at ±2σ: symmetric, so mean 0.5; clipping shrinks the std to ≈0.2398
    assert!((mg - 0.5).abs() < 0.005);
    assert!(
        (var(&g, mg).sqrt() - 0.2398).abs() < 0.003,
        "{}",
        var(&g, mg).sqrt()
    );
    let clipped = g.iter().filter(|&&v| v == 0.0 || v == 1.0).count() as f64 / n as f64;
    assert!((clipped - 0.0455).abs() < 0.004, "{clipped}");
}

#[test]
fn noise_load_as_draws_at_the_target_shape() {
    let ds = load_as_with(
        "noise-gauss:test?n=3",
        nowhere(),
        [3, 32, 32],
        FetchPolicy::Never,
    )
    .unwrap();
    assert_eq!((ds.shape, ds.images.len()), ([3, 32, 32], 3 * 3 * 32 * 32));
    assert!(ds.name.ends_with("|3x32x32"));
}

#[test]
fn digits_are_split_stratified_and_upsampled() {
    let tr = load_with("digits8:train", nowhere(), FetchPolicy::Never).unwrap();
    let te = load_with("digits8", nowhere(), FetchPolicy::Never).unwrap();
    assert_eq!((tr.len(), te.len(), tr.shape), (901, 896, [1, 8, 8]));
    assert_eq!(te.name, "digits8:test");
    let up = load_with("digits28:test", nowhere(), FetchPolicy::Never).unwrap();
    assert_eq!(
        (up.shape, up.labels.clone()),
        ([1, 28, 28], te.labels.clone())
    );
    // the same images through load_as
    let via = load_as_with("digits8:test", nowhere(), [1, 28, 28], FetchPolicy::Never).unwrap();
    assert_eq!(via.images, up.images);
    assert_eq!(via.name, "digits8:test|bilinear 8x8->28x28");
    // values are k/16
    assert!(
        tr.images
            .iter()
            .all(|v| ((v * 16.0).round() - v * 16.0).abs() < 1e-6)
    );
}

#[test]
fn channel_and_size_conversions_are_recorded_in_the_name() {
    let base = load_with("noise-uniform:test?n=2", nowhere(), FetchPolicy::Never).unwrap();
    let rgb = convert::to_shape(&base, [3, 28, 28]).unwrap();
    assert_eq!(&rgb.images[..784], &rgb.images[784..1568]);
    assert!(rgb.name.ends_with("|grey2rgb"));
    let grey = convert::to_shape(&rgb, [1, 14, 14]).unwrap();
    assert!(
        grey.name
            .ends_with("|grey2rgb|luma601|bilinear 28x28->14x14"),
        "{}",
        grey.name
    );
    // luma of a replicated grey image is the grey image (weights sum to 1)
    let back = convert::to_shape(&rgb, [1, 28, 28]).unwrap();
    for (a, b) in back.images.iter().zip(&base.images) {
        assert!((a - b).abs() < 1e-6);
    }
    assert!(convert::to_shape(&base, [2, 28, 28]).is_err());
}

#[test]
fn bilinear_matches_pytorch_align_corners_false() {
    // tests/fixtures/data/make_reference.py: input 1x5x7, F.interpolate to 9x4 and 11x13
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data/bilinear_ref.npy");
    let a = npy::read_npy(&p).unwrap();
    let npy::NpyData::F32(v) = a.data else {
        panic!("dtype")
    };
    let (img, rest) = v.split_at(35);
    let (down, up) = rest.split_at(36);
    for (out, (h, w)) in [(down, (9, 4)), (up, (11, 13))] {
        let got = convert::resize_bilinear(img, [1, 5, 7], h, w);
        assert_eq!(got.len(), out.len());
        for (i, (g, r)) in got.iter().zip(out).enumerate() {
            assert!((g - r).abs() < 1e-6, "{h}x{w} pixel {i}: {g} vs torch {r}");
        }
    }
}

#[test]
fn unknown_names_and_test_only_sets() {
    let e = load_with("cifar10", nowhere(), FetchPolicy::Never).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("known: mnist"), "{e}");
    let e = load_with("mnist:val", nowhere(), FetchPolicy::Never).unwrap_err();
    assert!(e.to_string().contains("train or test"));
    let e = load_with("textures:train", nowhere(), FetchPolicy::Never).unwrap_err();
    assert!(e.to_string().contains("only a test split"));
    let e = load_with("fashion-mnist", nowhere(), FetchPolicy::Never).unwrap_err();
    assert!(
        e.to_string()
            .contains("oodcert data fetch --dir /nonexistent-oodcert-data --only fashion-mnist"),
        "{e}"
    );
    assert_eq!(e.exit_code(), 2);
}
