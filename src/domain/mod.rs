//! The pure domain: approvals, decisions, policy and risk tiers, status transitions, and the
//! sanitiser for untrusted text. Nothing here performs IO or knows about tokio, ratatui or AWS.

pub mod approval;
pub mod bedrock;
pub mod canonical;
pub mod decision;
pub mod json_text;
pub mod metrics;
pub mod policy;
pub mod resume;
pub mod sanitize;
pub mod status;
pub mod step_kind;
pub mod trace;
pub mod validate;
