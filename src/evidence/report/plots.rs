//! Figures as SVG and PNG (plotters; text in DejaVu Sans embedded from the `dejavu` crate, PNGs
//! encoded with the `png` crate): certified detection rate vs radius, ID vs OOD score
//! histograms, ‖∇ₓS‖₂ over training (cf. the GReg paper's Figure 3) and Lipschitz bound tightness.

use super::csv_table::CsvTable;
use super::discover::{Run, RunKind};
use super::tables::{CurvePoint, read_curves};
use crate::error::{Error, Result};
use crate::evidence::write_atomic;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Figure size in pixels (SVG user units and PNG pixels).
pub const SIZE: (u32, u32) = (960, 600);
/// Number of histogram bins.
pub const BINS: usize = 60;
/// Lipschitz summary quantities drawn in the tightness figure (lower bounds, estimate, upper bounds).
pub const BOUND_QUANTITIES: [&str; 5] = [
    "lower_sample",
    "lower_pgd",
    "clever",
    "upper_local",
    "upper_global",
];
const FONT: &str = "sans-serif";

/// A written figure: `stem` (relative to the report folder, without extension) has `.svg` and `.png`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotFile {
    /// Path below the report folder without the extension, e.g. `plots/grad_norm_training`.
    pub stem: String,
    /// One-line description.
    pub title: String,
    /// Indices of the runs drawn.
    pub runs: Vec<usize>,
    /// The CSV files the figure was drawn from.
    pub sources: Vec<PathBuf>,
}

/// A polyline split at undefined points: each segment is drawn separately.
type Segments = Vec<Vec<(f64, f64)>>;

/// What a figure shows; drawn identically on the SVG and the bitmap backend.
enum Figure {
    /// Per certificate: (name, ID rate curve, OOD rate curve) over the radius.
    Certified {
        title: String,
        curves: Vec<(String, Segments, Segments)>,
        xmax: f64,
    },
    /// Per dataset: (name, is ID, fraction per bin); bins are equal-width over `lo..hi`.
    Histogram {
        title: String,
        lo: f64,
        hi: f64,
        sets: Vec<(String, bool, Vec<f64>)>,
    },
    /// Per run: (label, ‖∇S‖ on ID batches, on auxiliary batches) vs step.
    GradNorm {
        runs: Vec<(String, Segments, Segments)>,
    },
    /// Per run: (label, median per quantity in `names` order, None if absent).
    Tightness {
        names: Vec<String>,
        runs: Vec<(String, Vec<Option<f64>>)>,
    },
}

fn perr<E: std::fmt::Debug>(e: E) -> Error {
    Error::Internal(format!("plotting: {e:?}"))
}

fn ensure_font() -> Result<()> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Internal(
            "the embedded DejaVu Sans font did not load".into(),
        ))
    }
}

fn color(k: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    C[k % C.len()]
}

fn finite_max(segs: &[&Segments], f: impl Fn(&(f64, f64)) -> f64) -> f64 {
    segs.iter()
        .flat_map(|s| s.iter().flatten())
        .map(f)
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max)
}

impl Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(perr)?;
        match self {
            Figure::Certified {
                title,
                curves,
                xmax,
            } => {
                let mut ch = ChartBuilder::on(root)
                    .caption(title, (FONT, 22))
                    .margin(15)
                    .x_label_area_size(50)
                    .y_label_area_size(65)
                    .build_cartesian_2d(0f64..xmax.max(1e-9), 0f64..1.02f64)
                    .map_err(perr)?;
                ch.configure_mesh()
                    .x_desc("ℓ2 radius r (pixel units)")
                    .y_desc("certified rate at radius ≥ r")
                    .label_style((FONT, 15))
                    .axis_desc_style((FONT, 17))
                    .draw()
                    .map_err(perr)?;
                for (k, (name, id, ood)) in curves.iter().enumerate() {
                    let st = color(k).stroke_width(3);
                    for (i, s) in id.iter().enumerate() {
                        let a = ch
                            .draw_series(LineSeries::new(s.clone(), st))
                            .map_err(perr)?;
                        if i == 0 {
                            a.label(format!("{name}: ID")).legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 24, y)], st)
                            });
                        }
                    }
                    for (i, s) in ood.iter().enumerate() {
                        let a = ch
                            .draw_series(DashedLineSeries::new(s.clone(), 9, 6, st))
                            .map_err(perr)?;
                        if i == 0 {
                            a.label(format!("{name}: OOD")).legend(move |(x, y)| {
                                DashedPathElement::new(vec![(x, y), (x + 24, y)], 6, 4, st)
                            });
                        }
                    }
                }
                legend(&mut ch, SeriesLabelPosition::UpperRight)?;
            }
            Figure::Histogram {
                title,
                lo,
                hi,
                sets,
            } => {
                let ymax = sets
                    .iter()
                    .flat_map(|s| s.2.iter().copied())
                    .fold(0.0f64, f64::max)
                    .max(1e-9);
                let mut ch = ChartBuilder::on(root)
                    .caption(title, (FONT, 22))
                    .margin(15)
                    .x_label_area_size(50)
                    .y_label_area_size(65)
                    .build_cartesian_2d(*lo..*hi, 0f64..ymax * 1.08)
                    .map_err(perr)?;
                ch.configure_mesh()
                    .x_desc("energy score S(x) = −T·logsumexp(f(x)/T)  (larger = more OOD)")
                    .y_desc("fraction of the set per bin")
                    .label_style((FONT, 15))
                    .axis_desc_style((FONT, 17))
                    .draw()
                    .map_err(perr)?;
                let w = (hi - lo) / BINS as f64;
                let mut k = 0;
                for (name, is_id, f) in sets {
                    let st = if *is_id {
                        BLACK.stroke_width(4)
                    } else {
                        k += 1;
                        color(k - 1).stroke_width(2)
                    };
                    let mut pts = vec![(*lo, 0.0)];
                    for (b, v) in f.iter().enumerate() {
                        pts.push((lo + b as f64 * w, *v));
                        pts.push((lo + (b + 1) as f64 * w, *v));
                    }
                    pts.push((*hi, 0.0));
                    let label = if *is_id {
                        format!("ID: {name}")
                    } else {
                        format!("OOD: {name}")
                    };
                    ch.draw_series(LineSeries::new(pts, st))
                        .map_err(perr)?
                        .label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], st));
                }
                legend(&mut ch, SeriesLabelPosition::UpperMiddle)?;
            }
            Figure::GradNorm { runs } => {
                let all: Vec<&Segments> = runs.iter().flat_map(|r| [&r.1, &r.2]).collect();
                let xmax = finite_max(&all, |p| p.0).max(1.0);
                let ymax = finite_max(&all, |p| p.1).max(1e-9);
                let mut ch = ChartBuilder::on(root)
                    .caption(
                        "‖∇ₓS‖₂ during training (mean over each logged batch)",
                        (FONT, 22),
                    )
                    .margin(15)
                    .x_label_area_size(50)
                    .y_label_area_size(65)
                    .build_cartesian_2d(0f64..xmax, 0f64..ymax * 1.08)
                    .map_err(perr)?;
                ch.configure_mesh()
                    .x_desc("training step")
                    .y_desc("‖∇ₓS(x)‖₂")
                    .label_style((FONT, 15))
                    .axis_desc_style((FONT, 17))
                    .draw()
                    .map_err(perr)?;
                for (k, (name, gin, gaux)) in runs.iter().enumerate() {
                    let st = color(k).stroke_width(3);
                    for (i, s) in gin.iter().enumerate() {
                        let a = ch
                            .draw_series(LineSeries::new(s.clone(), st))
                            .map_err(perr)?;
                        if i == 0 {
                            a.label(format!("{name}: ID batch")).legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 24, y)], st)
                            });
                        }
                    }
                    for (i, s) in gaux.iter().enumerate() {
                        let a = ch
                            .draw_series(DashedLineSeries::new(s.clone(), 9, 6, st))
                            .map_err(perr)?;
                        if i == 0 {
                            a.label(format!("{name}: auxiliary OOD batch")).legend(
                                move |(x, y)| {
                                    DashedPathElement::new(vec![(x, y), (x + 24, y)], 6, 4, st)
                                },
                            );
                        }
                    }
                }
                legend(&mut ch, SeriesLabelPosition::UpperRight)?;
            }
            Figure::Tightness { names, runs } => {
                let vals = runs.iter().flat_map(|r| r.1.iter().flatten().copied());
                let (lo, hi) = vals.fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
                let (lo, hi) = (lo / 2.0, hi * 2.0);
                let n = names.len();
                let mut ch = ChartBuilder::on(root)
                    .caption(
                        "Lipschitz constant of S per method (median over samples)",
                        (FONT, 22),
                    )
                    .margin(15)
                    .x_label_area_size(50)
                    .y_label_area_size(75)
                    .build_cartesian_2d(-0.5f64..n as f64 - 0.5, (lo..hi).log_scale())
                    .map_err(perr)?;
                let fmt = |x: &f64| {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                        names[i as usize].clone()
                    } else {
                        String::new()
                    }
                };
                ch.configure_mesh()
                    .x_labels(n + 1)
                    .x_label_formatter(&fmt)
                    .disable_x_mesh()
                    .x_desc("method (lower bounds · estimate · upper bounds)")
                    .y_desc("Lipschitz constant of S (log scale)")
                    .label_style((FONT, 15))
                    .axis_desc_style((FONT, 17))
                    .draw()
                    .map_err(perr)?;
                let bw = 0.8 / runs.len().max(1) as f64;
                for (k, (name, v)) in runs.iter().enumerate() {
                    let c = color(k);
                    let bars: Vec<Rectangle<(f64, f64)>> = v
                        .iter()
                        .enumerate()
                        .filter_map(|(m, v)| {
                            let x0 = m as f64 - 0.4 + k as f64 * bw;
                            v.map(|v| Rectangle::new([(x0, lo), (x0 + bw * 0.9, v)], c.filled()))
                        })
                        .collect();
                    ch.draw_series(bars)
                        .map_err(perr)?
                        .label(name.clone())
                        .legend(move |(x, y)| {
                            Rectangle::new([(x, y - 6), (x + 18, y + 6)], c.filled())
                        });
                }
                legend(&mut ch, SeriesLabelPosition::UpperLeft)?;
            }
        }
        root.present().map_err(perr)
    }
}

fn legend<'a, DB: DrawingBackend + 'a, X, Y>(
    ch: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    pos: SeriesLabelPosition,
) -> Result<()>
where
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
{
    ch.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .position(pos)
        .draw()
        .map_err(perr)
}

/// Writes `fig` as `<out>/<stem>.svg` and `<out>/<stem>.png`.
fn write_figure(out: &Path, stem: &str, fig: &Figure) -> Result<()> {
    ensure_font()?;
    let (w, h) = SIZE;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        fig.draw(&root)?;
    }
    write_atomic(&out.join(format!("{stem}.svg")), svg.as_bytes())?;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let backend: BitMapBackend =
            BitMapBackend::with_buffer_and_format(&mut rgb, SIZE).map_err(perr)?;
        fig.draw(&backend.into_drawing_area())?;
    }
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(perr)?;
        wr.write_image_data(&rgb).map_err(perr)?;
        wr.finish().map_err(perr)?;
    }
    write_atomic(&out.join(format!("{stem}.png")), &bytes)
}

/// A run label made safe for a file name (`[A-Za-z0-9_-]`, others become `_`).
pub fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Splits (x, y) points into segments at non-finite y.
fn segments(points: impl Iterator<Item = (f64, f64)>) -> Segments {
    let mut out: Segments = vec![Vec::new()];
    for (x, y) in points {
        if x.is_finite() && y.is_finite() {
            if let Some(last) = out.last_mut() {
                last.push((x, y));
            }
        } else if out.last().is_some_and(|l| !l.is_empty()) {
            out.push(Vec::new());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Fraction of `v` in each of [`BINS`] equal bins over `lo..hi` (the top edge is in the last bin).
pub fn histogram(v: &[f64], lo: f64, hi: f64) -> Vec<f64> {
    let mut c = vec![0.0; BINS];
    let w = (hi - lo) / BINS as f64;
    for &x in v.iter().filter(|x| x.is_finite()) {
        let b = if w > 0.0 { ((x - lo) / w).floor() } else { 0.0 };
        let b = (b.max(0.0) as usize).min(BINS - 1);
        c[b] += 1.0;
    }
    let n = v.iter().filter(|x| x.is_finite()).count().max(1) as f64;
    c.iter().map(|k| k / n).collect()
}

/// Draws every figure the runs allow into `<out>/plots/` and lists them.
pub fn write_plots(runs: &[Run], out: &Path) -> Result<Vec<PlotFile>> {
    let mut files = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        match run.kind {
            RunKind::Certify => files.push(certified_plot(i, run, out)?),
            RunKind::Eval => {
                if let Some(p) = histogram_plot(i, run, out)? {
                    files.push(p);
                }
            }
            _ => {}
        }
    }
    if let Some(p) = grad_norm_plot(runs, out)? {
        files.push(p);
    }
    if let Some(p) = tightness_plot(runs, out)? {
        files.push(p);
    }
    Ok(files)
}

fn certified_plot(i: usize, run: &Run, out: &Path) -> Result<PlotFile> {
    let src = run.dir.join("curves.csv");
    let t = CsvTable::read(&src)?;
    let parsed = read_curves(&t)?;
    let xmax = parsed
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.radius))
        .fold(0.0f64, f64::max);
    let xmax = if xmax > 0.0 { xmax } else { 1.0 };
    let curves = parsed
        .iter()
        .map(|(name, c)| {
            let f = |g: fn(&CurvePoint) -> Option<f64>| {
                segments(c.iter().map(|p| (p.radius, g(p).unwrap_or(f64::NAN))))
            };
            (name.clone(), f(|p| p.id_rate), f(|p| p.ood_rate))
        })
        .collect();
    let sigma = run.manifest["config"]["sigma"]
        .as_f64()
        .map_or(String::new(), |s| format!(", σ = {s}"));
    let title = format!("Certified detection rate vs radius: {}{sigma}", run.label);
    let stem = format!("plots/certified_rate_{}", file_safe(&run.label));
    write_figure(
        out,
        &stem,
        &Figure::Certified {
            title: title.clone(),
            curves,
            xmax,
        },
    )?;
    Ok(PlotFile {
        stem,
        title,
        runs: vec![i],
        sources: vec![src],
    })
}

fn histogram_plot(i: usize, run: &Run, out: &Path) -> Result<Option<PlotFile>> {
    let src = run.dir.join("scores.csv");
    if !src.is_file() {
        eprintln!(
            "oodcert report: {} has no scores.csv; no histogram",
            run.dir.display()
        );
        return Ok(None);
    }
    let t = CsvTable::read(&src)?;
    let (cd, cs, ci) = (
        t.col("dataset")?,
        t.require_numeric("score", false)?,
        t.require_numeric("is_id", false)?,
    );
    let mut groups: Vec<(String, bool, Vec<f64>)> = Vec::new();
    for r in 0..t.rows.len() {
        let (name, id, s) = (t.cell(r, cd), t.num(r, ci)? == 1.0, t.num(r, cs)?);
        match groups.iter_mut().find(|g| g.0 == name && g.1 == id) {
            Some(g) => g.2.push(s),
            None => groups.push((name.to_string(), id, vec![s])),
        }
    }
    groups.sort_by_key(|g| !g.1); // ID first, then OOD sets in file order (stable)
    let all = groups
        .iter()
        .flat_map(|g| g.2.iter().copied())
        .filter(|x| x.is_finite());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(Error::bad_file(&src, "no finite scores"));
    }
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let sets = groups
        .iter()
        .map(|g| (g.0.clone(), g.1, histogram(&g.2, lo, hi)))
        .collect();
    let title = format!("ID vs OOD energy scores: {}", run.label);
    let stem = format!("plots/scores_{}", file_safe(&run.label));
    write_figure(
        out,
        &stem,
        &Figure::Histogram {
            title: title.clone(),
            lo,
            hi,
            sets,
        },
    )?;
    Ok(Some(PlotFile {
        stem,
        title,
        runs: vec![i],
        sources: vec![src],
    }))
}

fn grad_norm_plot(runs: &[Run], out: &Path) -> Result<Option<PlotFile>> {
    let mut drawn = Vec::new();
    let mut idx = Vec::new();
    let mut sources = Vec::new();
    for (i, run) in runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == RunKind::Train)
    {
        let src = run.dir.join("train_log.csv");
        let t = CsvTable::read(&src)?;
        let cs = t.require_numeric("step", false)?;
        let cin = t.require_numeric("grad_norm_in", false)?;
        let caux = t.require_numeric("grad_norm_aux", false)?;
        let col = |c: usize| -> Result<Segments> {
            let pts: Vec<(f64, f64)> = (0..t.rows.len())
                .map(|r| Ok((t.num(r, cs)?, t.num(r, c)?)))
                .collect::<Result<_>>()?;
            Ok(segments(pts.into_iter()))
        };
        drawn.push((run.label.clone(), col(cin)?, col(caux)?));
        idx.push(i);
        sources.push(src);
    }
    if drawn.is_empty() {
        return Ok(None);
    }
    let stem = "plots/grad_norm_training".to_string();
    write_figure(out, &stem, &Figure::GradNorm { runs: drawn })?;
    let title = "‖∇ₓS‖₂ over training, ID (solid) and auxiliary OOD (dashed) batches".to_string();
    Ok(Some(PlotFile {
        stem,
        title,
        runs: idx,
        sources,
    }))
}

fn tightness_plot(runs: &[Run], out: &Path) -> Result<Option<PlotFile>> {
    let mut per_run = Vec::new();
    let mut idx = Vec::new();
    let mut sources = Vec::new();
    for (i, run) in runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == RunKind::Lipschitz)
    {
        let src = run.dir.join("summary.csv");
        let t = CsvTable::read(&src)?;
        let (cq, cm) = (t.col("quantity")?, t.require_numeric("median", true)?);
        let mut v = Vec::new();
        for q in BOUND_QUANTITIES {
            let m = match (0..t.rows.len()).find(|&r| t.cell(r, cq) == q) {
                Some(r) => t.opt_num(r, cm)?.filter(|x| x.is_finite() && *x > 0.0),
                None => None,
            };
            v.push(m);
        }
        per_run.push((run.label.clone(), v));
        idx.push(i);
        sources.push(src);
    }
    // Keep only methods some run measured.
    let keep: Vec<usize> = (0..BOUND_QUANTITIES.len())
        .filter(|&m| per_run.iter().any(|r| r.1[m].is_some()))
        .collect();
    if keep.is_empty() {
        return Ok(None);
    }
    let names = keep
        .iter()
        .map(|&m| BOUND_QUANTITIES[m].to_string())
        .collect();
    let runs_v = per_run
        .into_iter()
        .map(|(l, v)| (l, keep.iter().map(|&m| v[m]).collect()))
        .collect();
    let stem = "plots/bound_tightness".to_string();
    write_figure(
        out,
        &stem,
        &Figure::Tightness {
            names,
            runs: runs_v,
        },
    )?;
    let title =
        "Lipschitz bounds of S per method: lower bounds, CLEVER estimate, certified upper bounds"
            .to_string();
    Ok(Some(PlotFile {
        stem,
        title,
        runs: idx,
        sources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_sums_to_one_and_segments_split_at_nan() {
        let h = histogram(&[0.0, 0.5, 1.0, 1.0], 0.0, 1.0);
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(h[BINS - 1], 0.5);
        let s = segments([(0.0, 1.0), (1.0, f64::NAN), (2.0, 2.0), (3.0, 3.0)].into_iter());
        assert_eq!(s, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
        assert_eq!(file_safe("a/b c"), "a_b_c");
    }
}
