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
pub use state::{DatasetEntry, MethodEntry, Row, SetupAction, SetupState};
pub use view::render;
