//! Plots of a run for a paper (plotters; PNG and SVG): per method the ID
//! and OOD score histograms with the 95%-TPR threshold, per OOD set the ROC
//! curves of every method, and GradNorm's anatomy (||h||_1 against the
//! softmax factor). Text uses a font compiled into the binary (Ubuntu Light,
//! from `epaint_default_fonts`), so no system fonts or C libraries are needed.

use crate::error::{Error, Result};
use gradnorm_core::metrics;
use gradnorm_core::run::{RunInfo, RunResults};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const SIZE: (u32, u32) = (960, 600);
const BINS: usize = 60;

/// Writes every plot of `results` into `dir` as PNG and SVG; returns the files.
pub fn write_all(dir: &Path, results: &RunResults) -> Result<Vec<PathBuf>> {
    let info = results
        .info
        .as_ref()
        .ok_or_else(|| Error::Invalid("the run has no results to plot".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    register_font();
    let mut files = Vec::new();
    let oods = results.ood_datasets();
    for (m, method) in info.methods.iter().enumerate() {
        let name = format!("hist-{}", method.key());
        files.extend(both(dir, &name, results, Plot::Histograms(m))?);
    }
    for &d in &oods {
        let name = format!("roc-{}", file_safe(&info.datasets[d].name));
        files.extend(both(dir, &name, results, Plot::Roc(d))?);
    }
    files.extend(both(dir, "anatomy", results, Plot::Anatomy)?);
    Ok(files)
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

type DrawResult = std::result::Result<(), String>;

/// What every plot draws on and from.
struct Canvas<'a, DB: DrawingBackend> {
    area: &'a DrawingArea<DB, Shift>,
    results: &'a RunResults,
    info: &'a RunInfo,
}

#[derive(Clone, Copy)]
enum Plot {
    Histograms(usize),
    Roc(usize),
    Anatomy,
}

fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    results: &RunResults,
    plot: Plot,
) -> DrawResult {
    let info = results.info.as_ref().ok_or("no run")?;
    let c = Canvas {
        area,
        results,
        info,
    };
    match plot {
        Plot::Histograms(m) => histograms(c, m),
        Plot::Roc(d) => roc(c, d),
        Plot::Anatomy => anatomy(c),
    }
}

/// Draws once into an SVG file and once into an RGB buffer saved as PNG.
fn both(dir: &Path, name: &str, results: &RunResults, plot: Plot) -> Result<Vec<PathBuf>> {
    let svg = dir.join(format!("{name}.svg"));
    {
        let area = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&area, results, plot).map_err(|e| Error::data(&svg, e))?;
        area.present()
            .map_err(|e| Error::data(&svg, e.to_string()))?;
    }
    let png = dir.join(format!("{name}.png"));
    let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        draw(&area, results, plot).map_err(|e| Error::data(&png, e))?;
        area.present()
            .map_err(|e| Error::data(&png, e.to_string()))?;
    }
    image::RgbImage::from_raw(SIZE.0, SIZE.1, buf)
        .ok_or_else(|| Error::data(&png, "image buffer of the wrong size"))?
        .save(&png)
        .map_err(|e| Error::data(&png, e.to_string()))?;
    Ok(vec![png, svg])
}

fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

/// Dash and gap in pixels of the `i`-th line: solid (gap 0) for the first
/// eight, then dashed, then dotted, so no two of 24 lines look the same.
fn dash_of(i: usize) -> (u32, u32) {
    match i / 8 {
        0 => (24, 0),
        1 => (9, 5),
        _ => (3, 4),
    }
}

fn e<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Axes, grid and their descriptions.
fn mesh<DB: DrawingBackend>(chart: &mut Chart<DB>, x: &str, y: &str) -> DrawResult {
    chart
        .configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(e)
}

/// An axis tick as a person writes it: at most four significant digits,
/// no trailing zeros ("0.25", "1500", "0"), and a power of ten for very
/// large or small values ("1e5", "2.5e-4"); plotters' own prints
/// "100000.0".
pub fn tick(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    // Ticks at 0 often come out as -1e-17 and the like.
    if a < 1e-12 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        let text = format!("{v:.3e}");
        let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
        return format!("{}e{exp}", trim_zeros(mantissa));
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_string()
}

/// "1.500" -> "1.5", "2.000" -> "2", "-0" -> "0".
fn trim_zeros(s: &str) -> &str {
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    };
    if s == "-0" {
        "0"
    } else {
        s
    }
}

/// Fills `area` white and builds a captioned chart over `x` by `y` with its
/// axes, grid and their descriptions; `y_labels` is the room, in pixels, the
/// y-axis labels take.
fn chart_on<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    y_labels: u32,
    (x, x_desc): (std::ops::Range<f64>, &str),
    (y, y_desc): (std::ops::Range<f64>, &str),
) -> std::result::Result<Chart<'a, DB>, String> {
    area.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 26))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(y_labels)
        .build_cartesian_2d(x, y)
        .map_err(e)?;
    mesh(&mut chart, x_desc, y_desc)?;
    Ok(chart)
}

/// The series' legend in a framed box.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(e)
}

/// Finite range of all values, widened a little (and made non-empty).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.02).max(1e-9);
    (lo - pad, hi + pad)
}

/// One method: the density of each set's scores (ID and every OOD set) and
/// the threshold that keeps 95% of the ID images.
fn histograms<DB: DrawingBackend>(c: Canvas<DB>, method: usize) -> DrawResult {
    let sets: Vec<(String, Vec<f64>)> = c
        .info
        .datasets
        .iter()
        .enumerate()
        .map(|(d, ds)| (ds.name.clone(), c.results.scores(d, method)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    let (lo, hi) = range(sets.iter().flat_map(|(_, s)| s.iter().copied()));
    let width = (hi - lo) / BINS as f64;
    // Each set's share of its images per bin (sets of any size compare).
    let densities: Vec<Vec<f64>> = sets
        .iter()
        .map(|(_, s)| {
            metrics::histogram(s, lo, hi, BINS)
                .into_iter()
                .map(|c| c as f64 / s.len() as f64)
                .collect()
        })
        .collect();
    let ymax = densities.iter().flatten().fold(0f64, |m, &v| m.max(v)) * 1.1;
    let label = c.info.methods[method].to_string();
    let mut chart = chart_on(
        c.area,
        &format!("{label}: score histograms"),
        70,
        (lo..hi, "score (higher = more in-distribution)"),
        (0f64..ymax.max(1e-12), "fraction of the set's images"),
    )?;
    for (k, ((name, _), dens)) in sets.iter().zip(&densities).enumerate() {
        let color = palette(k);
        let points: Vec<(f64, f64)> = dens
            .iter()
            .enumerate()
            .flat_map(|(b, &v)| {
                let x0 = lo + b as f64 * width;
                [(x0, v), (x0 + width, v)]
            })
            .collect();
        chart
            .draw_series(AreaSeries::new(points.clone(), 0.0, color.mix(0.18)))
            .map_err(e)?;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(e)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled()));
    }
    if let Some((_, id)) = sets
        .first()
        .filter(|_| c.info.datasets[0].role == gradnorm_core::run::Role::Id)
    {
        // The 95%-TPR threshold depends on the ID scores only; any OOD set
        // gives the same one.
        if let Some((_, ood)) = sets.get(1) {
            let t = metrics::operating_point(id, ood, 0.95).threshold;
            chart
                .draw_series(LineSeries::new(
                    [(t, 0.0), (t, ymax)],
                    BLACK.stroke_width(2),
                ))
                .map_err(e)?
                .label(format!("95% TPR threshold ({t:.4})"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// One OOD set: every method's ROC curve, AUROC in the legend.
fn roc<DB: DrawingBackend>(c: Canvas<DB>, ood: usize) -> DrawResult {
    let mut chart = chart_on(
        c.area,
        &format!(
            "ROC: {} (ID) against {}",
            c.info.datasets[0].name, c.info.datasets[ood].name
        ),
        60,
        (0f64..1f64, "false positive rate (OOD taken as ID)"),
        (0f64..1f64, "true positive rate (ID kept)"),
    )?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
        .map_err(e)?;
    for (m, method) in c.info.methods.iter().enumerate() {
        let (id, od) = (c.results.scores(0, m), c.results.scores(ood, m));
        if id.is_empty() || od.is_empty() {
            continue;
        }
        let color = palette(m);
        let auroc = metrics::auroc(&id, &od);
        let label = format!("{} (AUROC {:.2}%)", method.label(), 100.0 * auroc);
        // Past the palette's eight colours a curve is told apart by its dash.
        let (dash, gap) = dash_of(m);
        let points = metrics::roc_points(&id, &od);
        let series = if gap == 0 {
            chart.draw_series(LineSeries::new(points, color.stroke_width(2)))
        } else {
            chart.draw_series(DashedLineSeries::new(
                points,
                dash,
                gap,
                color.stroke_width(2),
            ))
        };
        series.map_err(e)?.label(label).legend(move |(x, y)| {
            DashedPathElement::new([(x, y), (x + 24, y)], dash, gap, color.stroke_width(3))
        });
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// GradNorm's anatomy: each image at (||h||_1, sum_k |C p_k - 1|);
/// GradNorm is their product (over T), so its level sets are hyperbolas.
fn anatomy<DB: DrawingBackend>(c: Canvas<DB>) -> DrawResult {
    let pts: Vec<Vec<(f64, f64)>> = c
        .results
        .records
        .iter()
        .map(|recs| {
            recs.iter()
                .map(|r| (r.feature_l1 as f64, r.softmax_term as f64))
                .filter(|(x, y)| *x > 0.0 && *y > 0.0 && x.is_finite() && y.is_finite())
                .collect()
        })
        .collect();
    let (xlo, xhi) = range(pts.iter().flatten().map(|p| p.0));
    let (ylo, yhi) = range(pts.iter().flatten().map(|p| p.1));
    let mut chart = chart_on(
        c.area,
        "GradNorm anatomy: feature norm and softmax factor",
        70,
        (xlo..xhi, "||h||_1 (penultimate feature, L1)"),
        (ylo..yhi, "sum_k |C p_k - 1| (softmax factor)"),
    )?;
    // At most 4,000 points per set (evenly spaced) keep the SVG small.
    for (d, set) in pts.iter().enumerate() {
        let color = palette(d);
        let step = set.len().div_ceil(4000).max(1);
        chart
            .draw_series(
                set.iter()
                    .step_by(step)
                    .map(|&p| Circle::new(p, 2, color.mix(0.5).filled())),
            )
            .map_err(e)?
            .label(format!(
                "{} ({})",
                c.info.datasets[d].name,
                match c.info.datasets[d].role {
                    gradnorm_core::run::Role::Id => "ID",
                    gradnorm_core::run::Role::Ood => "OOD",
                }
            ))
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

#[cfg(test)]
mod tests {
    use super::tick;

    #[test]
    fn ticks_are_written_as_people_write_them() {
        for (v, want) in [
            (100000.0, "1e5"),
            (250000.0, "2.5e5"),
            (20000.0, "20000"),
            (1500.0, "1500"),
            (1234.5678, "1235"),
            (12.5, "12.5"),
            (1.0, "1"),
            (0.25, "0.25"),
            (0.1 + 0.2, "0.3"),
            (0.001234, "0.001234"),
            (0.00025, "2.5e-4"),
            (-3.0, "-3"),
            (-0.5, "-0.5"),
            (0.0, "0"),
            (-1e-17, "0"),
        ] {
            assert_eq!(tick(v), want, "{v}");
        }
    }
}
