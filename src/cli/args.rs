//! clap definitions for every command and flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  2  bad input or usage (the message names the field and the rule)
  3  conflict: already decided, expired, not allowed by policy, or `audit verify` found tampering
  4  store unavailable";

/// agentdeck: approve agents' actions, inspect their traces, watch the fleet's health.
///
/// With no command, opens the console on the store.
#[derive(Debug, Parser)]
#[command(name = "agentdeck", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Config file (default: $XDG_CONFIG_HOME/agentdeck/config.toml when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Store to use: sqlite:PATH (default: $XDG_DATA_HOME/agentdeck/agentdeck.db) or
    /// dynamodb:TABLE (team mode; region, profile and credentials from the standard AWS chain).
    #[arg(long, global = true, value_name = "SPEC")]
    pub store: Option<String>,
    /// DynamoDB endpoint for a local server, e.g. http://127.0.0.1:5000 (dynamodb: stores only;
    /// `init` and `demo` also take it as `--endpoint-url`; for `invoke` and `resume`
    /// `--endpoint-url` is Bedrock's).
    #[arg(
        long = "store-endpoint",
        global = true,
        value_name = "URL",
        env = "AGENTDECK_STORE_ENDPOINT"
    )]
    pub store_endpoint: Option<String>,
    /// CloudWatch endpoint, e.g. the simulator's http://127.0.0.1:8777 (default: the standard
    /// AWS chain's region endpoint).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "AGENTDECK_CLOUDWATCH_ENDPOINT"
    )]
    pub cloudwatch_endpoint: Option<String>,
    /// Console and demo: publish the metrics to CloudWatch every SECONDS (as `agentdeck
    /// metrics publish --window 1h` does; off by default). Failures show in the status line.
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        env = "AGENTDECK_CLOUDWATCH_PUBLISH_EVERY",
        value_parser = clap::value_parser!(u64).range(10..=86_400)
    )]
    pub publish_every: Option<u64>,
    /// Namespace of the console's timed publish (not AWS/...).
    #[arg(
        long = "publish-namespace",
        global = true,
        value_name = "NS",
        default_value = "agentdeck",
        env = "AGENTDECK_CLOUDWATCH_NAMESPACE"
    )]
    pub publish_namespace: String,
    /// Theme: dark, light, high-contrast, or a path to a theme file. NO_COLOR is honoured.
    #[arg(long, global = true, value_name = "NAME|PATH")]
    pub theme: Option<String>,
    /// Reviewer identity recorded with decisions (default: $USER@host, or `reviewer` in the config).
    #[arg(long, global = true, value_name = "NAME")]
    pub reviewer: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enqueue a return-of-control request from a JSON file, or - for standard input.
    Submit {
        /// The request: {agentId, agentAliasId, sessionId, returnControl: {invocationId, invocationInputs}, ...}.
        #[arg(default_value = "-")]
        file: String,
        /// Print the stored request as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the open requests, riskiest and most urgent first.
    Pending {
        #[arg(long)]
        json: bool,
    },
    /// Show one request in full: every parameter, the rationale, hashes, the policy rule, decisions.
    Show {
        /// The request id (invocationId) or an unambiguous prefix of it.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve (confirm) inputs of a request.
    Approve(DecideArgs),
    /// Reject (deny) inputs of a request. A reason is required.
    Reject(DecideArgs),
    /// Open the console on a fresh demo store seeded with example requests (risky payments,
    /// a destructive action, an API-form request with three inputs, a hostile one).
    Demo(DemoArgs),
    /// Run one agent turn on Bedrock (or a simulator) with its trace printed live; returns of
    /// control land in the queue, or with --decide-inline are decided here and resumed.
    Invoke(super::invoke::InvokeArgs),
    /// Send every decided return of control back to its agent, exactly once (the outbox).
    Resume(super::invoke::ResumeArgs),
    /// Recorded sessions with their figures, or one session's turns and steps (`show SESSION`).
    Traces(super::traces::TracesArgs),
    /// Import recorded traces: boto3 InvokeAgent stream events dumped to JSON or JSONL, bare
    /// TraceParts, or raw eventstream bodies. Importing a file again adds nothing. Exits 2 when
    /// a record was rejected (each is named by file and line or byte offset; the rest is kept).
    Import(super::import::ImportArgs),
    /// The metrics pane's figures: task completion, action accuracy, latency, tokens and cost,
    /// the human side; over a window, filtered by agent, alias or model.
    Metrics(super::metrics::MetricsArgs),
    /// Run the local Bedrock Agent Runtime simulator on 127.0.0.1 until Ctrl-C.
    Sim {
        /// Port to listen on (0 = any free port).
        #[arg(long, default_value_t = 8777)]
        port: u16,
        /// More scenario files (TOML) to load after the built-in ones; repeatable.
        #[arg(long = "scenario", value_name = "FILE")]
        scenario: Vec<PathBuf>,
        /// Seed for timing jitter, amounts and ids: the same seed gives the same run.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Faults, e.g. throttle=0.1,exception=3,slow=20ms,stall=5s@0.2,drop=4,corrupt=flip,split=0.25.
        #[arg(long, value_name = "SPEC")]
        faults: Option<String>,
        /// Multiply scripted latencies (1 = real time, 0 = no waiting).
        #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
        time_scale: f64,
    },
    /// Create the store: for dynamodb:TABLE the table, its pending-queue index and TTL
    /// (idempotent: a second run checks the existing table's shape).
    Init {
        /// DynamoDB endpoint for a local server (the same as the global --store-endpoint).
        #[arg(long, value_name = "URL")]
        endpoint_url: Option<String>,
    },
    /// Read Bedrock's own CloudWatch metrics (AWS/Bedrock/Agents) per agent alias.
    Cloudwatch(crate::cloudwatch::cli::CloudWatchArgs),
    /// Verify or export the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// `agentdeck demo`: the simulator in-process, simulated users, a fresh store, the console.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// DynamoDB endpoint for a dynamodb: store on a local server (the same as the global
    /// --store-endpoint; the demo's Bedrock is always its own simulator).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Keep the demo store here instead of a fresh temporary file.
    #[arg(long, value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// New agent turns per second across all simulated users.
    #[arg(long, default_value_t = 0.5, value_parser = parse_rate)]
    pub rate: f64,
    /// Simulated users (turns in flight at most).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub users: u16,
    /// Seed for the simulator's timing and the users' requests (same seed, same run).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Simulated latencies scale (1.0 = as scripted; 0 = instant).
    #[arg(long, default_value_t = 1.0, value_parser = parse_scale)]
    pub time_scale: f64,
    /// No simulated traffic: only the example requests.
    #[arg(long)]
    pub no_traffic: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && (0.01..=1000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{s:?}: expected turns per second between 0.01 and 1000"
        )),
    }
}

fn parse_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && (0.0..=100.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?}: expected a scale between 0 and 100")),
    }
}

#[derive(Debug, Clone, Args)]
pub struct DecideArgs {
    /// The request id (invocationId) or an unambiguous prefix of it.
    pub id: String,
    /// Why (required to reject, and to approve tiers whose policy asks for it).
    #[arg(long)]
    pub reason: Option<String>,
    /// Input number to decide (1-based); repeat for several. Needed when a request has several inputs.
    #[arg(long = "input", value_name = "N")]
    pub inputs: Vec<usize>,
    /// Decide every open input of the request.
    #[arg(long, conflicts_with = "inputs")]
    pub all: bool,
    /// The argument hash you reviewed (from `show`); the decision is refused if the arguments differ.
    #[arg(long = "hash", value_name = "SHA256")]
    pub hashes: Vec<String>,
    /// The confirmation word that high-risk tiers demand (the function name, or the API path's last segment).
    #[arg(long, value_name = "WORD")]
    pub confirm: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and that every request and decision matches the log.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Write every audit entry, in order.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}
