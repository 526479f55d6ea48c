//! `agentdeck sim`: start the simulator, tell the user what to call, serve until Ctrl-C.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use super::{AgentSummary, Behaviour, Faults, Scenario, SimConfig, SimError, SimStats, start};

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
    let words = |b: &Behaviour| {
        if b.keywords.is_empty() {
            "(anything else)".to_owned()
        } else {
            b.keywords
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join("|")
        }
    };
    for a in agents {
        let own: Vec<&Behaviour> = a.behaviours.iter().filter(|b| !b.shared).collect();
        let first = own.first().map_or_else(
            || "(anything) -> answer".to_owned(),
            |b| format!("{} -> {}", words(b), b.does),
        );
        let _ = writeln!(
            s,
            "{:<11} {:<20} {:<22} {:>4}s  {first}",
            a.id,
            a.name,
            a.aliases.join(","),
            a.idle_ttl_secs
        );
        for b in own.iter().skip(1) {
            let _ = writeln!(s, "{:<62}  {} -> {}", "", words(b), b.does);
        }
    }
    let shared: Vec<&Behaviour> = agents
        .first()
        .map(|a| a.behaviours.iter().filter(|b| b.shared).collect())
        .unwrap_or_default();
    if !shared.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "Any agent (checked before its own scripts):");
        for b in shared {
            let _ = writeln!(s, "  {} -> {}", words(b), b.does);
        }
    }
    let _ = writeln!(
        s,
        "  streamingConfigurations.streamFinalResponse=true -> the answer in small chunks, guardrail traces between them"
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Requests must be SigV4-signed (any credentials; signatures are not checked). Try:"
    );
    let _ = writeln!(
        s,
        "  python3 -c \"import boto3; c = boto3.client('bedrock-agent-runtime', endpoint_url='{endpoint}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test'); [print(e) for e in c.invoke_agent(agentId='PAYAGENT01', agentAliasId='PRODALIAS', sessionId='demo-1', enableTrace=True, inputText='pay 250 EUR to acct-77')['completion']]\""
    );
    let _ = writeln!(
        s,
        "  Rust SDK: aws_sdk_bedrockagentruntime::config::Builder::new().endpoint_url(\"{endpoint}\"). (The AWS CLI has no invoke-agent.)"
    );
    let _ = writeln!(
        s,
        "CloudWatch on the same endpoint (ListMetrics, GetMetricData, PutMetricData; RPC v2 CBOR and JSON 1.0): each call above records the AWS/Bedrock/Agents metrics Bedrock publishes. Try:"
    );
    let _ = writeln!(
        s,
        "  agentdeck --cloudwatch-endpoint {endpoint} cloudwatch read --window 15m"
    );
    let _ = writeln!(s, "Ctrl-C stops.");
    s
}

fn summary(stats: &SimStats) -> String {
    format!(
        "served {} invocations ({} resumes), {} frames, {} bytes, {} sessions, {} errors",
        stats.invocations, stats.resumes, stats.frames, stats.bytes, stats.sessions, stats.errors
    )
}

/// Ctrl-C, or SIGTERM where there is one.
async fn stopped() {
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
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
        stopped().await;
        let stats = handle.stats();
        handle.shutdown().await;
        writeln!(out, "\n{}", summary(&stats))?;
        Ok(())
    })
}
