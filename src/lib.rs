//! The `gradnorm-tui` binary's terminal UI, a library so that its tests can
//! drive it (screens through ratatui's TestBackend). It renders the engine's
//! events and knows nothing of candle; the command line (`cli`, `commands`)
//! is the binary's own.

pub mod tui;
