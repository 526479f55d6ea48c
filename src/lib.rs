//! agentdeck: a terminal console for teams that run Amazon Bedrock Agents.
//!
//! Layers (see README): `domain` is pure and depends on nothing; `app` is the pure state machine;
//! `ui` renders state; `config` merges defaults, files, env and flags; `store` holds the ports and
//! their adapters; `runtime` is the only impure glue of the console; `cli` runs the headless commands.

pub mod app;
pub mod bedrock;
pub mod cli;
pub mod cloudwatch;
pub mod config;
pub mod domain;
pub mod runtime;
pub mod sim;
pub mod store;
pub mod ui;

/// mimalloc for every binary that links agentdeck (the console, the CLI, tests, benches): the
/// ingest path allocates per event (SDK shapes, JSON trees, SQLite buffers) and glibc's malloc
/// was a quarter of its instructions (`cargo bench --bench ingest` under callgrind).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
