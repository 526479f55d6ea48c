//! The pure state machine of the console: `update(&mut AppState, Msg) -> Vec<Effect>`.
//! No IO, no clock, no channels: time arrives in messages, IO leaves as effects.

pub mod action;
pub mod keymap;
pub mod msg;
pub mod state;
pub mod trace_index;
pub mod traces;
pub mod update;

pub use msg::{Edit, Effect, KeyInput, Msg};
pub use state::AppState;
pub use update::update;
