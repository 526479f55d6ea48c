//! The traces explorer's read side on a real SQLite file: the incremental index pages
//! (`TraceStore::trace_index`) folded into `TraceIndex` (kinds, collaborator depth, figures,
//! running invocations refreshed until they end), the full-text search (`search_steps`), and
//! migrations 3-4, 7 and 8 over a file written before them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;

use agentdeck::app::trace_index::{StepFilter, TraceIndex};
use agentdeck::domain::step_kind::StepKinds;
use agentdeck::domain::trace::TraceEvent;
use agentdeck::store::run::IndexCursor;
use agentdeck::store::sqlite::SqliteStore;
use agentdeck::store::{InvocationEnd, InvocationStart, Outcome, TraceStore};
use common::at;
use rusqlite::Connection;
use serde_json::{Value, json};

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("deck.db")).unwrap()
}

fn start(s: &SqliteStore, id: &str, session: &str, secs: i64) {
    s.begin_invocation(&InvocationStart {
        request_id: id.into(),
        agent_id: "AGENT".into(),
        agent_alias_id: "ALIAS".into(),
        session_id: session.into(),
        input_text: Some("hi".into()),
        resumes: None,
        started_at: at(secs),
    })
    .unwrap();
}

fn finish(s: &SqliteStore, id: &str, outcome: Outcome) {
    s.finish_invocation(
        id,
        &InvocationEnd {
            outcome,
            ended_at: at(100),
            error: None,
            final_response: None,
            latency_ms: Some(1234),
        },
    )
    .unwrap();
}

fn part(trace: &Value, second: u32, chain: usize) -> TraceEvent {
    let chain: Vec<Value> = (0..chain)
        .map(
            |i| json!({"agentAliasArn": format!("arn:aws:bedrock:us-east-1:1:agent-alias/A{i}/L")}),
        )
        .collect();
    TraceEvent::from_wire(json!({
        "agentId": "AGENT", "agentAliasId": "ALIAS", "sessionId": "s",
        "eventTime": format!("2026-03-02T09:00:{second:02}.000000000Z"),
        "callerChain": chain,
        "trace": trace,
    }))
}

fn model_input(tid: &str, prompt: &str, second: u32) -> TraceEvent {
    part(
        &json!({"orchestrationTrace": {"modelInvocationInput": {"traceId": tid, "text": prompt, "type": "ORCHESTRATION"}}}),
        second,
        1,
    )
}

fn model_output(tid: &str, second: u32, tokens: i64) -> TraceEvent {
    part(
        &json!({"orchestrationTrace": {"modelInvocationOutput": {"traceId": tid,
            "rawResponse": {"content": "thinking"},
            "metadata": {"startTime": format!("2026-03-02T09:00:{second:02}.000Z"),
                         "endTime": format!("2026-03-02T09:00:{:02}.500Z", second + 1),
                         "usage": {"inputTokens": tokens, "outputTokens": tokens / 10}}}}}),
        second,
        1,
    )
}

fn roc_call(tid: &str, second: u32) -> TraceEvent {
    part(
        &json!({"orchestrationTrace": {"invocationInput": {"traceId": tid, "invocationType": "ACTION_GROUP",
            "actionGroupInvocationInput": {"actionGroupName": "payments", "function": "transfer",
                "executionType": "RETURN_CONTROL", "invocationId": "inv-1"}}}}),
        second,
        1,
    )
}

fn kb_lookup(tid: &str, second: u32) -> TraceEvent {
    part(
        &json!({"orchestrationTrace": {"invocationInput": {"traceId": tid, "invocationType": "KNOWLEDGE_BASE",
            "knowledgeBaseLookupInput": {"text": "refund policy", "knowledgeBaseId": "KB1"}}}}),
        second,
        2,
    )
}

fn failure(tid: &str, second: u32) -> TraceEvent {
    part(
        &json!({"failureTrace": {"traceId": tid, "failureReason": "model timed out", "failureCode": 500}}),
        second,
        1,
    )
}

/// The events as a file of the current schema holds them: `request id/seq` and the event's
/// number in the order they were written (what `downgrade_to_v9` gives each as its id).
const EVENTS_IN_ORDER: &str = "SELECT i.request_id || '/' || (b.first_seq + s.key), \
     row_number() OVER (ORDER BY b.id, s.key) FROM trace_blocks b, json_each(b.steps) s \
     JOIN invocations i ON i.id = b.inv ORDER BY b.id, s.key";

/// Each block, by its invocation's request id and first seq: after migration 10, an event
/// of an older file is a block of its own with the event's id.
const BLOCKS: &str = "SELECT i.request_id || '/' || b.first_seq, b.id FROM trace_blocks b \
     JOIN invocations i ON i.id = b.inv ORDER BY b.id";

/// Turns a file of the current schema back into what version 7 wrote: invocations keyed by
/// request id (their `id` kept as the rowid), and events, steps, chunks and marks keyed by the
/// request id. The older-file tests start from it.
fn downgrade_to_v7(raw: &Connection) {
    common::downgrade_to_v9(raw);
    raw.execute_batch(
        "PRAGMA foreign_keys = OFF;
         CREATE TABLE inv7 (
            request_id TEXT PRIMARY KEY NOT NULL, agent_id TEXT NOT NULL,
            agent_alias_id TEXT NOT NULL, session_id TEXT NOT NULL, input_text TEXT,
            resumes TEXT, started_at_ms INTEGER NOT NULL, ended_at_ms INTEGER,
            outcome TEXT NOT NULL, error TEXT, final_response TEXT, latency_ms INTEGER,
            input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
            events INTEGER NOT NULL DEFAULT 0, steps INTEGER NOT NULL DEFAULT 0,
            chunks INTEGER NOT NULL DEFAULT 0, model TEXT,
            model_ms INTEGER NOT NULL DEFAULT 0, tool_ms INTEGER NOT NULL DEFAULT 0) STRICT;
         INSERT INTO inv7 (rowid, request_id, agent_id, agent_alias_id, session_id, input_text,
            resumes, started_at_ms, ended_at_ms, outcome, error, final_response, latency_ms,
            input_tokens, output_tokens, events, steps, chunks, model, model_ms, tool_ms)
            SELECT id, request_id, agent_id, agent_alias_id, session_id, input_text, resumes,
            started_at_ms, ended_at_ms, outcome, error, final_response, latency_ms, input_tokens,
            output_tokens, events, steps, chunks, model, model_ms, tool_ms FROM invocations;
         CREATE TABLE steps7 (
            request_id TEXT NOT NULL REFERENCES invocations (request_id),
            step INTEGER NOT NULL, trace_id TEXT NOT NULL, kinds TEXT NOT NULL,
            events INTEGER NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
            rationale TEXT, input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0, meta_start_ns INTEGER, meta_end_ns INTEGER,
            total_time_ms INTEGER, first_time_ns INTEGER, last_time_ns INTEGER,
            kind_set INTEGER NOT NULL DEFAULT 0, depth INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (request_id, step)) STRICT, WITHOUT ROWID;
         INSERT INTO steps7 SELECT i.request_id, s.step, s.trace_id, s.kinds, s.events,
            s.first_seq, s.last_seq, s.rationale, s.input_tokens, s.output_tokens,
            s.meta_start_ns, s.meta_end_ns, s.total_time_ms, s.first_time_ns, s.last_time_ns,
            s.kind_set, s.depth FROM trace_steps s JOIN invocations i ON i.id = s.inv;
         CREATE TABLE events7 (
            request_id TEXT NOT NULL REFERENCES invocations (request_id),
            seq INTEGER NOT NULL, step INTEGER NOT NULL, kind TEXT NOT NULL, raw TEXT NOT NULL)
            STRICT;
         INSERT INTO events7 (rowid, request_id, seq, step, kind, raw)
            SELECT e.id, i.request_id, e.seq, e.step, e.kind, e.raw
            FROM trace_events e JOIN invocations i ON i.id = e.inv;
         CREATE TABLE chunks7 (
            request_id TEXT NOT NULL REFERENCES invocations (request_id),
            seq INTEGER NOT NULL, text TEXT NOT NULL, PRIMARY KEY (request_id, seq)) STRICT;
         INSERT INTO chunks7 SELECT i.request_id, c.seq, c.text
            FROM chunks c JOIN invocations i ON i.id = c.inv;
         DROP TABLE trace_steps; DROP TABLE trace_events; DROP TABLE chunks;
         DROP TABLE invocations;
         ALTER TABLE inv7 RENAME TO invocations;
         ALTER TABLE steps7 RENAME TO trace_steps;
         ALTER TABLE events7 RENAME TO trace_events;
         ALTER TABLE chunks7 RENAME TO chunks;
         CREATE INDEX invocations_session ON invocations (session_id, started_at_ms, request_id);
         CREATE INDEX invocations_recent ON invocations (started_at_ms, request_id);
         CREATE UNIQUE INDEX trace_steps_trace ON trace_steps (request_id, trace_id);
         CREATE UNIQUE INDEX trace_events_seq ON trace_events (request_id, seq);
         PRAGMA user_version = 7;",
    )
    .unwrap();
}

fn catch_up(s: &SqliteStore, ix: &mut TraceIndex, limit: usize) -> usize {
    let mut pages = 0;
    loop {
        let page = s.trace_index(ix.cursor, &ix.running(), limit).unwrap();
        ix.apply(&page);
        pages += 1;
        if !page.more {
            return pages;
        }
    }
}

#[test]
fn the_index_is_read_in_pages_and_kept_current_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    start(&s, "req-1", "s-1", 0);
    start(&s, "req-2", "s-2", 10);
    let prompt = "You are a payments agent.\nTransfer funds only after \"approval\".";
    s.append_trace(
        "req-1",
        &[
            model_input("req-1-0", prompt, 1),
            model_output("req-1-0", 1, 1000),
            roc_call("req-1-1", 3),
        ],
        &[],
    )
    .unwrap();
    s.append_trace(
        "req-2",
        &[
            model_input("req-2-0", "collaborate", 11),
            kb_lookup("req-2-1", 12),
            failure("req-2-2", 13),
        ],
        &[],
    )
    .unwrap();
    finish(&s, "req-2", Outcome::Failed);

    let mut ix = TraceIndex::default();
    // Two events a page: three full pages for six events, then an empty one that says there is
    // no more; the same index as one page would give.
    assert_eq!(catch_up(&s, &mut ix, 2), 4);
    assert_eq!(ix.invocations.len(), 2);
    assert_eq!(ix.steps.len(), 5);
    assert_eq!(ix.sessions.len(), 2);
    // Most recently active first.
    assert_eq!(
        ix.names.name(ix.sessions[ix.recent[0] as usize].session),
        "s-2"
    );

    let r1 = ix.invocation_by_request("req-1").unwrap();
    let p = ix.step_pos(r1, 1).unwrap();
    assert!(ix.step_kinds(p).contains(StepKinds::MODEL_INPUT));
    assert!(ix.step_kinds(p).contains(StepKinds::MODEL_OUTPUT));
    assert_eq!(ix.steps.duration_ms[p], 1500);
    assert_eq!((ix.steps.tokens_in[p], ix.steps.tokens_out[p]), (1000, 100));
    let p = ix.step_pos(r1, 2).unwrap();
    assert!(
        ix.step_kinds(p)
            .contains(StepKinds::ACTION_GROUP.with(StepKinds::RETURN_CONTROL))
    );
    // Step 2 started 2 s after the invocation's first step.
    assert_eq!(ix.steps.start_ms[p], 2000);
    let r2 = ix.invocation_by_request("req-2").unwrap();
    let kb = ix.step_pos(r2, 2).unwrap();
    assert!(ix.step_kinds(kb).contains(StepKinds::KNOWLEDGE_BASE));
    assert_eq!(
        ix.steps.depth[kb], 1,
        "a two-element callerChain is a collaborator"
    );
    assert_eq!(ix.steps.depth[ix.step_pos(r2, 1).unwrap()], 0);
    assert_eq!(ix.invocations[r2 as usize].outcome, Outcome::Failed);
    assert_eq!(ix.running(), vec!["req-1".to_owned()]);

    // Nothing new: an empty page, nothing changes.
    let generation = ix.generation;
    catch_up(&s, &mut ix, 100);
    assert_eq!(ix.generation, generation);

    // The live invocation grows: step 2 gets its observation, a step 3 starts; then it ends.
    s.append_trace(
        "req-1",
        &[roc_call("req-1-1", 4), model_output("req-1-2", 5, 50)],
        &[],
    )
    .unwrap();
    let page = s.trace_index(ix.cursor, &ix.running(), 100).unwrap();
    assert_eq!(
        page.steps.iter().map(|x| x.step).collect::<Vec<_>>(),
        vec![2, 3],
        "only the steps touched since the cursor"
    );
    ix.apply(&page);
    assert_eq!(ix.invocations[r1 as usize].steps.len(), 3);
    assert_eq!(ix.steps.len(), 6);
    finish(&s, "req-1", Outcome::WaitingForHuman);
    catch_up(&s, &mut ix, 100);
    assert_eq!(
        ix.invocations[r1 as usize].outcome,
        Outcome::WaitingForHuman
    );
    assert!(ix.running().is_empty());

    // Filters over the index.
    let f = StepFilter::parse("failed").unwrap();
    assert_eq!(f.apply(&ix, None), vec![ix.step_pos(r2, 3).unwrap() as u32]);
    let f = StepFilter::parse("kind:kb session:s-2").unwrap();
    assert_eq!(f.apply(&ix, None), vec![kb as u32]);
    let f = StepFilter::parse("waiting").unwrap();
    assert_eq!(f.apply(&ix, None).len(), 3);
    // The step a traceId names (the runner links a request to it).
    assert_eq!(s.step_of_trace("req-1", "req-1-1").unwrap(), Some(2));
    assert_eq!(s.step_of_trace("req-1", "req-9-9").unwrap(), None);
}

#[test]
fn search_finds_words_in_any_event_and_reads_no_syntax_from_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    start(&s, "req-1", "s-1", 0);
    s.append_trace(
        "req-1",
        &[
            model_input("req-1-0", "Line one\nTransfer \"approval\" needed", 1),
            model_output("req-1-0", 1, 10),
            kb_lookup("req-1-1", 2),
            failure("req-1-2", 3),
        ],
        &[],
    )
    .unwrap();
    let hits = |q: &str| s.search_steps(q, 100).unwrap();
    // A word after an escaped newline in the JSON is still a word.
    assert_eq!(hits("transfer"), vec![("req-1".to_owned(), 1)]);
    // Every word must match, each as a prefix.
    assert_eq!(hits("refund pol"), vec![("req-1".to_owned(), 2)]);
    assert_eq!(hits("refund transfer"), vec![]);
    assert_eq!(hits("timed"), vec![("req-1".to_owned(), 3)]);
    // FTS5 syntax in the input is just text.
    assert_eq!(hits("\"approval"), vec![("req-1".to_owned(), 1)]);
    assert_eq!(hits("NOT OR AND ( *"), vec![]);
    assert_eq!(hits("   "), vec![]);
    assert_eq!(s.search_steps("a", 1).unwrap().len(), 1);
    // Events recorded after a search are indexed by the next one.
    start(&s, "req-2", "s-2", 5);
    s.append_trace("req-2", &[failure("req-2-0", 6)], &[])
        .unwrap();
    assert_eq!(
        hits("timed"),
        vec![("req-1".to_owned(), 3), ("req-2".to_owned(), 1)]
    );
}

#[test]
fn migrations_3_and_4_index_what_an_older_file_holds() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        start(&s, "req-old", "s-old", 0);
        s.append_trace(
            "req-old",
            &[
                model_input("req-old-0", "ancient prompt", 1),
                failure("req-old-1", 2),
            ],
            &[],
        )
        .unwrap();
    }
    // Make it what version 2 wrote: no step kinds, no depth, no text index (and none of the
    // later metrics columns either; the events' step index that 6 drops and the columns that 7
    // drops).
    let raw = Connection::open(dir.path().join("deck.db")).unwrap();
    downgrade_to_v7(&raw);
    raw.execute_batch(
        "ALTER TABLE trace_events ADD COLUMN trace_id TEXT; \
         ALTER TABLE trace_events ADD COLUMN event_time TEXT; \
         ALTER TABLE trace_events ADD COLUMN summary TEXT NOT NULL DEFAULT ''; \
         CREATE INDEX trace_events_step ON trace_events (request_id, step, seq); \
         DROP TABLE action_marks; DROP INDEX resumable_invocation; \
         ALTER TABLE invocations DROP COLUMN model; ALTER TABLE invocations DROP COLUMN model_ms; \
         ALTER TABLE invocations DROP COLUMN tool_ms; \
         DROP TABLE trace_text_state; DROP TABLE trace_text; \
         ALTER TABLE trace_steps DROP COLUMN kind_set; ALTER TABLE trace_steps DROP COLUMN depth; \
         PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(raw);
    let s = open(dir.path());
    assert_eq!(
        s.search_steps("ancient", 10).unwrap(),
        vec![("req-old".to_owned(), 1)]
    );
    let mut ix = TraceIndex::default();
    catch_up(&s, &mut ix, 100);
    let inv = ix.invocation_by_request("req-old").unwrap();
    // Kinds of steps written before the set was stored come from their event kind names.
    assert!(
        ix.step_kinds(ix.step_pos(inv, 1).unwrap())
            .contains(StepKinds::MODEL_INPUT)
    );
    assert!(
        ix.step_kinds(ix.step_pos(inv, 2).unwrap())
            .contains(StepKinds::FAILURE)
    );
    // The second event, a block of its own: block 2, place 0.
    assert_eq!(
        ix.cursor,
        IndexCursor {
            events: 2 << 12,
            invocations: 1
        }
    );
}

#[test]
fn migration_7_keeps_every_event_its_rowid_and_what_its_json_says() {
    let dir = tempfile::tempdir().unwrap();
    let events = [
        model_input("req-7-0", "seventh prompt", 1),
        model_output("req-7-0", 2, 1200),
        failure("req-7-1", 3),
    ];
    let before = {
        let s = open(dir.path());
        start(&s, "req-7", "s-7", 0);
        s.append_trace("req-7", &events, &[]).unwrap();
        // Indexes the text of every event so far (by rowid).
        assert_eq!(
            s.search_steps("seventh", 10).unwrap(),
            vec![("req-7".to_owned(), 1)]
        );
        s.events("req-7", 0, 10).unwrap()
    };
    assert_eq!(before.len(), 3);
    assert_eq!(before[2].summary, "[500] model timed out");
    assert_eq!(
        before[0].event_time.as_deref(),
        Some("2026-03-02T09:00:01Z")
    );
    // Make the table what version 6 wrote: with traceId, time and summary copied into columns.
    let raw = Connection::open(dir.path().join("deck.db")).unwrap();
    downgrade_to_v7(&raw);
    raw.execute_batch(
        "ALTER TABLE trace_events ADD COLUMN trace_id TEXT; \
         ALTER TABLE trace_events ADD COLUMN event_time TEXT; \
         ALTER TABLE trace_events ADD COLUMN summary TEXT NOT NULL DEFAULT ''; \
         PRAGMA user_version = 6;",
    )
    .unwrap();
    for e in &before {
        raw.execute(
            "UPDATE trace_events SET trace_id = ?3, event_time = ?4, summary = ?5 \
             WHERE request_id = ?1 AND seq = ?2",
            rusqlite::params![e.request_id, e.seq, e.trace_id, e.event_time, e.summary],
        )
        .unwrap();
    }
    let rowids = |c: &Connection| -> Vec<i64> {
        c.prepare("SELECT rowid FROM trace_events ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let old_rowids = rowids(&raw);
    drop(raw);

    let s = open(dir.path());
    let raw = Connection::open(dir.path().join("deck.db")).unwrap();
    // 7 slims the rows, then 8 keys them by the invocation's integer id (the rowid kept as id);
    // 9 rewrites two tables' checks; 10 makes each event a block of its own (its id kept); 11
    // packs each block's JSON; 12 drops the audit log's unused index by request.
    assert_eq!(common::schema_version(&raw), 12);
    let columns: Vec<String> = raw
        .prepare("SELECT name FROM pragma_table_info('trace_blocks')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        columns,
        ["id", "inv", "first_seq", "n", "steps", "kinds", "raw"]
    );
    let block_ids: Vec<i64> = raw
        .prepare("SELECT id FROM trace_blocks ORDER BY first_seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(block_ids, old_rowids);
    // Every event reads back as it did, its traceId, time and summary now from its JSON.
    assert_eq!(s.events("req-7", 0, 10).unwrap(), before);
    // The search index (emptied by 10) finds what it found, and indexes what follows.
    assert_eq!(
        s.search_steps("seventh", 10).unwrap(),
        vec![("req-7".to_owned(), 1)]
    );
    s.append_trace("req-7", &[model_input("req-7-2", "eighth prompt", 4)], &[])
        .unwrap();
    assert_eq!(
        s.search_steps("eighth", 10).unwrap(),
        vec![("req-7".to_owned(), 3)]
    );
}

/// Everything the read side gives for one invocation.
type Readback = (
    Option<agentdeck::store::InvocationRecord>,
    Vec<agentdeck::store::StepRow>,
    Vec<agentdeck::store::StoredEvent>,
    Vec<agentdeck::store::StoredEvent>,
    String,
    Vec<agentdeck::store::ActionMark>,
);

fn read_back(s: &SqliteStore, id: &str) -> Readback {
    (
        s.invocation(id).unwrap(),
        s.steps(id, 0, 100).unwrap(),
        s.events(id, 0, 100).unwrap(),
        s.step_events(id, 1).unwrap(),
        s.chunk_text(id).unwrap(),
        s.action_marks(id).unwrap(),
    )
}

fn ids(c: &Connection, sql: &str) -> Vec<(String, i64)> {
    c.prepare(sql)
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn migration_8_keys_traces_by_the_invocations_id_and_every_read_gives_what_it_gave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deck.db");
    let (before, old_ids, old_events, old_index, old_search) = {
        let s = open(dir.path());
        start(&s, "req-a", "s-8", 0);
        start(&s, "req-b", "s-8", 1);
        s.append_trace(
            "req-a",
            &[
                model_input("req-a-0", "octave prompt", 1),
                model_output("req-a-0", 2, 700),
            ],
            &["Hello ".into()],
        )
        .unwrap();
        s.append_trace("req-b", &[kb_lookup("req-b-0", 3)], &[])
            .unwrap();
        // A later batch continues step 1 of req-a and opens step 2.
        s.append_trace(
            "req-a",
            &[roc_call("req-a-0", 4), failure("req-a-1", 5)],
            &["world".into()],
        )
        .unwrap();
        finish(&s, "req-b", Outcome::Finished);
        s.mark_action(&agentdeck::store::ActionMark {
            request_id: "req-a".into(),
            step: 1,
            trace_id: "req-a-0".into(),
            appropriate: true,
            note: Some("fine".into()),
            who: "dana".into(),
            at: at(50),
        })
        .unwrap();
        let search = s.search_steps("octave", 10).unwrap();
        assert_eq!(search, vec![("req-a".to_owned(), 1)]);
        let mut ix = TraceIndex::default();
        catch_up(&s, &mut ix, 2);
        let raw = Connection::open(&path).unwrap();
        (
            [read_back(&s, "req-a"), read_back(&s, "req-b")],
            ids(&raw, "SELECT request_id, id FROM invocations ORDER BY id"),
            ids(&raw, EVENTS_IN_ORDER),
            (
                ix.cursor.invocations,
                ix.invocation_by_request("req-a").is_some(),
                ix.steps.len(),
            ),
            search,
        )
    };
    assert_eq!(before[0].1.len(), 2);
    assert_eq!(before[0].2.len(), 4);
    assert_eq!(before[0].4, "Hello world");
    assert_eq!(before[0].5.len(), 1);

    let raw = Connection::open(&path).unwrap();
    downgrade_to_v7(&raw);
    // The downgrade really made version 7's layout: events keyed by request id.
    assert_eq!(
        ids(
            &raw,
            "SELECT request_id || '/' || seq, rowid FROM trace_events ORDER BY rowid"
        ),
        old_events
    );
    drop(raw);

    let s = open(dir.path());
    let raw = Connection::open(&path).unwrap();
    assert_eq!(common::schema_version(&raw), 12);
    // Each invocation keeps its old rowid as its id, each event its rowid as its id (through
    // 8), then as the id of the block it becomes (10).
    assert_eq!(
        ids(&raw, "SELECT request_id, id FROM invocations ORDER BY id"),
        old_ids
    );
    assert_eq!(ids(&raw, BLOCKS), old_events);
    let fk_problems: i64 = raw
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(fk_problems, 0);
    let integrity: String = raw
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    // Every read gives what it gave before.
    assert_eq!([read_back(&s, "req-a"), read_back(&s, "req-b")], before);
    assert_eq!(s.search_steps("octave", 10).unwrap(), old_search);
    let mut ix = TraceIndex::default();
    catch_up(&s, &mut ix, 2);
    assert_eq!(
        (
            ix.cursor.invocations,
            ix.invocation_by_request("req-a").is_some(),
            ix.steps.len()
        ),
        old_index
    );
    // The last event, a block of its own.
    let last = i64::try_from(old_events.len()).unwrap();
    assert_eq!(ix.cursor.events, u64::try_from(last << 12).unwrap());
    // Writing goes on where it left off: seq 5 of req-a, and a new invocation after the others.
    s.append_trace("req-a", &[model_input("req-a-2", "nonet prompt", 6)], &[])
        .unwrap();
    assert_eq!(s.events("req-a", 4, 10).unwrap()[0].seq, 5);
    assert_eq!(s.steps("req-a", 2, 10).unwrap()[0].step, 3);
    assert_eq!(
        s.search_steps("nonet", 10).unwrap(),
        vec![("req-a".to_owned(), 3)]
    );
    start(&s, "req-c", "s-8", 9);
    let c_id: i64 = raw
        .query_row(
            "SELECT id FROM invocations WHERE request_id = 'req-c'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(old_ids.iter().all(|(_, id)| *id < c_id));
}

#[test]
fn a_step_continued_in_a_later_batch_is_found_whoever_wrote_between() {
    let dir = tempfile::tempdir().unwrap();
    let one = open(dir.path());
    let other = open(dir.path());
    start(&one, "req-k", "s-k", 0);
    one.append_trace("req-k", &[model_input("t-1", "first", 1)], &[])
        .unwrap();
    // Same handle, next batch: t-1 goes on, t-2 is new.
    one.append_trace(
        "req-k",
        &[model_output("t-1", 2, 10), model_input("t-2", "second", 3)],
        &[],
    )
    .unwrap();
    // Another handle starts t-3; the first handle's next batch continues it.
    other
        .append_trace("req-k", &[model_input("t-3", "third", 4)], &[])
        .unwrap();
    one.append_trace(
        "req-k",
        &[model_output("t-3", 5, 30), model_output("t-2", 6, 20)],
        &[],
    )
    .unwrap();
    let steps: Vec<(String, u64)> = one
        .steps("req-k", 0, 10)
        .unwrap()
        .into_iter()
        .map(|s| (s.trace_id, s.events))
        .collect();
    assert_eq!(
        steps,
        [("t-1".into(), 2), ("t-2".into(), 2), ("t-3".into(), 2)]
    );
}

#[test]
fn a_listener_hears_each_trace_commit_until_it_declines() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let (kept, once) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let k = Arc::clone(&kept);
    agentdeck::store::sqlite::on_trace_commit(move || {
        k.fetch_add(1, Ordering::SeqCst);
        true
    });
    let o = Arc::clone(&once);
    agentdeck::store::sqlite::on_trace_commit(move || {
        o.fetch_add(1, Ordering::SeqCst);
        false
    });
    start(&s, "req-1", "s-1", 0);
    let before = kept.load(Ordering::SeqCst);
    assert!(before >= 1, "the start's commit was heard");
    s.append_trace("req-1", &[model_input("req-1-0", "p", 1)], &[])
        .unwrap();
    assert!(kept.load(Ordering::SeqCst) > before);
    // The one that declined was called once and then dropped.
    assert_eq!(once.load(Ordering::SeqCst), 1);
}

/// A batch whose JSON passes a block's size is written as several blocks (`trace_blocks`): 120
/// events of three steps taken in turn, each with a prompt of about a kilobyte.
fn write_big_batch(s: &SqliteStore) -> Vec<TraceEvent> {
    start(s, "req-big", "s-big", 0);
    let filler = "lorem ipsum ".repeat(80);
    let events: Vec<TraceEvent> = (0..120u32)
        .map(|i| {
            model_input(
                &format!("big-{}", i % 3),
                &format!("token{} {filler}", i + 1),
                i % 60,
            )
        })
        .collect();
    s.append_trace("req-big", &events, &["done".into()])
        .unwrap();
    events
}

#[test]
fn a_batch_past_a_blocks_size_is_split_and_every_read_crosses_the_seams() {
    use agentdeck::store::ApprovalStore as _;
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let written = write_big_batch(&s);
    let raw = Connection::open(dir.path().join("deck.db")).unwrap();
    let blocks: Vec<(i64, i64)> = raw
        .prepare("SELECT first_seq, n FROM trace_blocks ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // Several blocks, each starting where the last ended.
    assert!(blocks.len() >= 2, "{blocks:?}");
    let mut next = 1;
    for (first, n) in &blocks {
        assert_eq!(*first, next);
        next += n;
    }
    assert_eq!(next, 121);
    assert_eq!(s.counts().unwrap().trace_events, 120);

    // All of them, in order, as written.
    let all = s.events("req-big", 0, 500).unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=120).collect::<Vec<_>>()
    );
    for (stored, event) in all.iter().zip(&written) {
        assert_eq!(&stored.raw, event.raw.value().as_ref());
        assert_eq!(stored.step, (stored.seq - 1) % 3 + 1);
        assert_eq!(stored.kind, "orchestration/model-input");
    }
    // A page from the middle of a block, across a seam, and past the end.
    let seam = u64::try_from(blocks[1].0).unwrap();
    let page = s.events("req-big", seam - 3, 7).unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (seam - 2..=seam + 4).collect::<Vec<_>>()
    );
    assert!(s.events("req-big", 120, 5).unwrap().is_empty());
    assert!(s.events("req-big", 0, 0).unwrap().is_empty());
    assert!(s.events("nobody", 0, 5).unwrap().is_empty());

    // A step's events come from every block it spans, and only its own.
    let step_two = s.step_events("req-big", 2).unwrap();
    assert_eq!(
        step_two.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (2..=120).step_by(3).collect::<Vec<_>>()
    );
    assert!(step_two.iter().all(|e| e.step == 2));
    assert!(s.step_events("req-big", 4).unwrap().is_empty());

    // Search names the event's own step, in the first block and in the last.
    assert_eq!(
        s.search_steps("token1", 1).unwrap(),
        vec![("req-big".to_owned(), 1)]
    );
    assert_eq!(
        s.search_steps("token119", 10).unwrap(),
        vec![("req-big".to_owned(), 2)]
    );
    assert_eq!(
        s.search_steps("token120", 10).unwrap(),
        vec![("req-big".to_owned(), 3)]
    );

    // Seven events a page: 17 full pages and one of the last event, whatever the seams; the
    // same index as one page gives.
    let mut paged = TraceIndex::default();
    assert_eq!(catch_up(&s, &mut paged, 7), 18);
    let mut whole = TraceIndex::default();
    assert_eq!(catch_up(&s, &mut whole, 1000), 1);
    assert_eq!(paged.cursor, whole.cursor);
    assert_eq!(paged.steps.len(), 3);
    let (in_paged, in_whole) = (
        paged.invocation_by_request("req-big").unwrap(),
        whole.invocation_by_request("req-big").unwrap(),
    );
    for step in 1..=3 {
        assert_eq!(
            paged.step_kinds(paged.step_pos(in_paged, step).unwrap()),
            whole.step_kinds(whole.step_pos(in_whole, step).unwrap())
        );
    }
    // Nothing new: an empty page at the same cursor.
    let again = s.trace_index(whole.cursor, &[], 7).unwrap();
    assert!(again.steps.is_empty() && !again.more);
    assert_eq!(again.cursor, whole.cursor);
}

#[test]
fn a_block_whose_arrays_disagree_is_reported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    write_big_batch(&s);
    let raw = Connection::open(dir.path().join("deck.db")).unwrap();
    raw.execute(
        "UPDATE trace_blocks SET steps = '[1]' WHERE id = (SELECT min(id) FROM trace_blocks)",
        [],
    )
    .unwrap();
    for err in [
        s.events("req-big", 0, 10).unwrap_err(),
        s.step_events("req-big", 1).unwrap_err(),
        s.trace_index(IndexCursor::default(), &[], 10).unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(text.contains("trace block"), "{text}");
        assert!(text.contains("1 steps"), "{text}");
    }
    raw.execute(
        "UPDATE trace_blocks SET steps = 'not json' WHERE id = (SELECT min(id) FROM trace_blocks)",
        [],
    )
    .unwrap();
    let text = s.events("req-big", 0, 10).unwrap_err().to_string();
    assert!(
        text.contains("steps: not the JSON array expected"),
        "{text}"
    );
}

#[test]
fn a_block_whose_packed_json_is_damaged_is_reported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    write_big_batch(&s);
    let raw = Connection::open(dir.path().join("deck.db")).unwrap();
    let first = "WHERE id = (SELECT min(id) FROM trace_blocks)";
    let damage = |sql: &str| {
        raw.execute(&format!("UPDATE trace_blocks SET raw = {sql} {first}"), [])
            .unwrap();
    };
    // Cut short: the LZ4 block ends before its JSON does.
    damage("substr(raw, 1, length(raw) - 9)");
    for err in [
        s.events("req-big", 0, 10).unwrap_err(),
        s.step_events("req-big", 1).unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(text.contains("trace block"), "{text}");
        assert!(text.contains("raw JSON"), "{text}");
    }
    // A length no block of its size could unpack to.
    let mut packed: Vec<u8> = raw
        .query_row(&format!("SELECT raw FROM trace_blocks {first}"), [], |r| {
            r.get(0)
        })
        .unwrap();
    packed[..4].copy_from_slice(&0x7fff_ffff_u32.to_le_bytes());
    raw.execute(
        &format!("UPDATE trace_blocks SET raw = ?1 {first}"),
        [&packed],
    )
    .unwrap();
    let text = s.events("req-big", 0, 10).unwrap_err().to_string();
    assert!(text.contains("more than"), "{text}");
    // Too short to hold even the length. (JSON text where a packed block belongs cannot get
    // in: the column is a STRICT table's BLOB.)
    damage("x'0102'");
    let text = s.events("req-big", 0, 10).unwrap_err().to_string();
    assert!(text.contains("too short for a packed block"), "{text}");
    // The search index is built from the blocks by SQL: it names the damage too.
    let text = s.search_steps("token77", 10).unwrap_err().to_string();
    assert!(text.contains("trace_json"), "{text}");
}

/// Two invocations: `req-big` (`write_big_batch`: two blocks) and `req-small` (two events, one
/// block). The migration tests start from them.
fn write_big_and_small(s: &SqliteStore) {
    write_big_batch(s);
    start(s, "req-small", "s-big", 5);
    s.append_trace(
        "req-small",
        &[kb_lookup("small-0", 1), failure("small-1", 2)],
        &[],
    )
    .unwrap();
}

/// After a migration of what `write_big_and_small` wrote: the file checks out, both invocations
/// read back as `before` did, search finds what `search` found (and `refund`), the trace index
/// reads every step, and writing goes on (seq 3 of req-small, in a block after the others,
/// found by search and by the index).
fn reads_as_before(
    s: &SqliteStore,
    raw: &Connection,
    before: &[Readback; 2],
    search: &[(String, u64)],
) {
    let integrity: String = raw
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    assert_eq!(
        &[read_back(s, "req-big"), read_back(s, "req-small")],
        before
    );
    assert_eq!(s.search_steps("token77", 10).unwrap(), search);
    assert_eq!(
        s.search_steps("refund", 10).unwrap(),
        vec![("req-small".to_owned(), 1)]
    );
    let mut ix = TraceIndex::default();
    assert_eq!(catch_up(s, &mut ix, 50), 3);
    assert_eq!(ix.steps.len(), 5);
    s.append_trace("req-small", &[model_input("small-2", "coda", 3)], &[])
        .unwrap();
    assert_eq!(s.events("req-small", 2, 10).unwrap()[0].seq, 3);
    assert_eq!(
        s.search_steps("coda", 10).unwrap(),
        vec![("req-small".to_owned(), 3)]
    );
    catch_up(s, &mut ix, 50);
    assert_eq!(ix.steps.len(), 6);
}

#[test]
fn migration_10_makes_each_event_a_block_and_every_read_gives_what_it_gave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deck.db");
    let (before, events, search) = {
        let s = open(dir.path());
        write_big_and_small(&s);
        let raw = Connection::open(&path).unwrap();
        (
            [read_back(&s, "req-big"), read_back(&s, "req-small")],
            ids(&raw, EVENTS_IN_ORDER),
            s.search_steps("token77", 10).unwrap(),
        )
    };
    assert_eq!(before[0].2.len(), 100);
    assert_eq!(search, vec![("req-big".to_owned(), 2)]);
    let raw = Connection::open(&path).unwrap();
    common::downgrade_to_v9(&raw);
    drop(raw);

    let s = open(dir.path());
    let raw = Connection::open(&path).unwrap();
    assert_eq!(common::schema_version(&raw), 12);
    // Each event is a block of its own, with the id version 9 gave it.
    assert_eq!(ids(&raw, BLOCKS), events);
    reads_as_before(&s, &raw, &before, &search);
}

#[test]
fn migration_11_packs_every_block_and_every_read_gives_what_it_gave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deck.db");
    let (before, blocks, search) = {
        let s = open(dir.path());
        write_big_and_small(&s);
        let raw = Connection::open(&path).unwrap();
        (
            [read_back(&s, "req-big"), read_back(&s, "req-small")],
            ids(&raw, BLOCKS),
            // Indexed now, by position: the migration keeps the positions.
            s.search_steps("token77", 10).unwrap(),
        )
    };
    assert_eq!(search, vec![("req-big".to_owned(), 2)]);
    let raw = Connection::open(&path).unwrap();
    common::downgrade_to_v10(&raw);
    let text_bytes: i64 = raw
        .query_row(
            "SELECT sum(length(CAST(raw AS BLOB))) FROM trace_blocks WHERE typeof(raw) = 'text'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(raw);

    let s = open(dir.path());
    let raw = Connection::open(&path).unwrap();
    assert_eq!(common::schema_version(&raw), 12);
    assert_eq!(ids(&raw, BLOCKS), blocks);
    let (packed, blobs, all): (i64, i64, i64) = raw
        .query_row(
            "SELECT sum(length(raw)), count(*) FILTER (WHERE typeof(raw) = 'blob'), count(*)              FROM trace_blocks",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(blobs, all);
    assert!(
        packed * 2 < text_bytes,
        "{text_bytes} bytes of JSON packed into {packed}"
    );
    reads_as_before(&s, &raw, &before, &search);
    let packed_last: String = raw
        .query_row(
            "SELECT typeof(raw) FROM trace_blocks ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(packed_last, "blob");
}

#[test]
fn a_turns_end_written_with_its_events_or_alone_is_recorded_once_either_way() {
    use agentdeck::store::TurnWrite;
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let begin = |id: &str| InvocationStart {
        request_id: id.into(),
        agent_id: "AGENT".into(),
        agent_alias_id: "ALIAS".into(),
        session_id: "s-end".into(),
        input_text: None,
        resumes: None,
        started_at: at(1),
    };
    let end = |outcome, error: Option<&str>| InvocationEnd {
        outcome,
        ended_at: at(9),
        error: error.map(str::to_owned),
        final_response: Some("all done".into()),
        latency_ms: Some(8000),
    };
    let write = |id: &str, start: Option<&InvocationStart>, events: &[TraceEvent], end| {
        s.write_turn(&TurnWrite {
            request_id: id,
            start,
            events,
            chunks: &["ok".to_owned()][..usize::from(!events.is_empty())],
            end,
        })
        .unwrap();
    };
    let two = [model_input("w-0", "p", 1), model_output("w-0", 2, 300)];
    // A short turn: its start, events and end in one write.
    let finished = end(Outcome::Finished, None);
    write(
        "req-whole",
        Some(&begin("req-whole")),
        &two,
        Some(&finished),
    );
    // Its start and end with nothing between.
    let failed = end(Outcome::Failed, Some("throttled"));
    write("req-empty", Some(&begin("req-empty")), &[], Some(&failed));
    // Its start and events, then its end alone.
    write("req-alone", Some(&begin("req-alone")), &two, None);
    write("req-alone", None, &[], Some(&finished));
    // Its start and events, then more events with its end.
    write("req-later", Some(&begin("req-later")), &two[..1], None);
    write("req-later", None, &two[1..], Some(&finished));

    for (id, outcome, events, chunks, error) in [
        ("req-whole", Outcome::Finished, 2, 1, None),
        ("req-empty", Outcome::Failed, 0, 0, Some("throttled")),
        ("req-alone", Outcome::Finished, 2, 1, None),
        ("req-later", Outcome::Finished, 2, 2, None),
    ] {
        let rec = s.invocation(id).unwrap().unwrap();
        assert_eq!(rec.outcome, outcome, "{id}");
        assert_eq!((rec.events, rec.chunks), (events, chunks), "{id}");
        assert_eq!(rec.error.as_deref(), error, "{id}");
        assert_eq!(rec.ended_at, Some(at(9)), "{id}");
        assert_eq!(rec.latency_ms, Some(8000), "{id}");
        assert_eq!(rec.final_response.as_deref(), Some("all done"), "{id}");
        assert_eq!(rec.input_tokens, if events == 2 { 300 } else { 0 }, "{id}");
        assert_eq!(s.events(id, 0, 10).unwrap().len(), events as usize, "{id}");
    }
    // An end for an invocation never started is refused, alone or with events.
    let err = s
        .write_turn(&TurnWrite {
            request_id: "req-none",
            start: None,
            events: &[],
            chunks: &[],
            end: Some(&finished),
        })
        .unwrap_err();
    assert!(err.to_string().contains("req-none"), "{err}");
    let err = s
        .write_turn(&TurnWrite {
            request_id: "req-none",
            start: None,
            events: &two,
            chunks: &[],
            end: Some(&finished),
        })
        .unwrap_err();
    assert!(err.to_string().contains("req-none"), "{err}");
}

#[test]
fn a_kind_named_from_the_wire_is_escaped_in_its_block_and_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    start(&s, "req-odd", "s-odd", 0);
    let odd =
        TraceEvent::from_wire(json!({"trace": {"we\"ird\\\n\u{1}Trace": {"traceId": "o-1"}}}));
    let plain = model_input("o-2", "after it", 1);
    s.append_trace("req-odd", &[odd, plain], &[]).unwrap();
    let got = s.events("req-odd", 0, 10).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].kind, "unknown(we\"ird\\\n\u{1}Trace)");
    assert_eq!(got[1].kind, "orchestration/model-input");
}
