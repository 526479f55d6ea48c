//! Configuration: embedded defaults < config file < environment < command line.

pub mod keymap;
