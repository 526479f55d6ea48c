#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Console benchmarks: the first frame from a store of 100,000 requests (10,000 open), and one
//! frame of the queue and of the detail with 10,000 open requests.
//!
//! Run: `cargo bench --bench console`.

use std::hint::black_box;
use std::path::Path;

use agentdeck::app::keymap::Keymap;
use agentdeck::app::update::sort_queue;
use agentdeck::app::{AppState, Msg, update};
use agentdeck::config::Config;
use agentdeck::domain::approval::ApprovalRequest;
use agentdeck::domain::validate::{self, SubmitContext};
use agentdeck::store::sqlite::SqliteStore;
use agentdeck::store::{ApprovalStore, StoredRequest};
use agentdeck::ui::theme::Theme;
use chrono::{Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const TOTAL: usize = 100_000;
const OPEN: usize = 10_000;

fn request(i: usize, config: &Config, open: bool) -> ApprovalRequest {
    let now = Utc::now();
    let raised = if open {
        now - Duration::seconds((i % 500) as i64)
    } else {
        now - Duration::days(2)
    };
    let doc = serde_json::json!({
        "agentId": format!("AGENT{}", i % 7),
        "agentAliasId": "PRODALIAS",
        "sessionId": format!("sess-{i:08}"),
        "eventTime": raised.to_rfc3339(),
        "rationale": "The customer asked for it and the invoice is approved in the ERP system.",
        "returnControl": {"invocationId": format!("inv-{i:08}"), "invocationInputs": [
            {"functionInvocationInput": {"actionGroup": "payments", "function": "transferFunds",
             "actionInvocationType": "USER_CONFIRMATION",
             "parameters": [{"name": "amount", "type": "number", "value": format!("{}.00", (i * 37) % 20_000)},
                            {"name": "account", "type": "string", "value": format!("prod-{}", i % 1000)},
                            {"name": "memo", "type": "string", "value": "quarterly vendor payment"}]}}]}
    });
    let ttl = |_: &str| 600;
    validate::submission(
        &doc,
        &SubmitContext {
            policy: &config.policy,
            now,
            ttl_secs: &ttl,
        },
    )
    .unwrap()
}

fn seeded(dir: &Path, config: &Config) -> std::path::PathBuf {
    let path = dir.join("bench.db");
    let store = SqliteStore::open(&path).unwrap();
    let all: Vec<ApprovalRequest> = (0..TOTAL)
        .map(|i| request(i, config, i % (TOTAL / OPEN) == 0))
        .collect();
    for chunk in all.chunks(10_000) {
        store.submit_batch(chunk, "bench").unwrap();
    }
    store.expire_due(Utc::now(), "bench").unwrap();
    path
}

fn state_with(config: &Config, rows: Vec<agentdeck::store::QueueRow>) -> AppState {
    let mut state = AppState::new(
        Keymap::with_overrides(&config.keys).unwrap(),
        config.policy.clone(),
        "bench".into(),
        "sqlite:bench.db".into(),
        Utc::now(),
    );
    update(
        &mut state,
        Msg::Resize {
            width: 120,
            height: 40,
        },
    );
    let tag = agentdeck::app::update::init(&mut state)
        .into_iter()
        .find_map(|fx| match fx {
            agentdeck::app::Effect::LoadQueue { tag } => Some(tag),
            _ => None,
        })
        .unwrap();
    update(
        &mut state,
        Msg::QueueLoaded {
            tag,
            result: Ok(rows),
        },
    );
    state
}

fn benches(c: &mut Criterion) {
    let config = Config::defaults().unwrap();
    let theme = Theme::builtin("dark").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = seeded(dir.path(), &config);

    c.bench_function("first_frame_100k_store_10k_open", |b| {
        b.iter(|| {
            let store = SqliteStore::open(&path).unwrap();
            let mut rows = store.open_queue(Utc::now()).unwrap();
            assert_eq!(rows.len(), OPEN);
            sort_queue(&mut rows);
            let state = state_with(&config, rows);
            let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
            term.draw(|f| {
                black_box(agentdeck::ui::render(f, &state, &theme));
            })
            .unwrap();
        });
    });

    let store = SqliteStore::open(&path).unwrap();
    let rows = store.open_queue(Utc::now()).unwrap();
    let mut state = state_with(&config, rows);
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    c.bench_function("frame_queue_10k_open_120x40", |b| {
        b.iter(|| {
            term.draw(|f| {
                black_box(agentdeck::ui::render(f, &state, &theme));
            })
            .unwrap();
        });
    });

    let id = state.queue[0].id.clone();
    let stored: StoredRequest = store.get(&id, &config.policy, Utc::now()).unwrap();
    let effects = update(&mut state, Msg::Key(key("enter")));
    let tag = effects
        .iter()
        .find_map(|fx| match fx {
            agentdeck::app::Effect::LoadDetail { tag, .. } => Some(*tag),
            _ => None,
        })
        .unwrap();
    update(
        &mut state,
        Msg::DetailLoaded {
            tag,
            result: Ok(Box::new(stored)),
        },
    );
    c.bench_function("frame_detail_120x40", |b| {
        b.iter(|| {
            term.draw(|f| {
                black_box(agentdeck::ui::render(f, &state, &theme));
            })
            .unwrap();
        });
    });
}

fn key(name: &str) -> agentdeck::app::KeyInput {
    agentdeck::app::KeyInput {
        key: name.parse().unwrap(),
        edit: Some(agentdeck::app::Edit::Enter),
        at: Utc::now(),
    }
}

criterion_group!(console, benches);
criterion_main!(console);
