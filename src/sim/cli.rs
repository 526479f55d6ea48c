//! `agentdeck sim`: start the simulator, tell the user what to call, serve until Ctrl-C.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use super::{AgentSummary, Faults, Scenario, SimConfig, SimError, SimStats, start};

/// The command line's options.
#[derive(Debug, Clone)]
pub struct SimArgs {
    pub port: u16,
    pub scenarios: Vec<PathBuf>,
    pub seed: u64,
    pub faults: Option<String>,
    pub time_scale: f64,
}

/// Build the configuration the options describe (built-in scenarios first, then the files).
pub fn config(args: &SimArgs) -> Result<SimConfig, SimError> {
    let mut config = SimConfig::builtin()?;
    for path in &args.scenarios {
        config.scenarios.push(Scenario::load(path)?);
    }
    config.port = args.port;
    config.seed = args.seed;
    config.faults = Faults::parse(args.faults.as_deref().unwrap_or(""))?;
    if !args.time_scale.is_finite() || args.time_scale < 0.0 {
        return Err(SimError::Faults(
            format!("--time-scale {}", args.time_scale),
            "must be a number >= 0".to_owned(),
        ));
    }
    config.time_scale = args.time_scale;
    Ok(config)
}

/// What the user sees at start: the endpoint, every agent and what its inputs do, and how to call.
pub fn banner(endpoint: &str, agents: &[AgentSummary], faults: &Faults, seed: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "agentdeck sim: Bedrock Agent Runtime simulator");
    let _ = writeln!(s, "endpoint  {endpoint}   (127.0.0.1 only; seed {seed})");
    if !faults.is_empty() {
        let _ = writeln!(s, "faults    {}", faults.describe());
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<11} {:<20} {:<22} {:>5}  INPUT CONTAINING -> DOES",
        "AGENT ID", "NAME", "ALIASES", "TTL"
    );
    for a in agents {
        let mut first = true;
        for b in &a.behaviours {
            let words = if b.keywords.is_empty() {
                "(anything else)".to_owned()
            } else {
                b.keywords
                    .iter()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join("|")
            };
            if first {
                let _ = writeln!(
                    s,
                    "{:<11} {:<20} {:<22} {:>4}s  {words} -> {}",
                    a.id,
                    a.name,
                    a.aliases.join(","),
                    a.idle_ttl_secs,
                    b.does
                );
                first = false;
            } else {
                let _ = writeln!(s, "{:<62}  {words} -> {}", "", b.does);
            }
        }
        if first {
            let _ = writeln!(
                s,
                "{:<11} {:<20} {:<22} {:>4}s  (anything) -> answer",
                a.id,
                a.name,
                a.aliases.join(","),
                a.idle_ttl_secs
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Any agent: streamingConfigurations.streamFinalResponse=true streams the answer in small chunks."
    );
    let _ = writeln!(
        s,
        "Requests must be SigV4-signed (any credentials; signatures are not checked). Try:"
    );
    let _ = writeln!(
        s,
        "  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test aws bedrock-agent-runtime invoke-agent \\\n    --region us-east-1 --endpoint-url {endpoint} --agent-id PAYAGENT01 --agent-alias-id PRODALIAS \\\n    --session-id demo-1 --enable-trace --input-text \"pay 250 EUR to acct-77\" out.bin"
    );
    let _ = writeln!(
        s,
        "  agentdeck (runner) or any AWS SDK: set endpoint_url to {endpoint}. Ctrl-C stops."
    );
    s
}

fn summary(stats: &SimStats) -> String {
    format!(
        "served {} invocations ({} resumes), {} frames, {} bytes, {} sessions, {} errors",
        stats.invocations, stats.resumes, stats.frames, stats.bytes, stats.sessions, stats.errors
    )
}

/// Run until Ctrl-C.
pub fn run(args: &SimArgs, out: &mut dyn Write) -> Result<(), SimError> {
    let config = config(args)?;
    let seed = config.seed;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let handle = start(config).await?;
        out.write_all(
            banner(&handle.endpoint(), &handle.agents(), handle.faults(), seed).as_bytes(),
        )?;
        out.flush()?;
        let _ = tokio::signal::ctrl_c().await;
        let stats = handle.stats();
        handle.shutdown().await;
        writeln!(out, "\n{}", summary(&stats))?;
        Ok(())
    })
}
