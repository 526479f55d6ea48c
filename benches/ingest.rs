//! Ingest throughput: trace events recorded per second by the runner from the simulator over
//! loopback (real SDK client, real event-stream frames, SQLite on disk), and how many concurrent
//! sessions the simulator sustains.
//!
//! Run: `cargo bench --bench ingest` (under `cargo test` it runs a small smoke pass).
//! - `AGENTDECK_INGEST_PASS=sim` runs only the simulator against bare HTTP/1.1 clients that read
//!   the bytes (no SDK, no store), and reports the simulator thread's CPU time per trace event.
//! - `AGENTDECK_INGEST_PASS=sdk` runs the real SDK client against the simulator and only takes
//!   the events off the stream (no runner, no store): the floor under any runner that reads
//!   Bedrock through the SDK on this machine, with the simulator sharing its cores.
//! - `AGENTDECK_INGEST_CONCURRENCY=N`: only this many turns in flight (else 32, then 256).
//! - `AGENTDECK_INGEST_TURNS=N`: turns per pass (else 4,000; 40 in the smoke pass).
//! - `AGENTDECK_INGEST_CLIENTS=N`: client threads (default 2).
//! - `AGENTDECK_INGEST_ASK=K`: only the K-th kind of input of `ASKS` (else all four in turn).
//! - `AGENTDECK_INGEST_FAULTS=SPEC`: the simulator's faults (`agentdeck sim --faults` syntax),
//!   e.g. `split=0.25` to split a frame in four across two HTTP chunks.
//! - `AGENTDECK_INGEST_DIRECT=1`: each turn writes straight into the store, no group commit.
//! - `AGENTDECK_INGEST_KEEP=PATH`: keep the store an ingest pass wrote at PATH (replaced by the
//!   next pass), to look inside it, e.g. with SQLite's `dbstat` table.
//! - `AGENTDECK_INGEST_COLD=1`: each pass gets new SDK clients, which open their connections
//!   during the pass (else the clients, and the connections they pool, are kept from pass to
//!   pass, as a long-running runner keeps them, and each level is warmed up at its concurrency).
//!
//! Each pass prints its CPU per event for the whole process and by thread: the simulator, the
//! client threads (SDK, runner), the store's writer and its checkpoint thread.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use agentdeck::bedrock::TraceWriter;
use agentdeck::bedrock::runner::{BedrockRunner, InvokeRequest, Recorder, SubmitSettings};
use agentdeck::config::Config;
use agentdeck::sim::{SimConfig, start};
use agentdeck::store::sqlite::SqliteStore;

const ASKS: [(&str, &str, &str); 4] = [
    ("PAYAGENT01", "PRODALIAS", "pay 250 EUR to acct-7"),
    ("PAYAGENT01", "PRODALIAS", "what is my balance"),
    ("KBAGENT003", "LIVE", "what is the travel policy?"),
    ("SUPERVISR1", "LIVE", "pay 90 GBP to acct-3"),
];

/// Starts a simulator on its own thread and runtime; returns its endpoint and where its worker
/// thread's CPU times are (`/proc/PID/task/TID/stat`).
fn simulator() -> (String, std::path::PathBuf) {
    let (tx, rx) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ingest-sim")
            .on_thread_start(move || {
                if let Ok(task) = std::fs::read_link("/proc/thread-self") {
                    let _ = tid_tx.send(std::path::Path::new("/proc").join(task).join("stat"));
                }
            })
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let faults = std::env::var("AGENTDECK_INGEST_FAULTS").unwrap_or_default();
            let sim = start(SimConfig {
                time_scale: 0.0,
                faults: agentdeck::sim::Faults::parse(&faults).unwrap(),
                ..SimConfig::builtin().unwrap()
            })
            .await
            .unwrap();
            tx.send(sim.endpoint()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    (rx.recv().unwrap(), tid_rx.recv().unwrap())
}

/// User plus system CPU time of a thread, from its `/proc/.../stat` (clock ticks of 10 ms).
fn cpu_secs(stat: &std::path::Path) -> f64 {
    try_cpu_secs(stat).unwrap()
}

/// `cpu_secs`, or None when the thread is gone (or its stat does not parse).
fn try_cpu_secs(stat: &std::path::Path) -> Option<f64> {
    let text = std::fs::read_to_string(stat).ok()?;
    let after = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// One InvokeAgent call over a kept-alive connection; the number of trace frames it returned.
async fn raw_turn(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, i: usize) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (agent, alias, text) = ASKS[i % ASKS.len()];
    let body = format!(r#"{{"inputText":"{text}","enableTrace":true}}"#);
    let req = format!(
        "POST /agents/{agent}/agentAliases/{alias}/sessions/raw-{i:06}/text HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/bedrock/aws4_request, Signature=00\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    buf.clear();
    let mut body = Vec::new();
    let mut at = None;
    loop {
        if at.is_none() {
            at = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
        }
        if let Some(pos) = at {
            // Chunks: size line, data, CRLF; a zero size ends the body.
            let mut p = pos;
            let mut done = false;
            body.clear();
            while let Some(eol) = buf[p..].windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(std::str::from_utf8(&buf[p..p + eol]).unwrap(), 16)
                        .unwrap();
                if size == 0 {
                    done = true;
                    break;
                }
                if buf.len() < p + eol + 2 + size + 2 {
                    break;
                }
                body.extend_from_slice(&buf[p + eol + 2..p + eol + 2 + size]);
                p += eol + 2 + size + 2;
            }
            if done {
                break;
            }
        }
        buf.reserve(65536);
        let n = s.read_buf(buf).await.unwrap();
        assert!(n > 0, "the simulator closed the connection mid-response");
    }
    // Count trace frames: each frame's headers name its :event-type.
    let mut traces = 0;
    let mut rest = &body[..];
    while rest.len() >= 12 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let headers = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
        if rest[12..12 + headers].windows(5).any(|w| w == b"trace") {
            traces += 1;
        }
        rest = &rest[len..];
    }
    traces
}

/// The simulator alone: `turns` calls over `concurrency` kept-alive connections.
fn sim_pass(endpoint: &str, stat: &std::path::Path, turns: usize, concurrency: usize) {
    let addr = endpoint.trim_start_matches("http://").to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cpu0 = cpu_secs(stat);
    let started = Instant::now();
    let events: u64 = rt.block_on(async {
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let next = next.clone();
                let addr = addr.clone();
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                    s.set_nodelay(true).unwrap();
                    let mut buf = Vec::new();
                    let mut events = 0;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= turns {
                            return events;
                        }
                        events += raw_turn(&mut s, &mut buf, i).await;
                    }
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_secs(stat) - cpu0;
    println!(
        "sim: {events} trace events from {turns} turns ({concurrency} connections) in {wall:.2} s = {:.0} events/s; simulator thread CPU {cpu:.2} s = {:.2} us per trace event",
        events as f64 / wall,
        cpu * 1e6 / events as f64
    );
}

/// The SDK and the simulator alone: `turns` InvokeAgent calls with tracing on, `concurrency` in
/// flight over the client threads, each stream read to its end and its trace events counted,
/// nothing mapped or stored; the inputs are the ingest pass's (`ask`: `Options::ask`). Prints
/// events/s and CPU per event (whole process, and the simulator's thread).
fn sdk_pass(
    sides: &[ClientSide],
    stat: &std::path::Path,
    ask: Option<usize>,
    (turns, concurrency): (usize, usize),
) {
    use aws_sdk_bedrockagentruntime::types::ResponseStream;
    let clients = sides.len().min(concurrency);
    let before = usage();
    let sim_before = cpu_secs(stat);
    let started = Instant::now();
    let events: u64 = std::thread::scope(|scope| {
        let threads: Vec<_> = sides[..clients]
            .iter()
            .enumerate()
            .map(|(t, side)| {
                let in_flight = concurrency / clients + usize::from(t < concurrency % clients);
                let client = side.runner.client();
                scope.spawn(move || {
                    side.rt.block_on(async {
                        futures::stream::iter((t..turns).step_by(clients))
                            .map(|i| async move {
                                let (agent, alias, text) = ASKS[ask.unwrap_or(i % ASKS.len())];
                                let out = client
                                    .invoke_agent()
                                    .agent_id(agent)
                                    .agent_alias_id(alias)
                                    .session_id(format!("sdk-{i:06}"))
                                    .input_text(text)
                                    .enable_trace(true)
                                    .send()
                                    .await
                                    .unwrap();
                                let mut stream = out.completion;
                                let mut n = 0_u64;
                                while let Some(event) = stream.recv().await.unwrap() {
                                    n += u64::from(matches!(event, ResponseStream::Trace(_)));
                                }
                                n
                            })
                            .buffer_unordered(in_flight)
                            .fold(0, |a, n| async move { a + n })
                            .await
                    })
                })
            })
            .collect();
        threads.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let wall = started.elapsed().as_secs_f64();
    let sim_cpu = cpu_secs(stat) - sim_before;
    assert!(events > 0, "the SDK-only pass read no trace event");
    let per_event = |secs: f64| secs * 1e6 / events as f64;
    let cpu = match (before, usage()) {
        (Some(b), Some(a)) => format!("{:.1}", per_event(a.0 - b.0)),
        _ => "?".into(),
    };
    println!(
        "sdk: {events} trace events from {turns} turns ({concurrency} at a time) in {wall:.2} s = {:.0} events/s; cpu {cpu} us per event (every thread), of which the simulator's thread {:.1} us",
        events as f64 / wall,
        per_event(sim_cpu)
    );
}

/// How the ingest passes run, from the environment (see the module's doc).
struct Options {
    /// Client threads, each a current-thread runtime with its share of the turns in flight
    /// (`AGENTDECK_INGEST_CLIENTS`, default 2: one per core, as `agentdeck invoke` and the
    /// console run two runtime workers).
    clients: usize,
    /// Only this kind of input (`AGENTDECK_INGEST_ASK`, an index into `ASKS`), else all four in
    /// turn.
    ask: Option<usize>,
    /// Record each turn's writes straight into the store (`AGENTDECK_INGEST_DIRECT=1`).
    direct: bool,
    /// Keep the store of the last pass here, for a look inside (`AGENTDECK_INGEST_KEEP=PATH`;
    /// each ingest pass overwrites it).
    keep: Option<std::path::PathBuf>,
    /// New clients (and connections) for every pass (`AGENTDECK_INGEST_COLD=1`).
    cold: bool,
}

impl Options {
    fn from_env() -> Self {
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        Self {
            clients: number("AGENTDECK_INGEST_CLIENTS").unwrap_or(2).max(1),
            ask: number("AGENTDECK_INGEST_ASK").map(|k: usize| k % ASKS.len()),
            direct: std::env::var_os("AGENTDECK_INGEST_DIRECT").is_some(),
            keep: std::env::var_os("AGENTDECK_INGEST_KEEP").map(Into::into),
            cold: std::env::var_os("AGENTDECK_INGEST_COLD").is_some(),
        }
    }
}

/// A client thread's own runtime and SDK client. A client's pooled connections belong to the
/// runtime that opened them (one client shared by two runtimes loses connections when either
/// stops), so each client thread has both; they outlive a pass unless `Options::cold`.
struct ClientSide {
    rt: tokio::runtime::Runtime,
    runner: BedrockRunner,
}

fn client_sides(endpoint: &str, n: usize) -> Vec<ClientSide> {
    (0..n)
        .map(|_| ClientSide {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            runner: BedrockRunner::loopback(endpoint),
        })
        .collect()
}

/// Turns `t`, `t + clients`, ... of `turns`, on this thread's runtime and SDK client (`side`),
/// keeping `in_flight` of them going; returns (events, errors, this thread's CPU seconds),
/// printing the first error.
fn client(
    side: &ClientSide,
    recorder: Recorder<'_>,
    config: &Config,
    opts: &Options,
    (t, turns): (usize, usize),
    in_flight: usize,
) -> (u64, u64, f64) {
    let me = std::path::Path::new("/proc/thread-self/stat");
    let cpu0 = cpu_secs(me);
    let runner = &side.runner;
    side.rt.block_on(async {
        let ttl = |_: &str| 600;
        let submit = SubmitSettings {
            policy: &config.policy,
            ttl_secs: &ttl,
            actor: "bench",
        };
        let requests = (t..turns).step_by(opts.clients).map(|i| {
            let (agent, alias, text) = ASKS[opts.ask.unwrap_or(i % ASKS.len())];
            InvokeRequest {
                agent_id: agent.into(),
                agent_alias_id: alias.into(),
                session_id: format!("bench-{i:06}"),
                input_text: text.into(),
                session_attributes: BTreeMap::new(),
            }
        });
        let submit = &submit;
        let mut results = futures::stream::iter(requests)
            .map(|req| async move { runner.invoke_to(&req, recorder, submit, None).await })
            .buffer_unordered(in_flight);
        let mut events = 0_u64;
        let mut errors = 0_u64;
        while let Some(r) = results.next().await {
            match r {
                Ok(s) => events += s.events,
                Err(e) => {
                    if errors == 0 {
                        println!("  first error: {e}");
                    }
                    errors += 1;
                }
            }
        }
        (events, errors, cpu_secs(me) - cpu0)
    })
}

/// Runs `turns` invocations, keeping `concurrency` in flight (shared among the client
/// threads); returns what it did (`Pass`). Records through a `TraceWriter` (group
/// commit), or with `direct` each turn's writes straight into the store (a transaction per
/// write).
fn run(sides: &[ClientSide], opts: &Options, turns: usize, concurrency: usize) -> Pass {
    let dir = tempfile::tempdir().unwrap();
    let path = opts
        .keep
        .clone()
        .unwrap_or_else(|| dir.path().join("ingest.db"));
    for end in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(end);
        let _ = std::fs::remove_file(file);
    }
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let writer = TraceWriter::spawn(store.clone()).unwrap();
    let recorder = if opts.direct {
        Recorder::Direct(&*store)
    } else {
        Recorder::Grouped(&writer)
    };
    let config = Config::defaults().unwrap();
    let clients = opts.clients.min(concurrency).min(sides.len());
    let opts = &Options {
        clients,
        keep: None,
        ..*opts
    };
    let before = threads_cpu();
    let started = Instant::now();
    let (events, errors, clients_cpu) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|t| {
                let config = &config;
                let side = &sides[t];
                let in_flight = concurrency / clients + usize::from(t < concurrency % clients);
                std::thread::Builder::new()
                    .name(format!("ingest-client{t}"))
                    .spawn_scoped(scope, move || {
                        client(side, recorder, config, opts, (t, turns), in_flight)
                    })
                    .unwrap()
            })
            .collect();
        threads
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
    });
    let wall = started.elapsed();
    // Every turn's end waited for its commit, so the writer's and checkpointer's work is done:
    // read their CPU while the threads still exist.
    let mut threads = spent_since(&before);
    threads.insert("clients", clients_cpu);
    writer.close();
    Pass {
        events,
        errors,
        wall,
        threads,
    }
}

/// What one pass did.
struct Pass {
    events: u64,
    errors: u64,
    wall: Duration,
    /// CPU seconds by thread role (see `role`), the client threads' read by themselves.
    threads: BTreeMap<&'static str, f64>,
}

/// What a thread of this process does, by its name.
fn role(comm: &str) -> &'static str {
    if comm.starts_with("agentdeck-write") {
        "writer"
    } else if comm.starts_with("agentdeck-ckpt") {
        "checkpoint"
    } else if comm.starts_with("agentdeck-sync") {
        "sync"
    } else if comm.starts_with("ingest-sim") {
        "simulator"
    } else {
        "other"
    }
}

/// Every thread of this process now: (name, CPU seconds), by thread id.
fn threads_cpu() -> BTreeMap<u64, (String, f64)> {
    let mut all = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread may end while this reads (a runtime's idle blocking thread): skip it.
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if let Some(secs) = try_cpu_secs(&task.path().join("stat")) {
            all.insert(tid, (comm.trim().to_owned(), secs));
        }
    }
    all
}

/// CPU seconds each role's threads spent since `before` (a thread started since counts from 0).
fn spent_since(before: &BTreeMap<u64, (String, f64)>) -> BTreeMap<&'static str, f64> {
    let mut by_role = BTreeMap::new();
    for (tid, (comm, now)) in threads_cpu() {
        let then = before.get(&tid).map_or(0.0, |b| b.1);
        *by_role.entry(role(&comm)).or_insert(0.0) += now - then;
    }
    by_role
}

/// This process's CPU seconds (user+sys, every thread) and bytes written (`wchar`), from /proc.
fn usage() -> Option<(f64, u64)> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    let wchar = io
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))?
        .parse()
        .ok()?;
    Some((cpu_secs(std::path::Path::new("/proc/self/stat")), wchar))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (endpoint, stat) = simulator();
    if std::env::var("AGENTDECK_INGEST_PASS").as_deref() == Ok("sim") {
        sim_pass(&endpoint, &stat, 40, 4);
        sim_pass(&endpoint, &stat, if full { 40_000 } else { 400 }, 32);
        return;
    }
    let turns = std::env::var("AGENTDECK_INGEST_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 4_000 } else { 40 });
    // Turns in flight: a few dozen like a busy console's demo, and hundreds like a fleet.
    let mut levels = if full { vec![32, 256] } else { vec![8] };
    if let Some(n) = std::env::var("AGENTDECK_INGEST_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        levels = vec![n];
    }
    let opts = Options::from_env();
    let warm = client_sides(&endpoint, opts.clients);
    if std::env::var("AGENTDECK_INGEST_PASS").as_deref() == Ok("sdk") {
        for concurrency in levels {
            // The first pass opens this level's connections; the second is measured.
            sdk_pass(&warm, &stat, opts.ask, (2 * concurrency, concurrency));
            sdk_pass(&warm, &stat, opts.ask, (turns, concurrency));
        }
        return;
    }
    // The clients for a pass: new ones (`cold`), else those kept from pass to pass.
    let sides = || (opts.cold).then(|| client_sides(&endpoint, opts.clients));
    // Warm up the code paths and the store's statement cache.
    run(sides().as_deref().unwrap_or(&warm), &opts, 20, 4);
    for concurrency in levels {
        // Kept clients open this level's connections before it is measured.
        if !opts.cold {
            run(&warm, &opts, 2 * concurrency, concurrency);
        }
        let fresh = sides();
        let before = usage();
        let sim_before = cpu_secs(&stat);
        let Pass {
            events,
            errors,
            wall,
            threads,
        } = run(fresh.as_deref().unwrap_or(&warm), &opts, turns, concurrency);
        let after = usage();
        let sim_cpu = cpu_secs(&stat) - sim_before;
        println!(
            "ingest: {events} trace events from {turns} turns ({concurrency} at a time) in {:.2} s = {:.0} events/s, {errors} errors",
            wall.as_secs_f64(),
            events as f64 / wall.as_secs_f64()
        );
        if let (Some(b), Some(a)) = (before, after) {
            let per_event = |secs: f64| secs * 1e6 / events as f64;
            println!(
                "  cpu {:.1} us per event (user+sys, every thread), of which the simulator's thread {:.1} us; {:.0} bytes written per event (files and sockets)",
                per_event(a.0 - b.0),
                per_event(sim_cpu),
                (a.1 - b.1) as f64 / events as f64
            );
            // The simulator's thread was read above; the rest by the names of their threads. The
            // store's close after the pass (its last checkpoint) is only in the total.
            let split: Vec<String> = threads
                .iter()
                .filter(|(role, _)| **role != "simulator")
                .map(|(role, secs)| format!("{role} {:.1}", per_event(*secs)))
                .collect();
            println!("  cpu us per event by thread: {}", split.join(", "));
        }
        assert_eq!(errors, 0);
    }
    let sessions = if full { 200 } else { 20 };
    let opts = Options { keep: None, ..opts };
    let Pass {
        events,
        errors,
        wall,
        ..
    } = run(
        sides().as_deref().unwrap_or(&warm),
        &opts,
        sessions,
        sessions,
    );
    println!(
        "concurrency: {sessions} sessions at once, {events} events in {:.2} s, {errors} errors",
        wall.as_secs_f64()
    );
    assert_eq!(errors, 0);
    if !full {
        // The smoke run takes the SDK-only pass too, so that it keeps working.
        sdk_pass(&warm, &stat, opts.ask, (turns, 8));
    }
}
