//! Two score distributions (ID and an OOD set) as filled histograms on one
//! axis, with an optional threshold line. Told apart by glyph as well as
//! colour, so they read in monochrome too: ID `█` (eighth blocks at the
//! top), OOD `▒`, both `▓`. Shared by the dashboard and the anatomy screen.

use super::analysis;
use super::mouse::Plot;
use super::theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

pub const ID_GLYPH: &str = "█";
pub const OOD_GLYPH: &str = "▒";
pub const BOTH_GLYPH: &str = "▓";
/// A partly filled ID cell, by eighths.
const EIGHTHS: [&str; 9] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];

pub struct Histograms<'a> {
    pub id: &'a [f64],
    pub ood: &'a [f64],
    pub marker: Option<f64>,
    pub block: Block<'a>,
    /// Told where the plot lies and the score range across it (the mouse
    /// sets the threshold there).
    pub plot: Option<&'a mut Plot>,
    /// The values are natural logs of the scores: label the axis with the
    /// scores themselves.
    pub log: bool,
    /// The glyphs' legend in the top right corner.
    pub legend: bool,
}

/// The legend, in the block's top right corner.
pub fn legend() -> Line<'static> {
    Line::from(vec![
        Span::styled(format!(" {ID_GLYPH} ID "), Style::new().fg(theme::ID)),
        Span::styled(format!("{OOD_GLYPH} OOD "), Style::new().fg(theme::OOD)),
        Span::raw(format!("{BOTH_GLYPH} both ")),
    ])
    .right_aligned()
}

/// About 2·sqrt(n) bins for the smaller set (noisy otherwise), 8 to 80,
/// and at least two columns each.
pub fn bins(n_id: usize, n_ood: usize, width: u16) -> usize {
    let n = [n_id, n_ood]
        .into_iter()
        .filter(|&n| n > 0)
        .min()
        .unwrap_or(1);
    let by_width = (width as usize / 2).max(8);
    ((2.0 * (n as f64).sqrt()) as usize)
        .clamp(8, 80)
        .min(by_width)
}

/// What one cell of the plot shows: `id` and `ood` are the bar heights of
/// its column in cells, `row` the cell's height above the axis.
pub fn cell(id: f64, ood: f64, row: usize) -> (&'static str, Color) {
    let r = row as f64;
    let id_part = (id - r).clamp(0.0, 1.0);
    let ood_on = ood - r >= 0.5;
    if ood_on && id_part >= 0.5 {
        (BOTH_GLYPH, theme::ID)
    } else if ood_on {
        (OOD_GLYPH, theme::OOD)
    } else {
        (EIGHTHS[(id_part * 8.0).round() as usize], theme::ID)
    }
}

impl Histograms<'_> {
    pub fn render(self, area: Rect, buf: &mut Buffer) {
        let block = if self.legend {
            self.block.title(legend())
        } else {
            self.block
        };
        let inner = block.inner(area);
        let extra: Vec<f64> = self.marker.into_iter().collect();
        let Some((lo, hi)) = analysis::range(&[self.id, self.ood], &extra) else {
            Paragraph::new(Line::styled("waiting for scores…", theme::dim()))
                .block(block)
                .render(area, buf);
            return;
        };
        block.render(area, buf);
        let y_top_guess = "100%".len() as u16;
        if inner.width < y_top_guess + 10 || inner.height < 3 {
            return;
        }
        let bins = bins(self.id.len(), self.ood.len(), inner.width);
        let did = analysis::density(self.id, lo, hi, bins);
        let dood = analysis::density(self.ood, lo, hi, bins);
        let ymax = did
            .iter()
            .chain(&dood)
            .fold(0.0f64, |m, &v| m.max(v))
            .max(1e-9);
        let y_top = theme::percent(ymax, 0);
        // The y labels, the axis, then the plot; the x axis and its labels
        // below.
        let label_w = y_top.chars().count().max(2) as u16;
        let plot = Rect {
            x: inner.x + label_w + 1,
            y: inner.y,
            width: inner.width - label_w - 1,
            height: inner.height - 2,
        };
        if let Some(p) = self.plot {
            *p = Plot {
                area: plot,
                lo,
                hi,
                log: self.log,
            };
        }
        let dim = theme::dim();
        let axis_x = plot.x - 1;
        for y in plot.top()..plot.bottom() {
            buf.set_string(axis_x, y, "│", dim);
        }
        buf.set_string(
            inner.x,
            plot.y,
            format!("{y_top:>w$}", w = label_w as usize),
            dim,
        );
        buf.set_string(
            inner.x,
            plot.bottom() - 1,
            format!("{:>w$}", "0%", w = label_w as usize),
            dim,
        );
        buf.set_string(axis_x, plot.bottom(), "└", dim);
        buf.set_string(plot.x, plot.bottom(), "─".repeat(plot.width as usize), dim);
        let rows = plot.height as f64;
        let has = |v: &[f64]| !v.is_empty();
        for c in 0..plot.width {
            let b = (c as usize * bins / plot.width as usize).min(bins - 1);
            let h_id = if has(self.id) {
                did[b] / ymax * rows
            } else {
                0.0
            };
            let h_ood = if has(self.ood) {
                dood[b] / ymax * rows
            } else {
                0.0
            };
            for r in 0..plot.height as usize {
                let (glyph, color) = cell(h_id, h_ood, r);
                if glyph != " " {
                    let y = plot.bottom() - 1 - r as u16;
                    buf.set_string(plot.x + c, y, glyph, Style::new().fg(color));
                }
            }
        }
        if let Some(t) = self.marker.filter(|t| t.is_finite()) {
            let f = ((t - lo) / (hi - lo)).clamp(0.0, 1.0);
            let x = plot.x + (f * (plot.width - 1) as f64).round() as u16;
            let style = Style::new().fg(theme::THRESHOLD);
            for y in plot.top()..plot.bottom() {
                buf.set_string(x, y, "┃", style);
            }
        }
        let label = |v: f64| {
            if self.log {
                theme::num(v.exp(), hi.exp() - lo.exp())
            } else {
                theme::num(v, hi - lo)
            }
        };
        let y = plot.bottom() + 1;
        let (l, m, r) = (label(lo), label((lo + hi) / 2.0), label(hi));
        buf.set_string(plot.x, y, &l, dim);
        let mw = m.chars().count() as u16;
        buf.set_string(plot.x + (plot.width.saturating_sub(mw)) / 2, y, &m, dim);
        let rw = r.chars().count() as u16;
        buf.set_string(plot.right().saturating_sub(rw), y, &r, dim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_tell_id_ood_and_both_apart_by_glyph() {
        // ID 2.5 cells high, OOD 1 cell.
        assert_eq!(cell(2.5, 1.0, 0).0, BOTH_GLYPH);
        assert_eq!(cell(2.5, 1.0, 1).0, ID_GLYPH);
        assert_eq!(cell(2.5, 1.0, 2).0, "▄");
        assert_eq!(cell(2.5, 1.0, 3).0, " ");
        assert_eq!(cell(0.0, 3.0, 2).0, OOD_GLYPH);
        assert_eq!(cell(0.2, 3.0, 0).0, OOD_GLYPH);
    }

    #[test]
    fn bins_follow_the_smaller_set_not_the_width() {
        assert_eq!(bins(10_000, 100, 200), 20);
        assert_eq!(bins(10_000, 100, 400), 20);
        assert_eq!(bins(4, 4, 200), 8);
        assert_eq!(bins(1_000_000, 1_000_000, 60), 30);
    }
}
