//! The words every part of the TUI shares: the screens, the overlays, how
//! loud a message is, and the run's state as the header shows it. Below the
//! keymap and the screens, so both can name them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Setup,
    Dashboard,
    Anatomy,
    Browser,
    Inspect,
    Runs,
}

impl Screen {
    pub const ALL: [Screen; 6] = [
        Screen::Setup,
        Screen::Dashboard,
        Screen::Anatomy,
        Screen::Browser,
        Screen::Inspect,
        Screen::Runs,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Setup => "Setup",
            Screen::Dashboard => "Dashboard",
            Screen::Anatomy => "GradNorm anatomy",
            Screen::Browser => "Browser",
            Screen::Inspect => "Inspect",
            Screen::Runs => "Runs",
        }
    }

    /// The name on the tab bar.
    pub fn tab(self) -> &'static str {
        match self {
            Screen::Anatomy => "Anatomy",
            s => s.title(),
        }
    }

    pub(crate) fn index(self) -> usize {
        Screen::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    /// The smallest terminal (columns, rows) the screen can be drawn in.
    pub fn min_size(self) -> (u16, u16) {
        match self {
            Screen::Setup => (60, 14),
            Screen::Dashboard | Screen::Anatomy => (70, 20),
            Screen::Browser | Screen::Inspect | Screen::Runs => (70, 16),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    Help,
    ConfirmQuit,
    ConfirmCancel,
    /// Start a new run over the results shown.
    ConfirmReplace,
    /// Keep an image size far from the model's own (the form's question).
    ConfirmSize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// The run's state as the header shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Idle,
    Running,
    Finished,
    Cancelled,
    Failed(String),
}
