//! The integration suite: one test binary (one link of the whole stack instead of one per file,
//! which kept CI's disk and build time in bounds). Each module was a test file of its own.

mod app_update;
mod architecture;
mod boto3_cloudwatch;
mod boto3_sim;
mod cli;
mod cloudwatch_cli;
mod cloudwatch_sdk;
mod domain;
mod e2e_tmux;
mod import;
mod metrics;
mod metrics_contract;
mod metrics_store;
mod resume;
mod runner_loopback;
mod runner_sim;
mod sanitize;
mod sim_frames;
mod sim_golden;
mod sim_scenarios;
mod sim_sdk;
mod store_contract;
mod store_runner;
mod store_sqlite;
mod theme_keymap;
mod trace_index;
mod trace_mapping;
mod traces_cli;
mod ui_snapshots;

mod bin_support;
mod common;
mod loopback;
mod moto;
mod sim_support;
