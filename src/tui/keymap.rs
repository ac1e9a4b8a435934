//! The one keymap: for each mode, which key does what. Dispatch, the
//! footer's hints and the help overlay all read this table, so a key is
//! described once.

use super::screen::Screen;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Where a key is read. `Global` keys apply on every screen unless the
/// screen's mode binds the same key; `Edit`, `Help` and `Confirm` are modal
/// (no global keys but Ctrl-C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Global,
    Setup,
    /// Typing a value in the setup form.
    Edit,
    /// A popup list of the setup form, filtered by typing.
    Picker,
    /// The setup form's file browser.
    Files,
    Dashboard,
    Anatomy,
    Browser,
    Inspect,
    Runs,
    Help,
    Confirm,
}

impl Mode {
    pub fn of_screen(screen: Screen) -> Mode {
        match screen {
            Screen::Setup => Mode::Setup,
            Screen::Dashboard => Mode::Dashboard,
            Screen::Anatomy => Mode::Anatomy,
            Screen::Browser => Mode::Browser,
            Screen::Inspect => Mode::Inspect,
            Screen::Runs => Mode::Runs,
        }
    }

    /// The section title in the help.
    pub fn title(self) -> &'static str {
        match self {
            Mode::Global => "Everywhere",
            Mode::Setup => "Setup",
            Mode::Edit => "Typing a value, a search or a number",
            Mode::Picker => "Choosing from a list",
            Mode::Files => "Setup, browsing files",
            Mode::Dashboard => "Dashboard",
            Mode::Anatomy => "Anatomy",
            Mode::Browser => "Browser",
            Mode::Inspect => "Inspect",
            Mode::Runs => "Runs",
            Mode::Help => "Help",
            Mode::Confirm => "Questions",
        }
    }

    fn modal(self) -> bool {
        matches!(
            self,
            Mode::Edit | Mode::Picker | Mode::Files | Mode::Help | Mode::Confirm
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    ForceQuit,
    Help,
    Close,
    Yes,
    No,
    CancelRun,
    Go(Screen),
    NextScreen,
    PrevScreen,
    /// Setup: rename the dataset under the cursor.
    Rename,
    /// Inspect: the next method to compare with.
    NextSecond,
    NextMethod,
    PrevMethod,
    NextOod,
    PrevOod,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Left,
    Right,
    /// Setup: the next / previous field (Tab, Shift-Tab).
    NextField,
    PrevField,
    Toggle,
    Activate,
    Start,
    Save,
    EditConfirm,
    EditCancel,
    EditClear,
    EditBackspace,
    /// Complete the path being typed.
    Complete,
    /// Dashboard: the OOD set's false positives in the browser.
    Misdetections,
    Sort,
    Reverse,
    CycleDataset,
    ToggleMisdetections,
    ClearFilters,
    /// Dashboard: move the threshold by about 1% of the images.
    ThresholdUp,
    ThresholdDown,
    /// Dashboard: back to the 95%-TPR threshold.
    ThresholdReset,
    /// Dashboard: the browser at the images just around the threshold.
    AroundThreshold,
    /// Dashboard: the histogram on a log axis, or back.
    LogScale,
    /// Dashboard: the metrics in OpenOOD's convention, or the paper's.
    ToggleConvention,
    /// Browser: search the file names (`/`).
    Search,
    /// Browser: go to an image by its number in the list.
    Jump,
    /// Browser: keep one top-1 class (a popup list).
    ClassFilter,
    /// Setup: a file browser for the path under the cursor.
    Browse,
    /// Runs: write the selected run's report and scores into a folder.
    Export,
    /// Runs: read the store again.
    Refresh,
    /// Runs: delete the selected run from the store (asked twice); Setup:
    /// remove the OOD set under the cursor from the form.
    Remove,
}

/// A key as bound: a code and whether Ctrl is held. Shift is part of the
/// character (`G`, `M`), so it is not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

const fn k(code: KeyCode) -> Key {
    Key { code, ctrl: false }
}
const fn c(ch: char) -> Key {
    k(KeyCode::Char(ch))
}
const fn ctrl(ch: char) -> Key {
    Key {
        code: KeyCode::Char(ch),
        ctrl: true,
    }
}

/// When a binding's hint is shown in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// In the footer.
    Always,
    /// In the footer while a run is going.
    Running,
    /// Only in the help.
    Help,
}

pub struct Binding {
    pub mode: Mode,
    pub keys: &'static [Key],
    pub action: Action,
    /// The keys as the help and the footer write them.
    pub label: &'static str,
    /// The footer's word(s).
    pub short: &'static str,
    /// The help's sentence.
    pub long: &'static str,
    pub shown: Shown,
}

const fn b(
    mode: Mode,
    keys: &'static [Key],
    action: Action,
    label: &'static str,
    short: &'static str,
    long: &'static str,
    shown: Shown,
) -> Binding {
    Binding {
        mode,
        keys,
        action,
        label,
        short,
        long,
        shown,
    }
}

use Action as A;
use KeyCode as K;
use Mode as M;
use Shown::{Always, Help, Running};

const UP: &[Key] = &[k(K::Up), c('k')];
const DOWN: &[Key] = &[k(K::Down), c('j')];
const LEFT: &[Key] = &[k(K::Left), c('h')];
const RIGHT: &[Key] = &[k(K::Right), c('l')];

/// Every key. Within a mode the first match wins; the footer lists a mode's
/// hints in this order, then the global ones.
#[rustfmt::skip]
pub static KEYMAP: &[Binding] = &[
    // Setup
    b(M::Setup, UP, A::Up, "↑↓", "move", "move between fields (also j k)", Always),
    b(M::Setup, DOWN, A::Down, "↓", "", "", Help),
    b(M::Setup, &[k(K::Tab)], A::NextField, "Tab S-Tab", "", "next / previous field", Help),
    b(M::Setup, &[k(K::BackTab)], A::PrevField, "S-Tab", "", "", Help),
    b(M::Setup, LEFT, A::Left, "←→", "choose", "choose (checkpoint, model, ID set, device, dtype, batch)", Always),
    b(M::Setup, RIGHT, A::Right, "→", "", "", Help),
    b(M::Setup, &[k(K::PageUp)], A::PageUp, "PgUp PgDn", "", "ten fields up / down", Help),
    b(M::Setup, &[k(K::PageDown)], A::PageDown, "PgDn", "", "", Help),
    b(M::Setup, &[k(K::Home), c('g')], A::Top, "g G", "", "first / last field", Help),
    b(M::Setup, &[k(K::End), c('G')], A::Bottom, "G", "", "", Help),
    b(M::Setup, &[c(' ')], A::Toggle, "Space", "toggle", "toggle an OOD set or a method", Always),
    b(M::Setup, &[k(K::Enter)], A::Activate, "Enter", "edit", "edit a value, type a path, or open the list of choices", Always),
    b(M::Setup, &[c('s')], A::Start, "s", "start", "start the evaluation (asks before replacing results)", Always),
    b(M::Setup, &[c('r')], A::Rename, "r", "", "rename the dataset under the cursor", Help),
    b(M::Setup, &[c('d'), k(K::Delete)], A::Remove, "d", "", "remove the OOD set under the cursor from the form (its files stay)", Help),
    b(M::Setup, &[c('f')], A::Browse, "f", "files", "browse the disk for the path under the cursor", Always),
    b(M::Setup, &[c('w')], A::Save, "w", "write config", "write the config file", Always),
    // Editing a value
    b(M::Edit, &[k(K::Enter)], A::EditConfirm, "Enter", "confirm", "keep the value", Always),
    b(M::Edit, &[k(K::Esc)], A::EditCancel, "Esc", "cancel", "leave the value as it was", Always),
    b(M::Edit, &[ctrl('u')], A::EditClear, "Ctrl-U", "clear", "clear the text", Always),
    b(M::Edit, &[k(K::Tab)], A::Complete, "Tab", "complete", "complete the path from the disk (setup)", Always),
    b(M::Edit, &[k(K::Backspace)], A::EditBackspace, "Backspace", "", "delete a character", Help),
    // A popup list
    b(M::Picker, &[k(K::Up)], A::Up, "↑↓", "move", "move in the list (type to filter it)", Always),
    b(M::Picker, &[k(K::Down)], A::Down, "↓", "", "", Help),
    b(M::Picker, &[k(K::PageUp)], A::PageUp, "PgUp PgDn", "", "ten up / down", Help),
    b(M::Picker, &[k(K::PageDown)], A::PageDown, "PgDn", "", "", Help),
    b(M::Picker, &[k(K::Enter)], A::EditConfirm, "Enter", "pick", "take the highlighted item (or the path typed)", Always),
    b(M::Picker, &[k(K::Esc)], A::EditCancel, "Esc", "close", "close the list, changing nothing", Always),
    b(M::Picker, &[k(K::Tab)], A::Complete, "Tab", "complete", "complete a typed path (setup)", Help),
    b(M::Picker, &[ctrl('u')], A::EditClear, "Ctrl-U", "", "clear the filter", Help),
    b(M::Picker, &[k(K::Backspace)], A::EditBackspace, "Backspace", "", "", Help),
    // The file browser
    b(M::Files, &[k(K::Up)], A::Up, "↑↓", "move", "move (type to filter)", Always),
    b(M::Files, &[k(K::Down)], A::Down, "↓", "", "", Help),
    b(M::Files, &[k(K::PageUp)], A::PageUp, "PgUp PgDn", "", "ten up / down", Help),
    b(M::Files, &[k(K::PageDown)], A::PageDown, "PgDn", "", "", Help),
    b(M::Files, &[k(K::Enter)], A::EditConfirm, "Enter", "open/pick", "open a folder, pick a file (or ./ the folder)", Always),
    b(M::Files, &[k(K::Backspace), k(K::Left)], A::EditBackspace, "Backspace", "up", "a filter character, or the parent folder (also ←)", Always),
    b(M::Files, &[k(K::Right)], A::Right, "→", "", "into the folder selected", Help),
    b(M::Files, &[ctrl('u')], A::EditClear, "Ctrl-U", "", "clear the filter", Help),
    b(M::Files, &[k(K::Esc)], A::EditCancel, "Esc", "close", "close, changing nothing", Always),
    // Dashboard
    b(M::Dashboard, UP, A::PrevMethod, "↑↓", "method", "method: re-plots at once", Always),
    b(M::Dashboard, DOWN, A::NextMethod, "↓", "", "", Help),
    b(M::Dashboard, LEFT, A::PrevOod, "←→", "OOD set", "OOD set", Always),
    b(M::Dashboard, RIGHT, A::NextOod, "→", "", "", Help),
    b(M::Dashboard, &[k(K::Enter)], A::Misdetections, "Enter", "misdetections", "the OOD set's false positives, most confident first", Always),
    b(M::Dashboard, &[c(']'), c('+')], A::ThresholdUp, "[ ]", "threshold", "threshold down / up by ~1% of the images (or drag it)", Always),
    b(M::Dashboard, &[c('['), c('-')], A::ThresholdDown, "[", "", "", Help),
    b(M::Dashboard, &[c('t')], A::ThresholdReset, "t", "", "back to the 95%-TPR threshold", Help),
    b(M::Dashboard, &[c('v')], A::AroundThreshold, "v", "view", "browse the images just around the threshold", Always),
    b(M::Dashboard, &[c('L')], A::LogScale, "L", "", "log axis for the histogram (for GradNorm's wide range)", Help),
    b(M::Dashboard, &[c('p')], A::ToggleConvention, "p", "", "metrics in OpenOOD's convention (OOD positive) or the paper's", Help),
    // Anatomy
    b(M::Anatomy, &[k(K::Left), c('h'), k(K::Up), c('k')], A::PrevOod, "←→", "OOD set", "OOD set", Always),
    b(M::Anatomy, &[k(K::Right), c('l'), k(K::Down), c('j')], A::NextOod, "→", "", "", Help),
    // Browser
    b(M::Browser, UP, A::Up, "↑↓", "move", "move (the preview follows)", Always),
    b(M::Browser, DOWN, A::Down, "↓", "", "", Help),
    b(M::Browser, &[k(K::PageUp)], A::PageUp, "PgUp PgDn", "", "a page up / down (also Space)", Help),
    b(M::Browser, &[k(K::PageDown), c(' ')], A::PageDown, "PgDn", "", "", Help),
    b(M::Browser, &[k(K::Home), c('g')], A::Top, "g G", "", "first / last image", Help),
    b(M::Browser, &[k(K::End), c('G')], A::Bottom, "G", "", "", Help),
    b(M::Browser, &[c('s')], A::Sort, "s", "sort", "sort by the method's score, or evaluation order", Always),
    b(M::Browser, &[c('r')], A::Reverse, "r", "", "reverse the sort", Help),
    b(M::Browser, &[c('d')], A::CycleDataset, "d", "dataset", "filter to one dataset (cycles)", Always),
    b(M::Browser, &[c('x')], A::ToggleMisdetections, "x", "misdetections", "misdetections at the dashboard's threshold (95% TPR until moved)", Always),
    b(M::Browser, &[k(K::Enter)], A::Activate, "Enter", "image", "the image in full: a large preview, every score and call, top-5 (Esc back)", Always),
    b(M::Browser, &[c('/')], A::Search, "/", "search", "search the file names (as typed; Enter keeps, Esc undoes)", Always),
    b(M::Browser, &[c(':'), c('#')], A::Jump, ":", "", "go to an image by its number in the list", Help),
    b(M::Browser, &[c('p')], A::ClassFilter, "p", "class", "only images of one top-1 class (a list; type to filter)", Always),
    b(M::Browser, &[k(K::Esc)], A::ClearFilters, "Esc", "", "clear the filters (set, misdetections, search, class)", Help),
    // Inspect
    b(M::Inspect, &[c('n')], A::NextSecond, "n", "second method", "the method compared with the one in view (m)", Always),
    b(M::Inspect, UP, A::Up, "↑↓", "move", "move in the images the two methods call differently", Always),
    b(M::Inspect, DOWN, A::Down, "↓", "", "", Help),
    b(M::Inspect, &[k(K::PageUp)], A::PageUp, "PgUp PgDn", "", "ten up / down", Help),
    b(M::Inspect, &[k(K::PageDown)], A::PageDown, "PgDn", "", "", Help),
    b(M::Inspect, &[k(K::Home), c('g')], A::Top, "g G", "", "first / last image", Help),
    b(M::Inspect, &[k(K::End), c('G')], A::Bottom, "G", "", "", Help),
    b(M::Inspect, &[k(K::Enter)], A::Activate, "Enter", "open", "the image in the browser", Always),
    // Runs
    b(M::Runs, UP, A::Up, "↑↓", "move", "move in the list of runs", Always),
    b(M::Runs, DOWN, A::Down, "↓", "", "", Help),
    b(M::Runs, &[k(K::Home), c('g')], A::Top, "g G", "", "first / last run", Help),
    b(M::Runs, &[k(K::End), c('G')], A::Bottom, "G", "", "", Help),
    b(M::Runs, &[k(K::Enter)], A::Activate, "Enter", "open", "reopen the run in the dashboard and the browser", Always),
    b(M::Runs, &[c(' ')], A::Toggle, "Space", "compare", "mark a run; with two marked, their metric deltas (b - a)", Always),
    b(M::Runs, &[c('e')], A::Export, "e", "export", "write the run's report (md, csv, json), scores.csv and plots into a folder", Always),
    b(M::Runs, &[c('r')], A::Refresh, "r", "", "read the run store again", Help),
    b(M::Runs, &[c('d'), k(K::Delete)], A::Remove, "d", "delete", "delete the run from the store (d again to confirm)", Help),
    // Overlays
    b(M::Help, &[k(K::Esc), c('?'), c('q'), k(K::Enter), k(K::F(1))], A::Close, "Esc ?", "close", "close the help", Always),
    b(M::Help, UP, A::Up, "↑↓", "scroll", "scroll", Always),
    b(M::Help, DOWN, A::Down, "↓", "", "", Help),
    b(M::Help, &[k(K::PageUp)], A::PageUp, "PgUp", "", "", Help),
    b(M::Help, &[k(K::PageDown), c(' ')], A::PageDown, "PgDn", "", "", Help),
    b(M::Confirm, &[c('y'), c('Y'), k(K::Enter)], A::Yes, "y", "yes", "yes", Always),
    b(M::Confirm, &[c('n'), c('N'), k(K::Esc)], A::No, "n", "no", "no (any other key too)", Always),
    // Everywhere
    b(M::Global, &[c('m')], A::NextMethod, "m M", "method", "next / previous method", Help),
    b(M::Global, &[c('M')], A::PrevMethod, "M", "", "", Help),
    b(M::Global, &[c('o')], A::NextOod, "o O", "", "next / previous OOD set", Help),
    b(M::Global, &[c('O')], A::PrevOod, "O", "", "", Help),
    b(M::Global, &[c('c')], A::CancelRun, "c", "cancel run", "cancel the run (what was computed is kept)", Running),
    b(M::Global, &[c('1')], A::Go(Screen::Setup), "1-6", "screens", "setup, dashboard, anatomy, browser, inspect, runs", Always),
    b(M::Global, &[c('2')], A::Go(Screen::Dashboard), "2", "", "", Help),
    b(M::Global, &[c('3')], A::Go(Screen::Anatomy), "3", "", "", Help),
    b(M::Global, &[c('4')], A::Go(Screen::Browser), "4", "", "", Help),
    b(M::Global, &[c('5')], A::Go(Screen::Inspect), "5", "", "", Help),
    b(M::Global, &[c('6')], A::Go(Screen::Runs), "6", "", "", Help),
    b(M::Global, &[k(K::Tab)], A::NextScreen, "Tab S-Tab", "", "next / previous screen (outside the form)", Help),
    b(M::Global, &[k(K::BackTab)], A::PrevScreen, "S-Tab", "", "", Help),
    b(M::Global, &[c('?'), k(K::F(1))], A::Help, "?", "help", "this help (per screen, scrollable)", Always),
    b(M::Global, &[c('q')], A::Quit, "q", "quit", "quit (asks while a run is going)", Always),
    b(M::Global, &[ctrl('c'), ctrl('q')], A::ForceQuit, "Ctrl-C", "", "quit at once, cancelling the run", Help),
];

/// How far a list moves for `action`: arrows one, pages ten.
pub fn list_step(action: Action) -> Option<isize> {
    match action {
        Action::Up => Some(-1),
        Action::Down => Some(1),
        Action::PageUp => Some(-10),
        Action::PageDown => Some(10),
        _ => None,
    }
}

fn matches(key: &Key, ev: &KeyEvent) -> bool {
    let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
    key.code == ev.code && key.ctrl == ctrl
}

/// The action of `ev` in `mode`: the mode's binding, else a global one
/// (not in modal modes, where only Ctrl-C is global).
pub fn lookup(mode: Mode, ev: &KeyEvent) -> Option<Action> {
    let find = |m: Mode| {
        KEYMAP
            .iter()
            .filter(|b| b.mode == m)
            .find(|b| b.keys.iter().any(|k| matches(k, ev)))
            .map(|b| b.action)
    };
    if let Some(a) = find(mode) {
        return Some(a);
    }
    let global = find(Mode::Global)?;
    if mode.modal() && global != Action::ForceQuit {
        return None;
    }
    Some(global)
}

/// The footer's (keys, what, action) hints for `mode`: the mode's own,
/// then the global ones (none in modal modes).
pub fn hints(mode: Mode, running: bool) -> Vec<(&'static str, &'static str, Action)> {
    let shown = |b: &&Binding| match b.shown {
        Always => true,
        Running => running,
        Help => false,
    };
    let own = KEYMAP.iter().filter(|b| b.mode == mode);
    let global = KEYMAP
        .iter()
        .filter(|b| b.mode == Mode::Global && !mode.modal());
    own.chain(global)
        .filter(shown)
        .map(|b| (b.label, b.short, b.action))
        .collect()
}

/// The help's (keys, sentence) pairs for `mode`: bindings with a sentence.
pub fn help(mode: Mode) -> Vec<(&'static str, &'static str)> {
    KEYMAP
        .iter()
        .filter(|b| b.mode == mode && !b.long.is_empty())
        .map(|b| (b.label, b.long))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn modes_override_globals_and_modal_modes_block_them() {
        // Tab moves in the form, switches screens elsewhere.
        assert_eq!(lookup(Mode::Setup, &key(K::Tab)), Some(A::NextField));
        assert_eq!(lookup(Mode::Dashboard, &key(K::Tab)), Some(A::NextScreen));
        // 'q' types a q while editing, quits elsewhere; Ctrl-C always quits.
        assert_eq!(lookup(Mode::Edit, &key(K::Char('q'))), None);
        assert_eq!(lookup(Mode::Browser, &key(K::Char('q'))), Some(A::Quit));
        let cc = KeyEvent::new(K::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(lookup(Mode::Edit, &cc), Some(A::ForceQuit));
        // 's' starts in setup, sorts in the browser.
        assert_eq!(lookup(Mode::Setup, &key(K::Char('s'))), Some(A::Start));
        assert_eq!(lookup(Mode::Browser, &key(K::Char('s'))), Some(A::Sort));
    }

    #[test]
    fn every_hint_and_help_line_has_a_binding_that_dispatches() {
        for b in KEYMAP {
            for key in b.keys {
                let ev = KeyEvent::new(
                    key.code,
                    if key.ctrl {
                        KeyModifiers::CONTROL
                    } else {
                        KeyModifiers::NONE
                    },
                );
                // The first binding of a key in a mode wins: no binding is
                // shadowed by an earlier one of the same mode.
                assert_eq!(
                    lookup(b.mode, &ev),
                    Some(b.action),
                    "{:?} {:?}",
                    b.mode,
                    key
                );
            }
        }
    }
}
