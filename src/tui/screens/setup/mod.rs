//! The setup screen: a form of model, datasets, methods and run settings
//! that becomes a `RunConfig`. `state` holds the form and what its keys do,
//! `view` draws it, `params` describes each method's hyperparameters, `choose` the popup
//! lists and path completion.

mod choose;
mod keys;
pub mod params;
pub mod state;
pub mod view;

pub use params::Param;
pub use state::{DatasetEntry, MethodEntry, Row, SetupAction, SetupState, SizeQuestion};
use view::render;

use crate::tui::component::{Component, Ctx, Input, Outcome};
use crate::tui::keymap::Mode;
use crate::tui::mouse::Hits;
use crate::tui::screen::Level;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

impl Component for SetupState {
    /// The file browser, a popup list or a value being typed take the keys
    /// before the form.
    fn mode(&self) -> Mode {
        match (&self.files, &self.picker, &self.edit) {
            (Some(_), _, _) => Mode::Files,
            (None, Some(_), _) => Mode::Picker,
            (None, None, Some(_)) => Mode::Edit,
            (None, None, None) => Mode::Setup,
        }
    }

    fn keys(&mut self, _: &Ctx, input: Input) -> Outcome {
        let action = match input {
            Input::Char(c) => {
                self.type_char(c);
                return Outcome::None;
            }
            Input::Action(a) => a,
        };
        match self.act(action) {
            SetupAction::None => Outcome::None,
            SetupAction::Start => Outcome::Start,
            SetupAction::Save => Outcome::Save,
            SetupAction::Count(path, root) => Outcome::Count(path, root),
            SetupAction::Message(m) => Outcome::Say(m, Level::Warn),
            SetupAction::ConfirmSize => Outcome::ConfirmSize,
            SetupAction::MakeFit(job) => Outcome::MakeFit(job),
        }
    }

    fn draw(&self, ctx: &Ctx, area: Rect, buf: &mut Buffer, hits: &mut Hits) {
        render(self, ctx.config_path, &mut hits.targets, area, buf)
    }
}
