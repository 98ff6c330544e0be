//! `path:FILE` datasets: the format is detected from the content (gzip is unwrapped first):
//! NPY magic, PNG magic, IDX magic (`00 00 08 nd`), else the extension: `.csv` → CSV table,
//! `.bin` → CIFAR-10/100 batch; a directory → folder of PNGs.
//! Labels: CSV and CIFAR carry them inline; a PNG folder takes them from class sub-folders; for
//! IDX and NPY image files a sibling label file is used when one exists: the file name with
//! `images`→`labels` and `idx3`→`idx1` (e.g. `train-images-idx3-ubyte.gz` →
//! `train-labels-idx1-ubyte.gz`, with or without `.gz`), or `STEM_labels.EXT` / `STEM-labels.EXT`.
//! Without one, images are unlabelled ([`NO_LABEL`]).

use super::bytes::{GZIP_MAGIC, Images, gunzip_if_gzip, read_file, sha256_concat_hex};
use super::npy::NPY_MAGIC;
use super::{Dataset, NO_LABEL, cifar, csv_pixels, idx, npy, png_images};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Candidate sibling label files for an image file, in the order tried.
pub fn label_candidates(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().map(|s| s.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut names = Vec::new();
    if name.contains("images") {
        let n = name.replace("images", "labels").replace("idx3", "idx1");
        names.push(n.clone());
        match n.strip_suffix(".gz") {
            Some(s) => names.push(s.to_string()),
            None => names.push(format!("{n}.gz")),
        }
    }
    let (stem, ext) = match name.split_once('.') {
        Some((s, e)) => (s.to_string(), format!(".{e}")),
        None => (name.clone(), String::new()),
    };
    names.push(format!("{stem}_labels{ext}"));
    names.push(format!("{stem}-labels{ext}"));
    names
        .into_iter()
        .filter(|n| *n != name)
        .map(|n| dir.join(n))
        .collect()
}

fn sibling_labels(
    path: &Path,
    n: usize,
    read: impl Fn(&Path) -> Result<Vec<i64>>,
) -> Result<(Vec<i64>, Option<Vec<u8>>)> {
    for cand in label_candidates(path) {
        if cand.is_file() {
            let labels = read(&cand)?;
            if labels.len() != n {
                return Err(Error::bad_file(
                    &cand,
                    format!(
                        "{} labels for {n} images in {}",
                        labels.len(),
                        path.display()
                    ),
                ));
            }
            let raw = read_file(&cand)?;
            return Ok((labels, Some(raw)));
        }
    }
    Ok((vec![NO_LABEL; n], None))
}

fn finish(
    spec_name: String,
    im: Images,
    labels: Vec<i64>,
    sha256: String,
    path: &Path,
) -> Result<Dataset> {
    if im.is_empty() {
        return Err(Error::bad_file(path, "holds no images"));
    }
    if labels.len() != im.len() {
        return Err(Error::bad_file(
            path,
            format!("{} labels for {} images", labels.len(), im.len()),
        ));
    }
    let ds = Dataset {
        name: spec_name,
        images: im.pixels,
        labels,
        shape: im.shape,
        sha256,
        selection: None,
    };
    ds.validate()
        .map_err(|e| Error::bad_file(path, e.to_string()))?;
    Ok(ds)
}

/// Loads `path:FILE` (see the module doc for formats and label files).
pub fn load_path(file: &Path) -> Result<Dataset> {
    let name = format!("path:{}", file.display());
    if file.is_dir() {
        let (im, labels, sha) = png_images::read_png_folder(file)?;
        return finish(name, im, labels, sha, file);
    }
    let raw = read_file(file)?;
    if raw.is_empty() {
        return Err(Error::bad_file(file, "file is empty"));
    }
    let lower = file.to_string_lossy().to_ascii_lowercase();
    let bytes = if raw.starts_with(&GZIP_MAGIC) {
        gunzip_if_gzip(file, raw.clone())?
    } else {
        raw.clone()
    };
    if bytes.starts_with(NPY_MAGIC) {
        let im = npy::npy_to_images(file, &npy::parse_npy(file, &bytes)?)?;
        let (labels, lraw) = sibling_labels(file, im.len(), |p| {
            npy::npy_to_labels(p, &npy::read_npy(p)?)
        })?;
        let sha = sha256_concat_hex([raw.as_slice(), lraw.as_deref().unwrap_or(&[])]);
        return finish(name, im, labels, sha, file);
    }
    if bytes.starts_with(PNG_MAGIC) {
        let (shape, pixels) = png_images::decode_png(file, &bytes)?;
        let sha = sha256_concat_hex([raw.as_slice()]);
        return finish(name, Images { shape, pixels }, vec![NO_LABEL], sha, file);
    }
    let ext_csv = lower.ends_with(".csv") || lower.ends_with(".csv.gz");
    let ext_bin = lower.ends_with(".bin");
    let idx_magic =
        bytes.len() >= 4 && bytes[0] == 0 && bytes[1] == 0 && (1..=4).contains(&bytes[3]);
    if idx_magic && !ext_bin || lower.contains("ubyte") || lower.ends_with(".idx") {
        let im = idx::idx_to_images(file, &idx::parse_idx(file, &bytes)?)?;
        let (labels, lraw) = sibling_labels(file, im.len(), idx::read_idx_labels)?;
        let sha = sha256_concat_hex([raw.as_slice(), lraw.as_deref().unwrap_or(&[])]);
        return finish(name, im, labels, sha, file);
    }
    if ext_csv {
        let (im, labels) = csv_pixels::parse_csv_pixels(file, &bytes)?;
        return finish(name, im, labels, sha256_concat_hex([raw.as_slice()]), file);
    }
    if ext_bin {
        let kind = cifar::detect_kind(file, bytes.len())?;
        let (im, labels) = cifar::parse_cifar(file, &bytes, kind)?;
        return finish(name, im, labels, sha256_concat_hex([raw.as_slice()]), file);
    }
    Err(Error::bad_file(
        file,
        "unrecognised format: expected IDX, NPY, PNG (magic), .csv, CIFAR .bin, or a folder of PNGs",
    ))
}
