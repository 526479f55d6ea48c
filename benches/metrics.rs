//! The metrics engine: the cost of one new fact with 1,000 and with 1,000,000 invocations held
//! (it should not grow: one cell per granularity is touched), a window switch (a snapshot)
//! over 1,000,000 invocations spread over a week (target: under 50 ms), and the CLI's cold
//! start: a fresh engine reading a SQLite store of many invocations (AGENTDECK_BENCH_COLD sets
//! how many; 200,000 by default, as building a 1,000,000-row file takes minutes on a busy box).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::cast_possible_wrap,
    clippy::cast_possible_truncation,
    clippy::many_single_char_names
)]

use std::hint::black_box;
use std::time::Instant;

use agentdeck::domain::metrics::{
    Engine, Filter, HOUR_MS, InvocationFact, MINUTE_MS, Settings, TaskEnd, Window,
};
use agentdeck::store::metrics::refresh;
use agentdeck::store::sqlite::SqliteStore;
use criterion::{Criterion, criterion_group, criterion_main};

/// 2026-03-02 09:00:00 UTC.
const NOW: i64 = 1_772_442_000_000;
const WEEK: i64 = 7 * 24 * HOUR_MS;

fn fact(i: u64) -> InvocationFact {
    // Spread over the last week, most recent last; 3 agents x 2 aliases x 2 models.
    let at = NOW - WEEK + 1 + ((i * 7_919) % (WEEK as u64 - 1)) as i64;
    InvocationFact {
        row: i as i64 + 1,
        request_id: String::new(),
        agent_id: ["AGENT1", "AGENT2", "AGENT3"][(i % 3) as usize].to_owned(),
        agent_alias_id: ["LIVE", "TEST"][(i / 3 % 2) as usize].to_owned(),
        model: Some(["model-a", "model-b"][(i / 6 % 2) as usize].to_owned()),
        ended_ms: Some(at),
        task: if i % 10 == 0 {
            TaskEnd::NotCompleted
        } else {
            TaskEnd::Completed
        },
        latency_ms: 200 + (i * 37 % 20_000) as i64,
        model_ms: 100 + (i * 13 % 9_000) as i64,
        tool_ms: (i * 17 % 3_000) as i64,
        human_ms: (i % 5 == 0).then_some((i * 101 % 600_000) as i64),
        input_tokens: 1_000 + (i % 500) as i64,
        output_tokens: 100 + (i % 50) as i64,
    }
}

fn engine_with(n: u64) -> Engine {
    let mut e = Engine::new(Settings::default());
    e.advance(NOW);
    for i in 0..n {
        e.add_invocation(&fact(i));
    }
    e
}

fn update(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics_update");
    for held in [1_000u64, 1_000_000] {
        let mut e = engine_with(held);
        let mut i = held;
        g.bench_function(format!("add_invocation_with_{held}_held"), |b| {
            b.iter(|| {
                // A fact in the current minute, as a live console sees them.
                let mut f = fact(i);
                f.ended_ms = Some(NOW - 1);
                e.add_invocation(black_box(&f));
                i += 1;
            });
        });
    }
    g.finish();
}

fn switch(c: &mut Criterion) {
    let started = Instant::now();
    let e = engine_with(1_000_000);
    eprintln!("fed 1,000,000 facts in {:?}", started.elapsed());
    let mut g = c.benchmark_group("metrics_window_switch_1m");
    g.sample_size(20);
    for w in Window::ALL {
        g.bench_function(w.as_str(), |b| {
            b.iter(|| black_box(e.snapshot(w, &Filter::default(), NOW)));
        });
    }
    g.bench_function("7d_one_agent", |b| {
        let f = Filter {
            agent: Some("AGENT2".into()),
            ..Filter::default()
        };
        b.iter(|| black_box(e.snapshot(Window::D7, &f, NOW)));
    });
    g.finish();
}

fn cold_start(c: &mut Criterion) {
    let n: i64 = std::env::var("AGENTDECK_BENCH_COLD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("cold.db");
    drop(SqliteStore::open(&path).unwrap());
    let started = Instant::now();
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO invocations (request_id, agent_id, agent_alias_id, session_id, \
                     started_at_ms, ended_at_ms, outcome, final_response, latency_ms, \
                     input_tokens, output_tokens, model, model_ms, tool_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .unwrap();
            for i in 0..n {
                let f = fact(i as u64);
                let end = f.ended_ms.unwrap();
                st.execute(rusqlite::params![
                    format!("req-{i:08}"),
                    f.agent_id,
                    f.agent_alias_id,
                    format!("session-{}", i / 4),
                    end - f.latency_ms,
                    end,
                    if f.task == TaskEnd::Completed {
                        "finished"
                    } else {
                        "failed"
                    },
                    (f.task == TaskEnd::Completed).then_some("done"),
                    f.latency_ms,
                    f.input_tokens,
                    f.output_tokens,
                    f.model,
                    f.model_ms,
                    f.tool_ms,
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    eprintln!("wrote {n} invocations in {:?}", started.elapsed());
    let store = SqliteStore::open(&path).unwrap();
    let mut g = c.benchmark_group("metrics_cold_start");
    g.sample_size(10);
    g.bench_function(format!("refresh_and_snapshot_{n}"), |b| {
        b.iter(|| {
            let mut e = Engine::new(Settings::default());
            e.advance(NOW + MINUTE_MS);
            refresh(&store, &mut e).unwrap();
            black_box(e.snapshot(Window::H1, &Filter::default(), NOW))
        });
    });
    g.finish();
}

criterion_group!(benches, update, switch, cold_start);
criterion_main!(benches);
