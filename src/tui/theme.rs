//! Colours, styles, the histogram glyphs and the one number formatting
//! every screen uses: `pct` for metrics (the paper's two decimals, the
//! header says %), `percent` for shares with their sign, `num` for scores,
//! `count` for counts, `rate` for speeds.

use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::widgets::{Dataset, GraphType};

pub const ID: Color = Color::Cyan;
pub const OOD: Color = Color::LightRed;
pub const THRESHOLD: Color = Color::Yellow;
pub const ACCENT: Color = Color::LightBlue;
pub const GOOD: Color = Color::Green;
pub const BAD: Color = Color::Red;

pub fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

pub fn title() -> Style {
    Style::new().fg(ACCENT).add_modifier(Modifier::BOLD)
}

pub fn key() -> Style {
    Style::new().fg(Color::Black).bg(Color::Gray)
}

pub fn selected() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

pub fn best() -> Style {
    Style::new().fg(GOOD).add_modifier(Modifier::BOLD)
}

pub fn warn() -> Style {
    Style::new().fg(THRESHOLD)
}

pub fn error() -> Style {
    Style::new().fg(BAD).add_modifier(Modifier::BOLD)
}

/// A fraction as a percentage with two decimals, the paper's format.
pub fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}", 100.0 * v)
    } else {
        "-".into()
    }
}

/// A fraction as a percentage with `decimals` decimals and its sign:
/// `percent(0.8759, 1)` is "87.6%". Every share on screen (ID percentiles,
/// probabilities, progress) goes through here.
pub fn percent(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{:.decimals$}%", 100.0 * v)
    } else {
        "-".into()
    }
}

/// Images per second, one decimal: "65.7 img/s".
pub fn rate(per_sec: f64) -> String {
    if per_sec.is_finite() {
        format!("{per_sec:.1} img/s")
    } else {
        "-".into()
    }
}

/// An integer with thousands separators: 50,000.
pub fn count(n: usize) -> String {
    group_digits(&n.to_string())
}

/// Thousands separators in the integer digits of `s` (a sign and a
/// fraction are kept as they are).
fn group_digits(s: &str) -> String {
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", s),
    };
    let (int, frac) = match rest.find('.') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut out = String::with_capacity(s.len() + int.len() / 3);
    out.push_str(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str(frac);
    out
}

pub use crate::run::report::duration;

/// A score with as many decimals as the spread of the values it sits among
/// needs (ODIN's scores at T = 1000 differ in the fourth decimal).
pub fn num(v: f64, span: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let span = if span.is_finite() && span > 0.0 {
        span
    } else {
        v.abs().max(1e-12)
    };
    let decimals = (3 - span.log10().floor() as i32).clamp(0, 7) as usize;
    if v.abs() >= 1e9 || (v != 0.0 && v.abs() < 1e-6 && decimals >= 7) {
        format!("{v:.3e}")
    } else {
        // Large scores (GradNorm's) read like counts: 370,404.
        group_digits(&format!("{v:.decimals$}"))
    }
}

/// `s` cut to `width` characters, with an ellipsis at the end.
pub fn fit(s: &str, width: usize) -> String {
    cut(s, width, false)
}

/// `s` cut to `width` characters keeping its end (for paths).
pub fn fit_left(s: &str, width: usize) -> String {
    cut(s, width, true)
}

/// `s` cut to `width` characters with an ellipsis in place of what is cut:
/// the end is kept when `keep_end`, the start otherwise.
fn cut(s: &str, width: usize, keep_end: bool) -> String {
    let n = s.chars().count();
    if n <= width {
        s.to_string()
    } else if width == 0 {
        String::new()
    } else if keep_end {
        let mut out = String::from('…');
        out.extend(s.chars().skip(n - (width - 1)));
        out
    } else {
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

/// One series of a chart: braille points of `graph` kind in `color`.
pub fn series(graph: GraphType, color: Color, data: &[(f64, f64)]) -> Dataset<'_> {
    Dataset::default()
        .marker(Marker::Braille)
        .graph_type(graph)
        .style(Style::new().fg(color))
        .data(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(count(50000), "50,000");
        assert_eq!(count(999), "999");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(duration(62.4), "1:02");
        assert_eq!(duration(3725.0), "1:02:05");
        assert_eq!(pct(0.87594), "87.59");
        assert_eq!(num(0.0012345, 0.0005), "0.0012345");
        assert_eq!(num(12.345, 10.0), "12.35");
        assert_eq!(num(370404.2, 1e5), "370,404");
        assert_eq!(num(-1234.5, 10.0), "-1,234.50");
        assert_eq!(percent(0.87594, 1), "87.6%");
        assert_eq!(percent(0.5, 0), "50%");
        assert_eq!(rate(65.72), "65.7 img/s");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit_left("abcdef", 4), "…def");
    }
}
