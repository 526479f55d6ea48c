//! Pure rendering of `AppState` with a `Theme`: no IO, no clock.

pub mod text;
pub mod theme;
