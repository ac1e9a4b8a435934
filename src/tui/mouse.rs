//! What a click can reach: each frame returns the rectangles it drew that
//! answer a click (rows, tabs' neighbours, buttons, list items), topmost
//! last, so the app finds what is under the pointer without knowing the
//! layout. A popup or question clears what lies beneath it.

use super::keymap::Action;
use super::screen::Screen;
use ratatui::layout::{Position, Rect};

/// What a click on a recorded rectangle does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A key hint or a button: the action its key has.
    Act(Action),
    /// A row of the metrics table: that method.
    Method(usize),
    /// A column group of the metrics table: that OOD set (its position).
    Ood(usize),
    /// A row of the setup form (its index in `SetupState::rows`).
    FormRow(usize),
    /// An item of the popup list open (its index among the matches).
    ListItem(usize),
    /// A row of the browser's list (its index in the rows).
    ImageRow(usize),
    /// A row of Inspect's disagreements (its index in the list).
    Disagreement(usize),
}

/// The click targets of a frame.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Targets(Vec<(Rect, Target)>);

impl Targets {
    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn push(&mut self, area: Rect, target: Target) {
        if area.width > 0 && area.height > 0 {
            self.0.push((area, target));
        }
    }

    /// The topmost target under (x, y).
    pub fn at(&self, x: u16, y: u16) -> Option<Target> {
        let p = Position::new(x, y);
        self.0
            .iter()
            .rev()
            .find(|(r, _)| r.contains(p))
            .map(|(_, t)| *t)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where the dashboard drew its plot and the score range across it.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Plot {
    pub area: Rect,
    pub lo: f64,
    pub hi: f64,
    /// The axis is the log of the scores.
    pub log: bool,
}

impl Plot {
    /// The score under `column`, None off a plot with no range.
    pub fn score_at(&self, column: u16) -> Option<f64> {
        if self.area.width < 2 || self.hi <= self.lo {
            return None;
        }
        let f = (column.saturating_sub(self.area.x)) as f64 / (self.area.width - 1) as f64;
        let v = self.lo + f.clamp(0.0, 1.0) * (self.hi - self.lo);
        Some(if self.log { v.exp() } else { v })
    }
}

/// Where a frame put what the mouse and the next keys need: drawing returns
/// it and the loop keeps it, so drawing writes nothing into the state.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Hits {
    pub targets: Targets,
    /// Where the header drew each tab: (first column, last column); none
    /// when it drew no tabs.
    pub tabs: Vec<(u16, u16)>,
    pub plot: Plot,
    /// A scrolled list drawn: (rows in view, first row shown).
    pub list: Option<(usize, usize)>,
    /// Where the image preview was drawn.
    pub preview: Rect,
}

impl Hits {
    /// The tab under column `x` of the header.
    pub fn tab_at(&self, x: u16) -> Option<Screen> {
        self.tabs
            .iter()
            .position(|&(a, b)| a <= x && x <= b)
            .map(|i| Screen::ALL[i])
    }
}
