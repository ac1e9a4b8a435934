//! The six screens, each a `Component` (keys in, draw, footer hints): `setup` (the form),
//! `dashboard` (metrics, histogram, progress), `anatomy` (GradNorm's two
//! factors), `browser` (images, sorted and filtered, with a preview),
//! `inspect` (absorbing classes, methods that disagree), `runs` (the run
//! store: reopen, compare, export).

pub mod anatomy;
pub mod browser;
pub mod dashboard;
pub mod inspect;
pub mod runs;
pub mod setup;
