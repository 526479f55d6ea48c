//! agentdeck's entry point: parse the command line, log to a file, open the store, run the
//! command or the console, and turn failures into documented exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use clap::Parser;

use agentdeck::app::AppState;
use agentdeck::app::keymap::Keymap;
use agentdeck::bedrock::runner::DeckStore;
use agentdeck::cli::args::{Command, DemoArgs};
use agentdeck::cli::commands::{self, Ctx};
use agentdeck::cli::{Cli, CliError, demo};
use agentdeck::config::{self, Config, Overrides, StoreSpec};
use agentdeck::domain::decision::Verdict;
use agentdeck::store::ApprovalStore;
use agentdeck::store::dynamo::{DynamoOptions, DynamoStore, InitOutcome};
use agentdeck::store::metrics::MetricsStore;
use agentdeck::store::run::{OutboxStore, TraceStore};
use agentdeck::store::sqlite::SqliteStore;
use agentdeck::ui::theme::Theme;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): nothing to report.
        Err(e) if e.code == agentdeck::cli::exit::OK => ExitCode::SUCCESS,
        Err(e) => {
            tracing::warn!(code = e.code, error = %e.message, "command failed");
            let _ = writeln!(std::io::stderr(), "agentdeck: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Logs go to `$XDG_STATE_HOME/agentdeck/agentdeck.log`, never to the terminal.
fn init_logging() {
    let dir = config::state_dir();
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agentdeck.log"))
    else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENTDECK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn load_theme(name: &str) -> Result<Theme, CliError> {
    if env("NO_COLOR").is_some() {
        return Ok(Theme::no_color());
    }
    if let Some(t) = Theme::builtin(name) {
        return Ok(t);
    }
    let is_path = name.contains('/')
        || std::path::Path::new(name)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let path = if is_path {
        Some(PathBuf::from(name))
    } else {
        config::user_theme_path(name).filter(|p| p.exists())
    };
    let Some(path) = path else {
        return Err(CliError::bad_input(format!(
            "--theme {name:?}: not a built-in theme ({}) nor a theme file",
            Theme::builtin_names().join(", ")
        )));
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::bad_input(format!("{}: cannot read theme: {e}", path.display())))?;
    Theme::parse(&path.display().to_string(), &text).map_err(|e| CliError::bad_input(e.to_string()))
}

/// The store a spec names, behind the ports.
enum Opened {
    Sqlite(SqliteStore),
    Dynamo(DynamoStore),
}

impl Opened {
    fn approvals(&self) -> &dyn ApprovalStore {
        match self {
            Self::Sqlite(s) => s,
            Self::Dynamo(d) => d,
        }
    }

    /// The metrics port (both adapters serve it).
    fn metrics(&self) -> &dyn MetricsStore {
        match self {
            Self::Sqlite(s) => s,
            Self::Dynamo(d) => d,
        }
    }

    /// Every port, for the runner commands.
    fn deck(&self) -> &dyn DeckStore {
        match self {
            Self::Sqlite(s) => s,
            Self::Dynamo(d) => d,
        }
    }

    fn into_deck(self) -> Arc<dyn DeckStore> {
        match self {
            Self::Sqlite(s) => Arc::new(s),
            Self::Dynamo(d) => Arc::new(d),
        }
    }

    /// The approvals, traces, outbox and metrics ports (both adapters keep all four).
    fn into_arcs(self) -> ConsolePorts {
        let (deck, metrics): (Arc<dyn DeckStore>, Option<Arc<dyn MetricsStore>>) = match self {
            Self::Sqlite(s) => {
                let s = Arc::new(s);
                (s.clone(), Some(s))
            }
            Self::Dynamo(d) => {
                let d = Arc::new(d);
                (d.clone(), Some(d))
            }
        };
        let traces: Arc<dyn TraceStore> = deck.clone();
        let links: Arc<dyn OutboxStore> = deck.clone();
        (deck, Some(traces), Some(links), metrics)
    }
}

/// What the console reads: approvals, and the traces and outbox where the store keeps them.
type ConsolePorts = (
    Arc<dyn ApprovalStore>,
    Option<Arc<dyn TraceStore>>,
    Option<Arc<dyn OutboxStore>>,
    Option<Arc<dyn MetricsStore>>,
);

fn dynamo_options(table: &str, endpoint: Option<&str>) -> DynamoOptions {
    DynamoOptions {
        table: table.to_owned(),
        endpoint_url: endpoint.map(str::to_owned),
        ..DynamoOptions::default()
    }
}

/// On a DynamoDB store, the reviewer is who STS says the caller is, unless one was given
/// (`--reviewer`, `AGENTDECK_REVIEWER`, `reviewer` in the config file).
fn team_reviewer(config: &mut Config, opened: &Opened) -> Result<(), CliError> {
    if let Opened::Dynamo(d) = opened
        && !config.reviewer_given
    {
        config.reviewer = d.caller_identity().map_err(|e| {
            let mut err = CliError::from(e);
            err.message.push_str(
                "; or give the reviewer name with --reviewer NAME (or `reviewer` in the config)",
            );
            err
        })?;
    }
    Ok(())
}

fn open_store(spec: &StoreSpec, endpoint: Option<&str>) -> Result<Opened, CliError> {
    match spec {
        StoreSpec::Sqlite(path) => Ok(Opened::Sqlite(SqliteStore::open(path)?)),
        StoreSpec::Dynamo(table) => Ok(Opened::Dynamo(DynamoStore::connect(&dynamo_options(
            table, endpoint,
        ))?)),
    }
}

fn run(cli: &Cli) -> Result<(), CliError> {
    let g = &cli.global;
    let overrides = Overrides {
        config_file: g.config.clone(),
        reviewer: g.reviewer.clone(),
        theme: g.theme.clone(),
        store: g.store.clone(),
    };
    let config = Config::load(&overrides, &env)?;
    let now = Utc::now();
    let mut stdout = std::io::stdout().lock();
    match &cli.command {
        None => {
            let spec = StoreSpec::parse(config.store.as_deref())?;
            console(
                &config,
                &spec,
                g.store_endpoint.as_deref(),
                None,
                timed_publish(g),
                g.cloudwatch_endpoint.clone(),
            )
        }
        Some(Command::Init { endpoint_url }) => {
            let spec = StoreSpec::parse(config.store.as_deref())?;
            let endpoint = endpoint_url.as_deref().or(g.store_endpoint.as_deref());
            let said = match &spec {
                StoreSpec::Sqlite(path) => {
                    SqliteStore::open(path)?;
                    format!("store ready: {}", spec.label())
                }
                StoreSpec::Dynamo(table) => {
                    match DynamoStore::init(&dynamo_options(table, endpoint))? {
                        InitOutcome::Created => format!(
                            "created DynamoDB table {table} with index queue (qpk, qsk) and TTL on \
                             `ttl`"
                        ),
                        InitOutcome::Exists => format!(
                            "DynamoDB table {table} exists with the expected keys and index: \
                             nothing to do"
                        ),
                    }
                }
            };
            writeln!(stdout, "{said}").map_err(|e| CliError::unavailable(e.to_string()))
        }
        Some(Command::Demo(args)) => {
            let path = args.path.clone().unwrap_or_else(|| {
                std::env::temp_dir()
                    .join(format!("agentdeck-demo-{}", std::process::id()))
                    .join("demo.db")
            });
            // The demo runs on a dynamodb: store when one is given (creating the table if it
            // is missing), else on a fresh SQLite file.
            let endpoint = args.endpoint_url.as_deref().or(g.store_endpoint.as_deref());
            let spec = match StoreSpec::parse(config.store.as_deref())? {
                StoreSpec::Dynamo(table) => {
                    DynamoStore::init(&dynamo_options(&table, endpoint))?;
                    StoreSpec::Dynamo(table)
                }
                StoreSpec::Sqlite(_) => StoreSpec::Sqlite(path),
            };
            console(
                &config,
                &spec,
                endpoint,
                Some(args),
                timed_publish(g),
                g.cloudwatch_endpoint.clone(),
            )
        }
        Some(Command::Sim {
            port,
            scenario,
            seed,
            faults,
            time_scale,
        }) => agentdeck::sim::cli::run(
            &agentdeck::sim::cli::SimArgs {
                port: *port,
                scenarios: scenario.clone(),
                seed: *seed,
                faults: faults.clone(),
                time_scale: *time_scale,
            },
            &mut stdout,
        )
        .map_err(|e| CliError::bad_input(e.to_string())),
        Some(Command::Cloudwatch(args)) => {
            agentdeck::cloudwatch::cli::run(g.cloudwatch_endpoint.as_deref(), args, &mut stdout)
        }
        Some(cmd) => {
            let spec = StoreSpec::parse(config.store.as_deref())?;
            let opened = match (&spec, cmd) {
                // A store an import creates is laid out for bulk loads.
                (StoreSpec::Sqlite(path), Command::Import(_)) => {
                    Opened::Sqlite(SqliteStore::open_for_import(path)?)
                }
                _ => open_store(&spec, g.store_endpoint.as_deref())?,
            };
            let mut config = config.clone();
            team_reviewer(&mut config, &opened)?;
            let config = config;
            let ctx = Ctx {
                config: &config,
                store: opened.approvals(),
                now,
            };
            match cmd {
                Command::Submit { file, json } => {
                    let bytes = commands::read_submission(file, &mut std::io::stdin().lock())?;
                    let source = if file == "-" {
                        "(stdin)"
                    } else {
                        file.as_str()
                    };
                    commands::submit(&ctx, source, &bytes, *json, &mut stdout)
                }
                Command::Pending { json } => commands::pending(&ctx, *json, &mut stdout),
                Command::Show { id, json } => commands::show(&ctx, id, *json, &mut stdout),
                Command::Approve(args) => {
                    commands::decide(&ctx, args, Verdict::Confirm, &mut stdout)
                }
                Command::Reject(args) => {
                    if args.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                        return Err(CliError::bad_input(
                            "reject needs --reason R: say why, for the agent and the audit log",
                        ));
                    }
                    commands::decide(&ctx, args, Verdict::Deny, &mut stdout)
                }
                Command::Audit { command } => commands::audit(&ctx, command, &mut stdout),
                Command::Invoke(args) => agentdeck::cli::invoke::invoke(
                    &config,
                    opened.deck(),
                    args,
                    &mut stdout,
                    &mut std::io::stdin().lock(),
                ),
                Command::Resume(args) => {
                    agentdeck::cli::invoke::resume(&config, opened.deck(), args, &mut stdout)
                }
                Command::Traces(args) => {
                    agentdeck::cli::traces::run(opened.deck(), args, &config.reviewer, &mut stdout)
                }
                Command::Import(args) => agentdeck::cli::import::run(
                    opened.deck(),
                    args,
                    &mut stdout,
                    &mut std::io::stderr(),
                ),
                Command::Metrics(agentdeck::cli::metrics::MetricsArgs {
                    command: Some(agentdeck::cli::metrics::MetricsCommand::Publish(opts)),
                    ..
                }) => agentdeck::cli::metrics::publish(
                    opened.metrics(),
                    &config.metrics,
                    g.cloudwatch_endpoint.as_deref(),
                    opts,
                    now,
                    &mut stdout,
                ),
                Command::Metrics(args) => agentdeck::cli::metrics::run(
                    opened.metrics(),
                    &config.metrics,
                    args,
                    now,
                    &mut stdout,
                ),
                Command::Demo(_)
                | Command::Sim { .. }
                | Command::Init { .. }
                | Command::Cloudwatch(_) => Ok(()),
            }
        }
    }
}

/// The console's timed CloudWatch publish, if `--publish-every` asks for one.
fn timed_publish(g: &agentdeck::cli::args::Global) -> Option<agentdeck::runtime::TimedPublish> {
    g.publish_every
        .map(|secs| agentdeck::runtime::TimedPublish {
            endpoint: g.cloudwatch_endpoint.clone(),
            namespace: g.publish_namespace.clone(),
            window: agentdeck::domain::metrics::Window::H1,
            every: std::time::Duration::from_secs(secs),
        })
}

/// Opens the console. The keymap and theme are checked before the store is touched, so a bad
/// config leaves nothing behind. With `demo`, the store is seeded with the example requests, the
/// simulator starts on an ephemeral loopback port and simulated users drive it.
fn console(
    config: &Config,
    spec: &StoreSpec,
    endpoint: Option<&str>,
    demo: Option<&DemoArgs>,
    mut publish: Option<agentdeck::runtime::TimedPublish>,
    mut cloudwatch_in: Option<String>,
) -> Result<(), CliError> {
    let keymap = Keymap::with_overrides(&config.keys).map_err(|e| {
        let file = config
            .file
            .as_ref()
            .map_or_else(|| "(configuration)".to_owned(), |p| p.display().to_string());
        CliError::bad_input(format!("{file}: {e}"))
    })?;
    let theme = load_theme(&config.theme)?;
    let store = open_store(spec, endpoint)?;
    let mut config = config.clone();
    team_reviewer(&mut config, &store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::unavailable(format!("cannot start the runtime: {e}")))?;
    let mut label = spec.label();
    let mut background = None;
    let mut sim_handle = None;
    if let Some(args) = demo {
        let sim = runtime
            .block_on(agentdeck::sim::start(agentdeck::sim::SimConfig {
                seed: args.seed,
                time_scale: args.time_scale,
                ..agentdeck::sim::SimConfig::builtin()
                    .map_err(|e| CliError::bad_input(e.to_string()))?
            }))
            .map_err(|e| CliError::unavailable(format!("demo simulator: {e}")))?;
        // The queue's countdowns follow each simulated agent's own idle TTL.
        for agent in sim.agents() {
            let ttl = u32::try_from(agent.idle_ttl_secs).unwrap_or(600);
            config.agent_ttl_secs.entry(agent.id.clone()).or_insert(ttl);
        }
        demo::seed(store.approvals(), &config, Utc::now())?;
        label = format!("demo · sim {} · {label}", sim.endpoint());
        if !args.no_traffic {
            // The traffic and the outbox worker record through their own handle on the store
            // (their own SQLite connection, their own DynamoDB client).
            let traffic = agentdeck::runtime::demo::start_traffic(
                sim.endpoint(),
                open_store(spec, endpoint)?.into_deck(),
                config.clone(),
                agentdeck::runtime::demo::TrafficOptions {
                    rate: args.rate,
                    users: usize::from(args.users),
                    seed: args.seed,
                },
            )
            .map_err(|e| CliError::unavailable(format!("demo traffic: {e}")))?;
            background = Some(traffic);
        }
        if let Some(p) = publish.as_mut().filter(|p| p.endpoint.is_none()) {
            // The demo publishes to the simulator's CloudWatch stand-in: no AWS account needed.
            p.endpoint = Some(sim.endpoint());
        }
        // The demo's metrics pane reads Bedrock's figures from the simulator's stand-in.
        cloudwatch_in.get_or_insert_with(|| sim.endpoint());
        sim_handle = Some(sim);
    }
    let state = AppState::new(
        keymap,
        config.policy.clone(),
        config.reviewer.clone(),
        label,
        Utc::now(),
    );
    let (store, traces, links, metrics) = store.into_arcs();
    let metrics = metrics.map(|store| agentdeck::runtime::MetricsFeed {
        store,
        engine: Arc::new(std::sync::Mutex::new(
            agentdeck::domain::metrics::Engine::new(config.metrics.clone()),
        )),
        publish,
        cloudwatch_in,
    });
    let result = runtime
        .block_on(agentdeck::runtime::run_console(
            state,
            theme,
            store,
            traces,
            links,
            metrics,
            spec.path().map(std::path::Path::to_path_buf),
        ))
        .map_err(|e| CliError::unavailable(format!("console: {e}")));
    if let Some(traffic) = background {
        traffic.stop();
    }
    if let Some(sim) = sim_handle {
        runtime.block_on(sim.shutdown());
    }
    result
}
