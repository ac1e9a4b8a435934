//! What a click can reach: each frame records the rectangles it drew that
//! answer a click (rows, tabs' neighbours, buttons, list items), topmost
//! last, so the app finds what is under the pointer without knowing the
//! layout. A popup or question clears what lies beneath it.

use super::keymap::Action;
use ratatui::layout::{Position, Rect};
use std::cell::RefCell;

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
}

/// The click targets of the last frame.
#[derive(Debug, Default)]
pub struct Targets(RefCell<Vec<(Rect, Target)>>);

impl Targets {
    pub fn clear(&self) {
        self.0.borrow_mut().clear();
    }

    pub fn push(&self, area: Rect, target: Target) {
        if area.width > 0 && area.height > 0 {
            self.0.borrow_mut().push((area, target));
        }
    }

    /// The topmost target under (x, y).
    pub fn at(&self, x: u16, y: u16) -> Option<Target> {
        let p = Position::new(x, y);
        self.0
            .borrow()
            .iter()
            .rev()
            .find(|(r, _)| r.contains(p))
            .map(|(_, t)| *t)
    }

    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
