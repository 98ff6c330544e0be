//! Drawing one figure with plotters on both backends: SVG (text as `<text>`) and an RGB bitmap
//! encoded as PNG with the `png` crate; text is set in DejaVu Sans, embedded from the `dejavu`
//! crate and registered with plotters' `ab_glyph` font backend (no system font libraries).

use super::plots::BINS;
use crate::error::{Error, Result};
use crate::evidence::write_atomic;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// Figure size in pixels (SVG user units and PNG pixels).
pub const SIZE: (u32, u32) = (960, 600);
const FONT: &str = "sans-serif";

/// A polyline split at undefined points: each segment is drawn separately.
pub type Segments = Vec<Vec<(f64, f64)>>;

/// What a figure shows; drawn identically on the SVG and the bitmap backend.
pub enum Figure {
    /// Per certificate: (name, ID rate curve, OOD rate curve) over the radius.
    Certified {
        title: String,
        curves: Vec<(String, Segments, Segments)>,
        xmax: f64,
    },
    /// Lines with y in [0, 1] over x in [0, `xmax`]: (name, colour index, dashed, segments).
    Lines {
        title: String,
        x_desc: String,
        y_desc: String,
        lines: Vec<(String, usize, bool, Segments)>,
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
                let all = curves.iter().flat_map(|c| [&c.1, &c.2]);
                legend(&mut ch, quiet_corner(all, *xmax))?;
            }
            Figure::Lines {
                title,
                x_desc,
                y_desc,
                lines,
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
                    .x_desc(x_desc.as_str())
                    .y_desc(y_desc.as_str())
                    .label_style((FONT, 15))
                    .axis_desc_style((FONT, 17))
                    .draw()
                    .map_err(perr)?;
                for (name, k, dashed, segs) in lines {
                    let st = color(*k).stroke_width(3);
                    for (i, s) in segs.iter().enumerate() {
                        // A marker at every point: a curve over a few radii reads as measured points.
                        ch.draw_series(s.iter().map(|&p| Circle::new(p, 4, st.filled())))
                            .map_err(perr)?;
                        let a = if *dashed {
                            ch.draw_series(DashedLineSeries::new(s.clone(), 9, 6, st))
                                .map_err(perr)?
                        } else {
                            ch.draw_series(LineSeries::new(s.clone(), st))
                                .map_err(perr)?
                        };
                        if i == 0 {
                            let dashed = *dashed;
                            a.label(name.clone()).legend(move |(x, y)| {
                                if dashed {
                                    DashedPathElement::new(vec![(x, y), (x + 24, y)], 6, 4, st)
                                        .into_dyn()
                                } else {
                                    PathElement::new(vec![(x, y), (x + 24, y)], st).into_dyn()
                                }
                            });
                        }
                    }
                }
                legend(&mut ch, quiet_corner(lines.iter().map(|l| &l.3), *xmax))?;
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
                // Whole decades, so the log axis gets labelled powers of ten.
                let (lo, hi) = (
                    10f64.powf(lo.log10().floor()),
                    10f64.powf((hi * 1.5).log10().ceil()),
                );
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
                    // The value above each bar (3 significant digits).
                    let values: Vec<Text<(f64, f64), String>> = v
                        .iter()
                        .enumerate()
                        .filter_map(|(m, v)| {
                            let x = m as f64 - 0.4 + (k as f64 + 0.1) * bw;
                            v.map(|v| Text::new(sig3(v), (x, v * 1.15), (FONT, 13)))
                        })
                        .collect();
                    ch.draw_series(values).map_err(perr)?;
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

/// The legend corner of a [0, xmax] × [0, 1] chart that the fewest points of `segs` fall in
/// (upper right first on a tie), so the legend hides as little of the curves as it can.
fn quiet_corner<'a>(segs: impl Iterator<Item = &'a Segments>, xmax: f64) -> SeriesLabelPosition {
    use SeriesLabelPosition::*;
    let mut n = [0usize; 4]; // upper right, lower left, upper left, lower right
    for &(x, y) in segs.flat_map(|s| s.iter().flatten()) {
        let (right, left) = (x >= 0.5 * xmax, x <= 0.5 * xmax);
        let (up, down) = (y >= 0.6, y <= 0.4);
        n[0] += usize::from(right && up);
        n[1] += usize::from(left && down);
        n[2] += usize::from(left && up);
        n[3] += usize::from(right && down);
    }
    let k = (0..4).min_by_key(|&k| n[k]).unwrap_or(0);
    [UpperRight, LowerLeft, UpperLeft, LowerRight][k].clone()
}

/// `v` with 3 significant digits, plain up to 1e5.
fn sig3(v: f64) -> String {
    if v.abs() >= 1e5 || (v != 0.0 && v.abs() < 1e-3) {
        format!("{v:.2e}")
    } else {
        let d = (2 - v.abs().log10().floor() as i32).max(0) as usize;
        format!("{v:.d$}")
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
pub fn write_figure(out: &Path, stem: &str, fig: &Figure) -> Result<()> {
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
