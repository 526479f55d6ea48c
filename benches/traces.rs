#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
//! Traces explorer benchmarks.
//!
//! - `render/steps/{1000,1000000}`: one frame of an invocation's step list (120x40) with 1,000
//!   and 1,000,000 indexed steps, the selection in the middle. The target: the 1M frame no more
//!   than 1.2x the 1k frame, and under 2 ms.
//! - `render/sessions/{1000,1000000}`: the same for the sessions list: 1,000 sessions of 1 and
//!   of 1,000 steps.
//! - Printed before the groups: the index's heap bytes per step at 1,000,000 steps (counted from
//!   the capacities of every column, map and string; target < 300), and, with
//!   `AGENTDECK_BENCH_TAIL=1`, the console side's CPU while a writer records 1,000 trace events a
//!   second into a SQLite store (read the changes every 50 ms, the file watcher's most frequent
//!   reload, fold them, draw; target < 5% of one core) and idle (a frame a second; target < 0.5%), from the thread's own
//!   utime+stime in /proc/thread-self/stat.
//!
//! Run: `cargo bench --bench traces` (`AGENTDECK_BENCH_TAIL=1` adds the 20 s CPU measures;
//! `AGENTDECK_BENCH_LOAD=100000` times reading the index of a store holding that many steps
//! and the first full-text search over it, which indexes the text; `AGENTDECK_BENCH_WATCH=1`
//! times a commit by another connection to the moment the console's file watcher has told and
//! the new step has been read: isolated commits, then a steady stream).

use std::hint::black_box;
use std::time::{Duration, Instant};

use agentdeck::app::keymap::Keymap;
use agentdeck::app::state::{Pane, SessionView, TurnView};
use agentdeck::app::trace_index::TraceIndex;
use agentdeck::app::{AppState, Effect, Msg, update};
use agentdeck::config::Config;
use agentdeck::domain::step_kind::StepKinds;
use agentdeck::domain::trace::{StepFigures, TraceEvent};
use agentdeck::store::run::{
    IndexCursor, IndexPage, IndexedStep, InvocationEnd, InvocationRecord, InvocationStart, Outcome,
    TraceStore,
};
use agentdeck::store::sqlite::SqliteStore;
use agentdeck::ui::theme::Theme;
use chrono::{DateTime, Duration as Span, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn record(i: usize, steps: u64) -> InvocationRecord {
    InvocationRecord {
        start: InvocationStart {
            request_id: format!("req-{i:08}"),
            agent_id: format!("AGENT{}", i % 7),
            agent_alias_id: "PRODALIAS".into(),
            session_id: format!("sess-{i:08}"),
            input_text: None,
            resumes: None,
            started_at: t0() + Span::seconds(i as i64),
        },
        outcome: Outcome::Finished,
        ended_at: Some(t0() + Span::seconds(i as i64 + 5)),
        error: None,
        final_response: None,
        latency_ms: Some(4_000),
        input_tokens: 1_000,
        output_tokens: 100,
        events: steps * 4,
        steps,
        chunks: 1,
    }
}

/// An index of `invocations` invocations (one session each) of `per` steps, fed in pages of
/// 10,000 steps as the store would send them.
fn index(invocations: usize, per: u64) -> TraceIndex {
    let mut ix = TraceIndex::default();
    ix.apply(&IndexPage {
        invocations: (0..invocations).map(|i| record(i, per)).collect(),
        steps: Vec::new(),
        cursor: IndexCursor::default(),
        more: false,
    });
    let base = t0().timestamp_nanos_opt().unwrap();
    let kinds = [
        StepKinds::MODEL_INPUT
            .with(StepKinds::MODEL_OUTPUT)
            .with(StepKinds::RATIONALE),
        StepKinds::ACTION_GROUP,
        StepKinds::KNOWLEDGE_BASE,
        StepKinds::GUARDRAIL,
    ];
    let mut page = Vec::with_capacity(10_000);
    for i in 0..invocations {
        let id = format!("req-{i:08}");
        for n in 1..=per {
            page.push(IndexedStep {
                request_id: id.clone(),
                step: n,
                kinds: kinds[(n % 4) as usize],
                depth: u8::from(n % 10 == 3),
                figures: StepFigures {
                    duration_ms: Some(((n * 37) % 2_000) as i64),
                    input_tokens: 1_000,
                    output_tokens: 50,
                },
                start_ns: Some(base + (n as i64) * 1_000_000_000),
            });
            if page.len() == 10_000 {
                ix.apply(&IndexPage {
                    invocations: Vec::new(),
                    steps: std::mem::take(&mut page),
                    cursor: IndexCursor::default(),
                    more: false,
                });
            }
        }
    }
    ix.apply(&IndexPage {
        invocations: Vec::new(),
        steps: page,
        cursor: IndexCursor::default(),
        more: false,
    });
    ix
}

/// A console of 120x40 with the default keys and policy.
fn console() -> AppState {
    let config = Config::defaults().unwrap();
    let mut s = AppState::new(
        Keymap::with_overrides(&config.keys).unwrap(),
        config.policy.clone(),
        "bench@oncall".into(),
        "bench.db".into(),
        t0(),
    );
    s.width = 120;
    s.height = 40;
    s
}

fn state(ix: TraceIndex, open_turn: bool) -> AppState {
    let mut s = console();
    s.pane = Pane::Traces;
    if open_turn {
        let inv = 0u32;
        let n = ix.invocations[0].steps.len();
        s.traces.session = Some(SessionView {
            session: ix.invocations[0].session,
            selected: 0,
        });
        s.traces.turn = Some(TurnView {
            request_id: ix.names.name(ix.invocations[0].request).to_owned(),
            invocation: inv,
            tag: 0,
            steps: None,
            rows_from: 0,
            selected: n / 2,
            step: None,
        });
    } else {
        s.traces.selected = ix.recent.len() / 2;
    }
    s.traces.index = ix;
    s
}

fn frame(term: &mut Terminal<TestBackend>, s: &AppState, theme: &Theme) {
    term.draw(|f| {
        black_box(agentdeck::ui::render(f, s, theme));
    })
    .unwrap();
}

/// `n` frames of the step list at 1,000 steps (kept apart for callgrind's --toggle-collect).
#[inline(never)]
fn frames_small(term: &mut Terminal<TestBackend>, s: &AppState, theme: &Theme, n: usize) {
    for _ in 0..n {
        frame(term, s, theme);
    }
}

/// `n` frames of the step list at 1,000,000 steps.
#[inline(never)]
fn frames_large(term: &mut Terminal<TestBackend>, s: &AppState, theme: &Theme, n: usize) {
    for _ in 0..n {
        frame(term, s, theme);
    }
}

fn render(c: &mut Criterion) {
    let theme = Theme::builtin("dark").unwrap();
    // Instruction counts, which load does not distort:
    // AGENTDECK_BENCH_FRAMES=20 valgrind --tool=callgrind --toggle-collect='*frames_small*'
    //   --toggle-collect='*frames_large*' target/.../traces-<hash>
    // then callgrind_annotate --inclusive=yes: the two functions' Ir, 20 frames each.
    if let Some(n) = std::env::var_os("AGENTDECK_BENCH_FRAMES") {
        let n: usize = n.to_string_lossy().parse().unwrap();
        let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
        let small = state(index(1, 1_000), true);
        frames_small(&mut term, &small, &theme, n);
        let large = state(index(1, 1_000_000), true);
        frames_large(&mut term, &large, &theme, n);
        return;
    }
    let big = index(1, 1_000_000);
    let steps = big.steps.len();
    let bytes = big.heap_bytes();
    println!(
        "index: {steps} steps in one invocation, {bytes} heap bytes, {:.1} bytes/step",
        bytes as f64 / steps as f64
    );
    let many = index(1_000, 1_000);
    println!(
        "index: {} steps over 1,000 sessions, {:.1} bytes/step",
        many.steps.len(),
        many.heap_bytes() as f64 / many.steps.len() as f64
    );
    let mut g = c.benchmark_group("render/steps");
    for (name, ix) in [("1000", index(1, 1_000)), ("1000000", big)] {
        let s = state(ix, true);
        let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
        g.bench_function(name, |b| b.iter(|| frame(&mut term, &s, &theme)));
    }
    g.finish();
    // The same 1,000 sessions on screen, with 1 step and with 1,000 steps each.
    let mut g = c.benchmark_group("render/sessions");
    for (name, ix) in [("1000", index(1_000, 1)), ("1000000", many)] {
        let s = state(ix, false);
        let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
        g.bench_function(name, |b| b.iter(|| frame(&mut term, &s, &theme)));
    }
    g.finish();
    if std::env::var_os("AGENTDECK_BENCH_TAIL").is_some() {
        tail_cpu(&theme);
    }
    if std::env::var_os("AGENTDECK_BENCH_WATCH").is_some() {
        watch_latency();
    }
    if let Some(n) = std::env::var_os("AGENTDECK_BENCH_LOAD") {
        load_index(n.to_string_lossy().parse().unwrap());
    }
}

/// Records `steps` steps (4 events each, 1,000 steps an invocation) into a new SQLite store, then
/// times reading the whole index from it page by page, as the console does on opening.
fn load_index(steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("load.db")).unwrap();
    let written = Instant::now();
    for inv in 0..steps.div_ceil(1_000) {
        let id = format!("req-{inv:06}");
        store
            .begin_invocation(&InvocationStart {
                request_id: id.clone(),
                agent_id: "A".into(),
                agent_alias_id: "L".into(),
                session_id: format!("s-{inv:06}"),
                input_text: None,
                resumes: None,
                started_at: Utc::now(),
            })
            .unwrap();
        let events: Vec<TraceEvent> = (0..4_000)
            .map(|k| event(&format!("{id}-{}", k / 4), k))
            .collect();
        for batch in events.chunks(400) {
            store.append_trace(&id, batch, &[]).unwrap();
        }
    }
    let write_s = written.elapsed().as_secs_f64();
    let read = Instant::now();
    let mut ix = TraceIndex::default();
    let mut pages = 0;
    let mut slowest = Duration::ZERO;
    loop {
        let t = Instant::now();
        let page = store
            .trace_index(
                ix.cursor,
                &ix.running(),
                agentdeck::app::traces::INDEX_PAGE_EVENTS,
            )
            .unwrap();
        ix.apply(&page);
        slowest = slowest.max(t.elapsed());
        pages += 1;
        if !page.more {
            break;
        }
    }
    let searched = Instant::now();
    let hits = store.search_steps("thinking", 10).unwrap();
    assert_eq!(hits.len(), 10);
    let first_search = searched.elapsed();
    let searched = Instant::now();
    store.search_steps("step 4999", 10).unwrap();
    println!(
        "load: first search (indexes every event's text) {first_search:?}, next search {:?}",
        searched.elapsed()
    );
    println!(
        "load: {} steps written in {write_s:.1} s; index read in {:.2} s ({pages} pages, slowest {slowest:?}), {:.1} bytes/step",
        ix.steps.len(),
        read.elapsed().as_secs_f64(),
        ix.heap_bytes() as f64 / ix.steps.len().max(1) as f64
    );
}

/// This thread's CPU time (utime + stime), in clock ticks.
fn thread_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the command (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn event(tid: &str, n: usize) -> TraceEvent {
    TraceEvent::from_wire(serde_json::json!({
        "agentId": "A", "sessionId": "s", "eventTime": "2026-03-02T09:00:00.000000123Z",
        "trace": {"orchestrationTrace": {"modelInvocationOutput": {
            "traceId": tid, "rawResponse": {"content": format!("thinking about step {n} ").repeat(20)},
            "metadata": {"totalTimeMs": 10, "usage": {"inputTokens": 100, "outputTokens": 5}}}}}
    }))
}

/// Runs the console's side of the live tail (read changes every 50 ms, fold, draw what
/// changed) for `secs` while `writing` says whether a writer records 1,000 events a second.
fn console_cpu(store: &SqliteStore, theme: &Theme, secs: u64, writing: bool) -> f64 {
    let mut s = console();
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut fx = update(
        &mut s,
        Msg::Key(agentdeck::app::KeyInput {
            key: "2".parse().unwrap(),
            edit: None,
            at: t0(),
        }),
    );
    let before = thread_ticks();
    let start = Instant::now();
    let mut next = start;
    let mut followed = false;
    let mut reactions: Vec<Duration> = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        let woke = Instant::now();
        for f in std::mem::take(&mut fx) {
            if let Effect::LoadTraceIndex {
                tag,
                since,
                refresh,
            } = f
            {
                let result = store
                    .trace_index(since, &refresh, 20_000)
                    .map(Box::new)
                    .map_err(|e| e.to_string());
                fx.extend(update(&mut s, Msg::TraceIndexLoaded { tag, result }));
            }
        }
        if !followed && !s.traces.index.invocations.is_empty() {
            fx.extend(update(
                &mut s,
                Msg::Key(agentdeck::app::KeyInput {
                    key: "f".parse().unwrap(),
                    edit: None,
                    at: t0(),
                }),
            ));
            followed = true;
        }
        frame(&mut term, &s, theme);
        reactions.push(woke.elapsed());
        next += if writing {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(1)
        };
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        if writing {
            fx.extend(update(&mut s, Msg::StoreChanged));
        } else {
            fx.extend(update(&mut s, Msg::Tick(Utc::now())));
        }
    }
    let ticks = thread_ticks() - before;
    let hz = 100.0; // USER_HZ on Linux
    let cpu = ticks as f64 / hz / start.elapsed().as_secs_f64() * 100.0;
    reactions.sort();
    let pick = |q: f64| reactions[((reactions.len() - 1) as f64 * q) as usize];
    println!(
        "{}: store change -> new steps read, folded and drawn: median {:?}, p99 {:?}, max {:?} ({} wake-ups)",
        if writing { "tail" } else { "idle" },
        pick(0.5),
        pick(0.99),
        reactions.last().copied().unwrap_or_default(),
        reactions.len()
    );
    cpu
}

/// From a commit by another connection (as another process would write) to the new step read by
/// the console's side: the real file watcher (`runtime::watch`) says the store changed, the
/// index is read from its cursor. `gap` between commits: isolated (200 ms) and a stream (5 ms).
fn watch_latency() {
    for (label, gap, commits) in [("isolated", 200, 50), ("stream", 5, 400)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watch.db");
        let store = SqliteStore::open(&path).unwrap();
        let writer_store = SqliteStore::open(&path).unwrap();
        writer_store
            .begin_invocation(&InvocationStart {
                request_id: "req-w".into(),
                agent_id: "A".into(),
                agent_alias_id: "L".into(),
                session_id: "s-w".into(),
                input_text: None,
                resumes: None,
                started_at: Utc::now(),
            })
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _watcher = agentdeck::runtime::watch::watch_store(&path, tx).unwrap();
        let committed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
        let log = committed.clone();
        let writer = std::thread::spawn(move || {
            for n in 0..commits {
                std::thread::sleep(Duration::from_millis(gap));
                writer_store
                    .append_trace("req-w", &[event(&format!("w-{n}"), n)], &[])
                    .unwrap();
                log.lock().unwrap().push(Instant::now());
            }
        });
        let mut ix = TraceIndex::default();
        let mut seen = 0;
        let mut lat = Vec::new();
        while seen < commits {
            if rx.blocking_recv().is_none() {
                break;
            }
            let page = store.trace_index(ix.cursor, &ix.running(), 20_000).unwrap();
            ix.apply(&page);
            let now = Instant::now();
            let steps = ix.steps.len();
            let times = committed.lock().unwrap();
            for t in times.iter().take(steps).skip(seen) {
                lat.push(now.duration_since(*t));
            }
            seen = seen.max(steps.min(times.len()));
        }
        writer.join().unwrap();
        lat.sort();
        let pick = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
        println!(
            "watch ({label}, a commit every {gap} ms): commit -> step read by the console: median {:?}, p99 {:?}, max {:?} ({} steps)",
            pick(0.5),
            pick(0.99),
            lat.last().copied().unwrap_or_default(),
            lat.len()
        );
    }
}

fn tail_cpu(theme: &Theme) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tail.db");
    let store = SqliteStore::open(&path).unwrap();
    let writer_store = SqliteStore::open(&path).unwrap();
    writer_store
        .begin_invocation(&InvocationStart {
            request_id: "req-live".into(),
            agent_id: "A".into(),
            agent_alias_id: "L".into(),
            session_id: "s-live".into(),
            input_text: Some("go".into()),
            resumes: None,
            started_at: Utc::now(),
        })
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_w = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut n = 0usize;
        let start = Instant::now();
        let mut next = start;
        while !stop_w.load(std::sync::atomic::Ordering::Relaxed) {
            // 10 events every 10 ms: 1,000 a second, 4 events a step.
            let batch: Vec<TraceEvent> = (n..n + 10)
                .map(|k| event(&format!("req-live-{}", k / 4), k))
                .collect();
            writer_store.append_trace("req-live", &batch, &[]).unwrap();
            n += 10;
            next += Duration::from_millis(10);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        writer_store
            .finish_invocation(
                "req-live",
                &InvocationEnd {
                    outcome: Outcome::Finished,
                    ended_at: Utc::now(),
                    error: None,
                    final_response: None,
                    latency_ms: None,
                },
            )
            .unwrap();
        n as f64 / start.elapsed().as_secs_f64()
    });
    let tail = console_cpu(&store, theme, 20, true);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rate = writer.join().unwrap();
    println!("tail: writer {rate:.0} events/s; console thread {tail:.2}% of one core");
    let idle = console_cpu(&store, theme, 20, false);
    println!("idle: console thread {idle:.2}% of one core");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3));
    targets = render
}
criterion_main!(benches);
