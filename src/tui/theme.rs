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

pub use gradnorm_core::run::report::duration;

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

/// `path` as the screens show it: without `.` and `..` (`clone/../shared`
/// is `shared`), cut in the middle to `width` characters so that its start
/// and its file name stay visible.
pub fn fit_path(path: &std::path::Path, width: usize) -> String {
    let s = lexical(path).display().to_string();
    let n = s.chars().count();
    if n <= width || width < 2 {
        return cut(&s, width, false);
    }
    // The file name whole when it fits with a little of the start, else
    // the end.
    let name = path
        .file_name()
        .map_or(0, |f| f.to_string_lossy().chars().count() + 1);
    let tail = if name + 8 <= width {
        name.max((width - 1) / 2)
    } else {
        width - 1
    };
    let head = width - 1 - tail;
    let mut out: String = s.chars().take(head).collect();
    out.push('…');
    out.extend(s.chars().skip(n - tail));
    out
}

/// `path` with `.` dropped and `..` taking back the folder before it,
/// without asking the disk (a display form; links are not resolved).
pub fn lexical(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let can_pop = matches!(out.components().next_back(), Some(Component::Normal(_)));
                if can_pop {
                    out.pop();
                } else if !matches!(out.components().next_back(), Some(Component::RootDir)) {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
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

    #[test]
    fn paths_are_shown_without_dots_and_cut_in_the_middle() {
        use std::path::Path;
        let p = Path::new("/tmp/a-long-folder/clone/../shared/models/lite0/lite0.safetensors");
        assert_eq!(
            lexical(p),
            Path::new("/tmp/a-long-folder/shared/models/lite0/lite0.safetensors")
        );
        assert_eq!(lexical(Path::new("./a/../../b")), Path::new("../b"));
        assert_eq!(lexical(Path::new("/../a")), Path::new("/a"));
        assert_eq!(lexical(Path::new("a/..")), Path::new("."));
        let short = fit_path(p, 40);
        assert_eq!(short.chars().count(), 40);
        assert!(short.starts_with("/tmp/a-lo"), "{short}");
        assert!(short.ends_with("/lite0.safetensors"), "{short}");
        assert!(!short.contains(".."), "{short}");
        assert_eq!(fit_path(Path::new("./x/y.txt"), 40), "x/y.txt");
        // Too narrow for the name: its end.
        assert_eq!(fit_path(p, 10), "…fetensors");
    }
}
