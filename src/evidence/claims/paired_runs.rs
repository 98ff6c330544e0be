//! The per-image certified radii of a `certify` or `lipschitz` run, read for a paired comparison:
//! each image's radius *of its correct decision* (ID for an ID image, OOD for an OOD image), 0 when
//! that decision is not certified (abstained, wrong, or float32-undecided).

use crate::error::{Error, Result};
use crate::evidence::CsvTable;
use std::path::{Path, PathBuf};

/// Which command wrote a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// `oodcert certify` (certify.csv: randomized smoothing).
    Certify,
    /// `oodcert lipschitz` (lipschitz.csv: Lipschitz and bound-propagation radii).
    Lipschitz,
}

impl RunKind {
    /// The radius columns a paired comparison can use, the default first.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            RunKind::Certify => &["radius", "radius_score", "radius_score_hoeffding"],
            RunKind::Lipschitz => &["radius_bound_prop", "radius_lipschitz", "radius_at_eps"],
        }
    }

    /// `certify` or `lipschitz`.
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Certify => "certify",
            RunKind::Lipschitz => "lipschitz",
        }
    }
}

/// One image's certificate in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRadius {
    /// The dataset spec the image comes from (with its class filter).
    pub dataset: String,
    /// Its index in that dataset.
    pub index: u64,
    /// Its label (-1 when none).
    pub label: i64,
    /// In-distribution (the correct decision is ID) or not (OOD).
    pub is_id: bool,
    /// Whether the correct decision is certified at a radius > 0 (or ≥ 0 for the smoothed score).
    pub certified: bool,
    /// The certified radius of the correct decision; 0 when not certified.
    pub radius: f64,
}

/// The radii of one or more runs of one model (e.g. a lipschitz run per set, or certify shards).
#[derive(Debug, Clone)]
pub struct RunRadii {
    pub kind: RunKind,
    /// The radius column used.
    pub column: String,
    /// The settings that must agree between the two models' runs (σ, n, α…; norm, ball, ε…).
    pub settings: Vec<(String, String)>,
    pub images: Vec<ImageRadius>,
}

/// The CSV of a run folder (certify.csv or lipschitz.csv), or `path` itself when it is a file.
fn run_csv(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(Error::BadInput(format!(
                "{}: no such run folder or file",
                path.display()
            )))
        };
    }
    let found: Vec<PathBuf> = ["certify.csv", "lipschitz.csv"]
        .iter()
        .map(|f| path.join(f))
        .filter(|p| p.is_file())
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::BadInput(format!(
            "{}: neither certify.csv nor lipschitz.csv (not a certify or lipschitz run)",
            path.display()
        ))),
        _ => Err(Error::BadInput(format!(
            "{}: holds both certify.csv and lipschitz.csv; name the file",
            path.display()
        ))),
    }
}

/// The `config` object of the manifest.json beside `csv`, when there is one.
fn manifest_config(csv: &Path) -> Result<Option<serde_json::Value>> {
    let m = csv.with_file_name("manifest.json");
    if !m.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&m)
        .map_err(|e| Error::io(format!("reading {}", m.display()), e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(&m, format!("not JSON: {e}")))?;
    Ok(v.get("config").cloned())
}

/// The settings named in `keys` of a manifest's config, as text (absent keys as "-").
fn settings_of(config: Option<&serde_json::Value>, keys: &[&str]) -> Vec<(String, String)> {
    keys.iter()
        .map(|k| {
            let v = config
                .and_then(|c| c.get(*k))
                .map_or("-".to_string(), |v| v.to_string());
            (k.to_string(), v)
        })
        .collect()
}

/// Reads one run: its kind from its columns, its radius column `column` (default: the kind's
/// first), every row's certificate of the correct decision.
pub fn read_run(path: &Path, column: Option<&str>) -> Result<RunRadii> {
    let csv = run_csv(path)?;
    let t = CsvTable::read(&csv)?;
    let kind = if t.has("idx") && t.has("predict") && t.has("dataset") {
        RunKind::Certify
    } else if t.has("index") && t.has("threshold") && t.has("is_id") {
        RunKind::Lipschitz
    } else {
        return Err(Error::bad_file(
            &csv,
            "neither a certify.csv (idx, predict, dataset) nor a lipschitz.csv (index, threshold, is_id)",
        ));
    };
    let column = column.unwrap_or(kind.columns()[0]);
    if !kind.columns().contains(&column) {
        return Err(Error::BadInput(format!(
            "--radius {column}: not a radius column of a {} run (use one of {})",
            kind.name(),
            kind.columns().join(", ")
        )));
    }
    let config = manifest_config(&csv)?;
    let mut images = Vec::with_capacity(t.rows.len());
    let cr = t.col(column)?;
    let parse_int = |r: usize, c: usize| -> Result<i64> {
        t.cell(r, c).parse::<i64>().map_err(|_| {
            Error::bad_file(
                &csv,
                format!(
                    "row {}, column '{}': '{}' is not an integer",
                    r + 2,
                    t.header[c],
                    t.cell(r, c)
                ),
            )
        })
    };
    let settings;
    match kind {
        RunKind::Certify => {
            settings = settings_of(
                config.as_ref(),
                &["sigma", "n0", "n", "alpha", "noise_layout", "score"],
            );
            let (ci, cl, cp, cd, cid) = (
                t.col("idx")?,
                t.col("label")?,
                t.col("predict")?,
                t.col("dataset")?,
                t.col("is_id")?,
            );
            for r in 0..t.rows.len() {
                let is_id = parse_int(r, cid)? == 1;
                let value = t.num(r, cr)?;
                let certified = if column == "radius" {
                    // Cohen's CERTIFY: certified when it predicts the sample's role (1 = ID).
                    parse_int(r, cp)? == i64::from(is_id)
                } else {
                    value >= 0.0 // -1 = not certified
                };
                images.push(image(&t, r, column, is_id, certified, value)?.with(
                    t.cell(r, cd),
                    parse_int(r, ci)?,
                    parse_int(r, cl)?,
                )?);
            }
        }
        RunKind::Lipschitz => {
            let Some(cfg) = config.as_ref() else {
                return Err(Error::BadInput(format!(
                    "{}: a lipschitz run needs its manifest.json beside it (the dataset name)",
                    csv.display()
                )));
            };
            settings = settings_of(
                Some(cfg),
                &[
                    "norm",
                    "box",
                    "eps",
                    "bounds",
                    "radius_iters",
                    "radius_max",
                    "score",
                ],
            );
            let dataset = cfg.get("data").and_then(|d| d.as_str()).ok_or_else(|| {
                Error::bad_file(
                    csv.with_file_name("manifest.json"),
                    "no config.data (the dataset)",
                )
            })?;
            let (ci, cl, cid, cs, ct) = (
                t.col("index")?,
                t.col("label")?,
                t.col("is_id")?,
                t.col("score")?,
                t.col("threshold")?,
            );
            let cu = t
                .has("f32_undecided")
                .then(|| t.col("f32_undecided"))
                .transpose()?;
            let boolean = |r: usize, c: usize| -> Result<bool> {
                match t.cell(r, c) {
                    "true" => Ok(true),
                    "false" | "" => Ok(false),
                    s => Err(Error::bad_file(
                        &csv,
                        format!(
                            "row {}, column '{}': '{s}' is not true/false",
                            r + 2,
                            t.header[c]
                        ),
                    )),
                }
            };
            for r in 0..t.rows.len() {
                let is_id = boolean(r, cid)?;
                // The detector says ID when S ≤ γ (lipschitz's threshold rule).
                let decides_id = t.num(r, cs)? <= t.num(r, ct)?;
                let undecided = match cu {
                    Some(c) => boolean(r, c)?,
                    None => false,
                };
                let value = t.num(r, cr)?;
                let certified = decides_id == is_id && !undecided && value > 0.0;
                images.push(image(&t, r, column, is_id, certified, value)?.with(
                    dataset,
                    parse_int(r, ci)?,
                    parse_int(r, cl)?,
                )?);
            }
        }
    }
    Ok(RunRadii {
        kind,
        column: column.to_string(),
        settings,
        images,
    })
}

/// A row's certificate before its identity is attached.
struct Partial {
    is_id: bool,
    certified: bool,
    radius: f64,
    path: PathBuf,
    row: usize,
}

impl Partial {
    fn with(self, dataset: &str, index: i64, label: i64) -> Result<ImageRadius> {
        let index = u64::try_from(index).map_err(|_| {
            Error::bad_file(
                &self.path,
                format!("row {}: negative image index {index}", self.row + 2),
            )
        })?;
        Ok(ImageRadius {
            dataset: dataset.to_string(),
            index,
            label,
            is_id: self.is_id,
            certified: self.certified,
            radius: if self.certified { self.radius } else { 0.0 },
        })
    }
}

fn image(
    t: &CsvTable,
    r: usize,
    column: &str,
    is_id: bool,
    certified: bool,
    value: f64,
) -> Result<Partial> {
    // An infinite radius cannot come from a finite search; NaN is never a radius.
    if !value.is_finite() {
        return Err(Error::bad_file(
            &t.path,
            format!(
                "row {}, column '{column}': radius {value} is not finite",
                r + 2
            ),
        ));
    }
    if certified && value < 0.0 {
        return Err(Error::bad_file(
            &t.path,
            format!("row {}, column '{column}': negative radius {value}", r + 2),
        ));
    }
    Ok(Partial {
        is_id,
        certified,
        radius: value,
        path: t.path.clone(),
        row: r,
    })
}

/// Reads several runs of one model (shards, or one run per set) into one list; they must be of
/// one kind and one setting, and no image may appear twice.
pub fn read_runs(paths: &[PathBuf], column: Option<&str>) -> Result<RunRadii> {
    let Some((first, rest)) = paths.split_first() else {
        return Err(Error::BadInput("paired comparison: no run given".into()));
    };
    let mut all = read_run(first, column)?;
    for p in rest {
        let r = read_run(p, Some(&all.column))?;
        if r.kind != all.kind || r.settings != all.settings {
            return Err(Error::BadInput(format!(
                "{} and {}: runs of different kinds or settings ({} {:?} vs {} {:?})",
                first.display(),
                p.display(),
                all.kind.name(),
                all.settings,
                r.kind.name(),
                r.settings
            )));
        }
        all.images.extend(r.images);
    }
    let mut keys: Vec<(&str, u64)> = all
        .images
        .iter()
        .map(|i| (i.dataset.as_str(), i.index))
        .collect();
    keys.sort_unstable();
    if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::BadInput(format!(
            "image {}#{} appears twice in the runs of one model ({})",
            w[0].0,
            w[0].1,
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(all)
}
