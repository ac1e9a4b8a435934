//! Colours, styles and number formatting shared by every screen.

use ratatui::style::{Color, Modifier, Style};

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

/// An integer with thousands separators: 50,000.
pub fn count(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
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
    if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-6 && decimals >= 7) {
        format!("{v:.3e}")
    } else {
        format!("{v:.decimals$}")
    }
}

/// `s` cut to `width` characters, with an ellipsis at the end.
pub fn fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        s.to_string()
    } else if width == 0 {
        String::new()
    } else {
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

/// `s` cut to `width` characters keeping its end (for paths).
pub fn fit_left(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        s.to_string()
    } else if width == 0 {
        String::new()
    } else {
        let mut out = String::from('…');
        out.extend(s.chars().skip(n - (width - 1)));
        out
    }
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
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit_left("abcdef", 4), "…def");
    }
}
