//! The SQLite schema, its versioned migrations, and the summary columns a request row carries
//! beside its body. Owns no behaviour beyond turning rows into store types and back.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior};

use crate::domain::approval::{ApprovalId, ApprovalRequest};
use crate::domain::decision::{Decision, Verdict};
use crate::domain::policy::{ControlReason, RiskTier};
use crate::domain::status::Status;
use crate::store::{QueueRow, StoreError};

/// Each entry upgrades the schema by one version (`PRAGMA user_version` counts them). Append
/// only: never edit a shipped migration.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: requests, their decisions, and the hash-chained audit log.
    "CREATE TABLE requests (
        id             TEXT PRIMARY KEY NOT NULL,
        agent_id       TEXT NOT NULL,
        agent_alias_id TEXT NOT NULL,
        session_id     TEXT NOT NULL,
        tier           INTEGER NOT NULL CHECK (tier BETWEEN 0 AND 3),
        reason         TEXT NOT NULL,
        rule           TEXT,
        action         TEXT NOT NULL,
        key_params     TEXT NOT NULL,
        inputs         INTEGER NOT NULL CHECK (inputs > 0),
        raised_at_ms   INTEGER NOT NULL,
        expires_at_ms  INTEGER NOT NULL,
        status         TEXT NOT NULL,
        approvals      INTEGER NOT NULL DEFAULT 0,
        body           TEXT NOT NULL,
        body_hash      TEXT NOT NULL,
        version        INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    -- The open queue, covering and partial: it holds only open rows, so reading the queue
    -- touches neither the bodies nor the decided history, whatever its size.
    CREATE INDEX requests_open ON requests (
        expires_at_ms, raised_at_ms, id, status, agent_id, agent_alias_id, session_id, tier,
        reason, rule, action, key_params, inputs, approvals
    ) WHERE status IN ('pending', 'partially-decided');
    -- Totals (by status, by tier, per agent and session) without reading the bodies.
    CREATE INDEX requests_status ON requests (status, tier);
    CREATE INDEX requests_agent ON requests (agent_id, session_id);
    CREATE TABLE decisions (
        request_id     TEXT NOT NULL REFERENCES requests (id),
        seq            INTEGER NOT NULL CHECK (seq > 0),
        input_index    INTEGER NOT NULL CHECK (input_index >= 0),
        verdict        TEXT NOT NULL CHECK (verdict IN ('confirm', 'deny')),
        reviewer       TEXT NOT NULL,
        reason         TEXT,
        decided_at_ms  INTEGER NOT NULL,
        dwell_ms       INTEGER,
        args_hash      TEXT NOT NULL,
        PRIMARY KEY (request_id, seq)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX decisions_reviewer ON decisions (reviewer);
    CREATE TABLE audit (
        seq        INTEGER PRIMARY KEY,
        at_ms      INTEGER NOT NULL,
        actor      TEXT NOT NULL,
        kind       TEXT NOT NULL,
        request_id TEXT NOT NULL,
        payload    TEXT NOT NULL,
        prev_hash  TEXT NOT NULL,
        hash       TEXT NOT NULL
    ) STRICT;
    CREATE INDEX audit_request ON audit (request_id, seq);",
    // 2: what the Bedrock runner records: sessions, invocations, their trace events grouped into
    // steps (raw JSON kept), chunk text, which requests the runner raised (and so can resume),
    // and the outbox of resumes that `decide` fills in the decision's own transaction.
    "CREATE TABLE sessions (
        agent_id       TEXT NOT NULL,
        agent_alias_id TEXT NOT NULL,
        session_id     TEXT NOT NULL,
        first_at_ms    INTEGER NOT NULL,
        last_at_ms     INTEGER NOT NULL,
        invocations    INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (agent_id, agent_alias_id, session_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX sessions_recent ON sessions (last_at_ms DESC, agent_id, agent_alias_id, session_id);
    CREATE TABLE invocations (
        request_id     TEXT PRIMARY KEY NOT NULL,
        agent_id       TEXT NOT NULL,
        agent_alias_id TEXT NOT NULL,
        session_id     TEXT NOT NULL,
        input_text     TEXT,
        -- The return-of-control invocationId this invocation answered, for resumes.
        resumes        TEXT,
        started_at_ms  INTEGER NOT NULL,
        ended_at_ms    INTEGER,
        outcome        TEXT NOT NULL CHECK (outcome IN
                         ('running', 'finished', 'failed', 'waiting-for-human', 'exception')),
        error          TEXT,
        final_response TEXT,
        latency_ms     INTEGER,
        input_tokens   INTEGER NOT NULL DEFAULT 0,
        output_tokens  INTEGER NOT NULL DEFAULT 0,
        events         INTEGER NOT NULL DEFAULT 0,
        steps          INTEGER NOT NULL DEFAULT 0,
        chunks         INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX invocations_session ON invocations (session_id, started_at_ms, request_id);
    CREATE INDEX invocations_recent ON invocations (started_at_ms, request_id);
    -- One row per reasoning step (events sharing a traceId), with running figures so a step
    -- list never reads the events: duration comes from the metadata span, else the summed
    -- totalTimeMs, else the span of event times (domain::trace::StepAccumulator).
    CREATE TABLE trace_steps (
        request_id     TEXT NOT NULL REFERENCES invocations (request_id),
        step           INTEGER NOT NULL CHECK (step > 0),
        trace_id       TEXT NOT NULL,
        kinds          TEXT NOT NULL,
        events         INTEGER NOT NULL,
        first_seq      INTEGER NOT NULL,
        last_seq       INTEGER NOT NULL,
        rationale      TEXT,
        input_tokens   INTEGER NOT NULL DEFAULT 0,
        output_tokens  INTEGER NOT NULL DEFAULT 0,
        meta_start_ns  INTEGER,
        meta_end_ns    INTEGER,
        total_time_ms  INTEGER,
        first_time_ns  INTEGER,
        last_time_ns   INTEGER,
        PRIMARY KEY (request_id, step)
    ) STRICT, WITHOUT ROWID;
    CREATE UNIQUE INDEX trace_steps_trace ON trace_steps (request_id, trace_id);
    -- Events keep their raw TracePart JSON (prompts run to 10 KB): a rowid table, so large rows
    -- stay out of the index b-tree.
    CREATE TABLE trace_events (
        request_id     TEXT NOT NULL REFERENCES invocations (request_id),
        seq            INTEGER NOT NULL CHECK (seq > 0),
        step           INTEGER NOT NULL,
        trace_id       TEXT,
        kind           TEXT NOT NULL,
        event_time     TEXT,
        summary        TEXT NOT NULL,
        raw            TEXT NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX trace_events_seq ON trace_events (request_id, seq);
    CREATE INDEX trace_events_step ON trace_events (request_id, step, seq);
    CREATE TABLE chunks (
        request_id     TEXT NOT NULL REFERENCES invocations (request_id),
        seq            INTEGER NOT NULL CHECK (seq > 0),
        text           TEXT NOT NULL,
        PRIMARY KEY (request_id, seq)
    ) STRICT;
    -- Requests the runner raised: it holds the session they can be resumed on, and links the
    -- request to its invocation and to the step whose rationale it carries.
    CREATE TABLE resumable (
        request_id     TEXT PRIMARY KEY NOT NULL REFERENCES requests (id),
        invocation     TEXT NOT NULL,
        trace_id       TEXT,
        source         TEXT NOT NULL DEFAULT 'runner'
    ) STRICT;
    CREATE TABLE outbox (
        request_id     TEXT PRIMARY KEY NOT NULL REFERENCES requests (id),
        invocation     TEXT,
        session_id     TEXT NOT NULL,
        agent_id       TEXT NOT NULL,
        agent_alias_id TEXT NOT NULL,
        state          TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'acked', 'failed')),
        attempts       INTEGER NOT NULL DEFAULT 0,
        last_error     TEXT,
        -- The resume plan (domain::resume::ResumePlan): each input with its final verdict.
        payload        TEXT NOT NULL,
        -- The results built from it, kept before the first send so a retry never re-runs the
        -- executor.
        results        TEXT,
        lease_owner    TEXT,
        -- Leased until, or (with no owner) not to be tried before.
        lease_until_ms INTEGER,
        created_at_ms  INTEGER NOT NULL,
        updated_at_ms  INTEGER NOT NULL,
        continuation   TEXT
    ) STRICT;
    CREATE INDEX outbox_due ON outbox (created_at_ms, request_id) WHERE state IN ('pending', 'sent');",
    // 3 (traces explorer): per step, the set of what it did (domain::step_kind::StepKinds bits)
    // and how deep in the collaborator chain it ran (callerChain length - 1), so the trace index
    // filters and nests steps without reading their events. Older steps keep 0 for both.
    "ALTER TABLE trace_steps ADD COLUMN kind_set INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE trace_steps ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;",
    // 4 (traces explorer): full-text search over every trace event: the string values of its raw
    // JSON (unescaped, so a prompt's words are words); contentless, so the text is stored once
    // (in trace_events) and a match gives the event's rowid. Filled by the reader before a
    // search, from `indexed_upto` on, a chunk at a time, so writing a trace costs nothing more.
    "CREATE VIRTUAL TABLE trace_text USING fts5(body, content='');
    CREATE TABLE trace_text_state (
        one          INTEGER PRIMARY KEY CHECK (one = 1),
        indexed_upto INTEGER NOT NULL
    ) STRICT;
    INSERT INTO trace_text_state (one, indexed_upto) VALUES (1, 0);",
    // 5 (metrics): the model each invocation used and the model and tool time its trace accounts
    // for (kept as the trace is written, so metrics never read the events), an index to find
    // the request an invocation raised, and engineers' marks on executed steps (append only:
    // a later mark by the same person on the same step supersedes the earlier one).
    "ALTER TABLE invocations ADD COLUMN model TEXT;
    ALTER TABLE invocations ADD COLUMN model_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE invocations ADD COLUMN tool_ms INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX resumable_invocation ON resumable (invocation);
    CREATE TABLE action_marks (
        seq            INTEGER PRIMARY KEY,
        request_id     TEXT NOT NULL REFERENCES invocations (request_id),
        step           INTEGER NOT NULL CHECK (step > 0),
        trace_id       TEXT NOT NULL,
        appropriate    INTEGER NOT NULL CHECK (appropriate IN (0, 1)),
        note           TEXT,
        who            TEXT NOT NULL,
        at_ms          INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX action_marks_step ON action_marks (request_id, step, seq);",
    // 6 (import speed): a step's events are read by their seq range (the step row holds its
    // first and last seq) over trace_events_seq, so the index by step, one more B-tree write per
    // event, goes.
    "DROP INDEX trace_events_step;",
    // 7 (import speed): an event row keeps its raw JSON and kind (the kind of a non-trace event
    // is not in its JSON) and no longer copies of what its JSON says (traceId, eventTime, the
    // one-line summary): those are read from the JSON with the event, which is parsed anyway.
    // Rowids are kept, so the search index (by rowid) stays valid.
    "CREATE TABLE trace_events_v7 (
        request_id     TEXT NOT NULL REFERENCES invocations (request_id),
        seq            INTEGER NOT NULL CHECK (seq > 0),
        step           INTEGER NOT NULL,
        kind           TEXT NOT NULL,
        raw            TEXT NOT NULL
    ) STRICT;
    INSERT INTO trace_events_v7 (rowid, request_id, seq, step, kind, raw)
        SELECT rowid, request_id, seq, step, kind, raw FROM trace_events ORDER BY rowid;
    DROP TABLE trace_events;
    ALTER TABLE trace_events_v7 RENAME TO trace_events;
    CREATE UNIQUE INDEX trace_events_seq ON trace_events (request_id, seq);",
    // 8 (ingest speed): an invocation gets an integer key, `id` (its old rowid), and its events,
    // steps and chunks are keyed by it instead of the request id. Request ids are random, so
    // every turn in flight wrote its own leaf page of each of those indexes on every commit;
    // ids grow with time, so the turns in flight now share the last few pages. Event rows get
    // an explicit `id` too (their old rowid, which the search index points at), so a VACUUM
    // cannot renumber them. Children are copied and dropped before the old invocations table,
    // so dropping it orphans nothing; the action marks keep the request id, under the new
    // table's unique index.
    "CREATE TABLE invocations_v8 (
        id             INTEGER PRIMARY KEY,
        request_id     TEXT NOT NULL UNIQUE,
        agent_id       TEXT NOT NULL,
        agent_alias_id TEXT NOT NULL,
        session_id     TEXT NOT NULL,
        input_text     TEXT,
        resumes        TEXT,
        started_at_ms  INTEGER NOT NULL,
        ended_at_ms    INTEGER,
        outcome        TEXT NOT NULL CHECK (outcome IN
                         ('running', 'finished', 'failed', 'waiting-for-human', 'exception')),
        error          TEXT,
        final_response TEXT,
        latency_ms     INTEGER,
        input_tokens   INTEGER NOT NULL DEFAULT 0,
        output_tokens  INTEGER NOT NULL DEFAULT 0,
        events         INTEGER NOT NULL DEFAULT 0,
        steps          INTEGER NOT NULL DEFAULT 0,
        chunks         INTEGER NOT NULL DEFAULT 0,
        model          TEXT,
        model_ms       INTEGER NOT NULL DEFAULT 0,
        tool_ms        INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    INSERT INTO invocations_v8 (id, request_id, agent_id, agent_alias_id, session_id, input_text,
        resumes, started_at_ms, ended_at_ms, outcome, error, final_response, latency_ms,
        input_tokens, output_tokens, events, steps, chunks, model, model_ms, tool_ms)
        SELECT rowid, request_id, agent_id, agent_alias_id, session_id, input_text, resumes,
        started_at_ms, ended_at_ms, outcome, error, final_response, latency_ms, input_tokens,
        output_tokens, events, steps, chunks, model, model_ms, tool_ms
        FROM invocations ORDER BY rowid;
    CREATE TABLE trace_steps_v8 (
        inv            INTEGER NOT NULL REFERENCES invocations_v8 (id),
        step           INTEGER NOT NULL CHECK (step > 0),
        trace_id       TEXT NOT NULL,
        kinds          TEXT NOT NULL,
        events         INTEGER NOT NULL,
        first_seq      INTEGER NOT NULL,
        last_seq       INTEGER NOT NULL,
        rationale      TEXT,
        input_tokens   INTEGER NOT NULL DEFAULT 0,
        output_tokens  INTEGER NOT NULL DEFAULT 0,
        meta_start_ns  INTEGER,
        meta_end_ns    INTEGER,
        total_time_ms  INTEGER,
        first_time_ns  INTEGER,
        last_time_ns   INTEGER,
        kind_set       INTEGER NOT NULL DEFAULT 0,
        depth          INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (inv, step)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO trace_steps_v8 SELECT i.id, s.step, s.trace_id, s.kinds, s.events, s.first_seq,
        s.last_seq, s.rationale, s.input_tokens, s.output_tokens, s.meta_start_ns,
        s.meta_end_ns, s.total_time_ms, s.first_time_ns, s.last_time_ns, s.kind_set, s.depth
        FROM trace_steps s JOIN invocations_v8 i ON i.request_id = s.request_id;
    CREATE TABLE trace_events_v8 (
        id             INTEGER PRIMARY KEY,
        inv            INTEGER NOT NULL REFERENCES invocations_v8 (id),
        seq            INTEGER NOT NULL CHECK (seq > 0),
        step           INTEGER NOT NULL,
        kind           TEXT NOT NULL,
        raw            TEXT NOT NULL
    ) STRICT;
    INSERT INTO trace_events_v8 (id, inv, seq, step, kind, raw)
        SELECT e.rowid, i.id, e.seq, e.step, e.kind, e.raw
        FROM trace_events e JOIN invocations_v8 i ON i.request_id = e.request_id
        ORDER BY e.rowid;
    CREATE TABLE chunks_v8 (
        inv            INTEGER NOT NULL REFERENCES invocations_v8 (id),
        seq            INTEGER NOT NULL CHECK (seq > 0),
        text           TEXT NOT NULL,
        PRIMARY KEY (inv, seq)
    ) STRICT;
    INSERT INTO chunks_v8 (inv, seq, text) SELECT i.id, c.seq, c.text
        FROM chunks c JOIN invocations_v8 i ON i.request_id = c.request_id;
    CREATE TABLE action_marks_v8 (
        seq            INTEGER PRIMARY KEY,
        request_id     TEXT NOT NULL REFERENCES invocations_v8 (request_id),
        step           INTEGER NOT NULL CHECK (step > 0),
        trace_id       TEXT NOT NULL,
        appropriate    INTEGER NOT NULL CHECK (appropriate IN (0, 1)),
        note           TEXT,
        who            TEXT NOT NULL,
        at_ms          INTEGER NOT NULL
    ) STRICT;
    INSERT INTO action_marks_v8 SELECT seq, request_id, step, trace_id, appropriate, note, who,
        at_ms FROM action_marks ORDER BY seq;
    DROP TABLE trace_steps;
    DROP TABLE trace_events;
    DROP TABLE chunks;
    DROP TABLE action_marks;
    DROP TABLE invocations;
    ALTER TABLE invocations_v8 RENAME TO invocations;
    ALTER TABLE trace_steps_v8 RENAME TO trace_steps;
    ALTER TABLE trace_events_v8 RENAME TO trace_events;
    ALTER TABLE chunks_v8 RENAME TO chunks;
    ALTER TABLE action_marks_v8 RENAME TO action_marks;
    CREATE INDEX invocations_session ON invocations (session_id, started_at_ms, request_id);
    CREATE INDEX invocations_recent ON invocations (started_at_ms, request_id);
    CREATE UNIQUE INDEX trace_steps_trace ON trace_steps (inv, trace_id);
    CREATE UNIQUE INDEX trace_events_seq ON trace_events (inv, seq);
    CREATE INDEX action_marks_step ON action_marks (request_id, step, seq);",
    // 9 (ingest speed): the same CHECK constraints written as `=` tests joined by OR. SQLite
    // codes `x IN (list)` of more than two values as a temporary B-tree it builds every time
    // the statement runs, so each invocation's insert and its end (which sets `outcome`), and
    // each outbox write that sets `state`, built and freed one: about 4 us a statement (100,000
    // inserts into a table checked each way, through Python's sqlite3: 6.3 against 2.2 us). The
    // tables are copied into their new definitions with their keys (children keep pointing at
    // the same ids), then their indexes are made again.
    "CREATE TABLE invocations_v9 (
        id             INTEGER PRIMARY KEY,
        request_id     TEXT NOT NULL UNIQUE,
        agent_id       TEXT NOT NULL,
        agent_alias_id TEXT NOT NULL,
        session_id     TEXT NOT NULL,
        input_text     TEXT,
        resumes        TEXT,
        started_at_ms  INTEGER NOT NULL,
        ended_at_ms    INTEGER,
        outcome        TEXT NOT NULL CHECK (outcome = 'running' OR outcome = 'finished'
                         OR outcome = 'failed' OR outcome = 'waiting-for-human'
                         OR outcome = 'exception'),
        error          TEXT,
        final_response TEXT,
        latency_ms     INTEGER,
        input_tokens   INTEGER NOT NULL DEFAULT 0,
        output_tokens  INTEGER NOT NULL DEFAULT 0,
        events         INTEGER NOT NULL DEFAULT 0,
        steps          INTEGER NOT NULL DEFAULT 0,
        chunks         INTEGER NOT NULL DEFAULT 0,
        model          TEXT,
        model_ms       INTEGER NOT NULL DEFAULT 0,
        tool_ms        INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    INSERT INTO invocations_v9 SELECT id, request_id, agent_id, agent_alias_id, session_id,
        input_text, resumes, started_at_ms, ended_at_ms, outcome, error, final_response,
        latency_ms, input_tokens, output_tokens, events, steps, chunks, model, model_ms, tool_ms
        FROM invocations ORDER BY id;
    DROP TABLE invocations;
    ALTER TABLE invocations_v9 RENAME TO invocations;
    CREATE INDEX invocations_session ON invocations (session_id, started_at_ms, request_id);
    CREATE INDEX invocations_recent ON invocations (started_at_ms, request_id);
    CREATE TABLE outbox_v9 (
        request_id     TEXT PRIMARY KEY NOT NULL REFERENCES requests (id),
        invocation     TEXT,
        session_id     TEXT NOT NULL,
        agent_id       TEXT NOT NULL,
        agent_alias_id TEXT NOT NULL,
        state          TEXT NOT NULL CHECK (state = 'pending' OR state = 'sent'
                         OR state = 'acked' OR state = 'failed'),
        attempts       INTEGER NOT NULL DEFAULT 0,
        last_error     TEXT,
        -- The resume plan (domain::resume::ResumePlan): each input with its final verdict.
        payload        TEXT NOT NULL,
        -- The results built from it, kept before the first send so a retry never re-runs the
        -- executor.
        results        TEXT,
        lease_owner    TEXT,
        -- Leased until, or (with no owner) not to be tried before.
        lease_until_ms INTEGER,
        created_at_ms  INTEGER NOT NULL,
        updated_at_ms  INTEGER NOT NULL,
        continuation   TEXT
    ) STRICT;
    INSERT INTO outbox_v9 SELECT request_id, invocation, session_id, agent_id, agent_alias_id,
        state, attempts, last_error, payload, results, lease_owner, lease_until_ms,
        created_at_ms, updated_at_ms, continuation FROM outbox ORDER BY rowid;
    DROP TABLE outbox;
    ALTER TABLE outbox_v9 RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox (created_at_ms, request_id) WHERE state IN ('pending', 'sent');",
    // 10 (ingest speed): trace events are kept in blocks, a row per batch a turn writes (split
    // past `trace::BLOCK_EVENTS` events or `trace::BLOCK_BYTES` of JSON), not a row per event:
    // the events' raw JSON as one array, and their steps and kinds as arrays beside it. One row
    // and one index entry per batch instead of per event: 6-9% more events/s on the ingest
    // bench, 5-8% less CPU per event (alternated runs, session 17). An event's position is its block's id
    // times 4,096 plus its place in the block: the search index's rowid and the trace index's
    // cursor. Each existing event becomes a block of its own with the same id; the search index
    // (keyed by the old ids) is emptied and refilled by the next search.
    "CREATE TABLE trace_blocks (
        id             INTEGER PRIMARY KEY,
        inv            INTEGER NOT NULL REFERENCES invocations (id),
        first_seq      INTEGER NOT NULL CHECK (first_seq > 0),
        n              INTEGER NOT NULL CHECK (n > 0 AND n <= 4096),
        steps          TEXT NOT NULL,
        kinds          TEXT NOT NULL,
        raw            TEXT NOT NULL
    ) STRICT;
    INSERT INTO trace_blocks (id, inv, first_seq, n, steps, kinds, raw)
        SELECT id, inv, seq, 1, json_array(step), json_array(kind), '[' || raw || ']'
        FROM trace_events ORDER BY id;
    DROP TABLE trace_events;
    CREATE UNIQUE INDEX trace_blocks_seq ON trace_blocks (inv, first_seq);
    INSERT INTO trace_text (trace_text) VALUES ('delete-all');
    UPDATE trace_text_state SET indexed_upto = 0;",
    // 11 (store size and ingest speed): a block's raw JSON is kept packed (`sqlite::pack`: LZ4,
    // its length first), about 3.6 times smaller on the ingest bench's mix; the store file
    // there is half its size, and fewer bytes go through the WAL and its checkpoints. Every
    // existing block is packed (`trace_pack`, registered before the migration runs); ids, and
    // with them the search index's positions, stay as they were. SQL reads the JSON through
    // `trace_json(raw)`.
    "CREATE TABLE trace_blocks_packed (
        id             INTEGER PRIMARY KEY,
        inv            INTEGER NOT NULL REFERENCES invocations (id),
        first_seq      INTEGER NOT NULL CHECK (first_seq > 0),
        n              INTEGER NOT NULL CHECK (n > 0 AND n <= 4096),
        steps          TEXT NOT NULL,
        kinds          TEXT NOT NULL,
        raw            BLOB NOT NULL
    ) STRICT;
    INSERT INTO trace_blocks_packed (id, inv, first_seq, n, steps, kinds, raw)
        SELECT id, inv, first_seq, n, steps, kinds, trace_pack(raw) FROM trace_blocks ORDER BY id;
    DROP TABLE trace_blocks;
    ALTER TABLE trace_blocks_packed RENAME TO trace_blocks;
    CREATE UNIQUE INDEX trace_blocks_seq ON trace_blocks (inv, first_seq);",
    // 12 (write cost): the audit log's index by request goes. No read uses it (the log is read,
    // exported and verified in seq order), and every entry paid an insert into it where its
    // request id (Bedrock's random invocationId) fell: a leaf page of its own in nearly every
    // group commit, and on a large file often a page read first. On the ingest bench within
    // noise (session 24). `IF EXISTS`: a hand-made older file may lack it.
    "DROP INDEX IF EXISTS audit_request;",
];

/// Brings the file at `path` up to the newest schema, in one transaction. A file written by a
/// newer agentdeck is refused rather than misread.
pub(super) fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let read_version = |conn: &Connection| -> Result<i64, StoreError> {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| super::db_error(path, "reading the schema version", &e))
    };
    let current = read_version(conn)?;
    if current == known {
        return Ok(());
    }
    if current > known {
        return Err(too_new(path, current, known));
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| super::db_error(path, "starting the schema migration", &e))?;
    // Another process may have migrated while we waited for the lock.
    let current = read_version(&tx)?;
    if current > known {
        return Err(too_new(path, current, known));
    }
    for (done, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = done + 1;
        tx.execute_batch(sql).map_err(|e| {
            super::db_error(path, &format!("applying schema migration {version}"), &e)
        })?;
        tx.pragma_update(None, "user_version", version)
            .map_err(|e| super::db_error(path, "recording the schema version", &e))?;
    }
    // Foreign keys are not enforced while migrations rebuild a parent table (the caller turns
    // them on after this), as SQLite's own procedure for changing a table's definition has it;
    // so every reference is checked here, before the migration commits.
    let broken: i64 = tx
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .map_err(|e| super::db_error(path, "checking references after the migration", &e))?;
    if broken > 0 {
        return Err(StoreError::Corrupt(format!(
            "{path}: after the schema migration {broken} rows refer to rows that are not \
             there; nothing was changed"
        )));
    }
    tx.commit()
        .map_err(|e| super::db_error(path, "committing the schema migration", &e))
}

fn too_new(path: &str, found: i64, known: i64) -> StoreError {
    StoreError::Unavailable(format!(
        "{path}: the store has schema version {found} but this agentdeck knows only up to \
         version {known}; it was written by a newer agentdeck, so upgrade rather than risk \
         misreading it"
    ))
}

pub(super) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(ms: i64, what: &dyn std::fmt::Display) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: {ms} ms is not a valid time")))
}

/// `t` without its sub-millisecond part: what a round trip through the store gives back.
pub(super) fn truncate_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// The columns a request row carries beside its body, derived from the body alone, so the audit
/// check can recompute them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Summary {
    pub agent_id: String,
    pub agent_alias_id: String,
    pub session_id: String,
    pub tier: i64,
    pub reason: String,
    pub rule: Option<String>,
    pub action: String,
    /// JSON array of `[name, value]` for the first input's parameters and body properties.
    pub key_params: String,
    pub inputs: i64,
    pub raised_at_ms: i64,
    pub expires_at_ms: i64,
}

impl Summary {
    pub fn of(request: &ApprovalRequest) -> Self {
        let row = QueueRow::of(request, crate::domain::status::Status::Pending, 0);
        Self {
            agent_id: row.agent_id,
            agent_alias_id: row.agent_alias_id,
            session_id: row.session_id,
            tier: i64::from(row.tier.rank()),
            reason: row.reason.as_str().to_owned(),
            rule: row.rule,
            action: row.action,
            key_params: serde_json::to_string(&row.key_params).unwrap_or_else(|_| "[]".to_owned()),
            inputs: row.inputs as i64,
            raised_at_ms: to_ms(row.raised_at),
            expires_at_ms: to_ms(row.expires_at),
        }
    }

    /// Each column as `(name, value as text)`, for naming the one that differs.
    pub fn columns(&self) -> [(&'static str, String); 11] {
        [
            ("agent_id", self.agent_id.clone()),
            ("agent_alias_id", self.agent_alias_id.clone()),
            ("session_id", self.session_id.clone()),
            ("tier", self.tier.to_string()),
            ("reason", self.reason.clone()),
            (
                "rule",
                self.rule.clone().unwrap_or_else(|| "NULL".to_owned()),
            ),
            ("action", self.action.clone()),
            ("key_params", self.key_params.clone()),
            ("inputs", self.inputs.to_string()),
            ("raised_at_ms", self.raised_at_ms.to_string()),
            ("expires_at_ms", self.expires_at_ms.to_string()),
        ]
    }
}

pub(super) const QUEUE_COLUMNS: &str = "id, agent_id, agent_alias_id, session_id, tier, reason, \
     rule, action, key_params, inputs, raised_at_ms, expires_at_ms, status, approvals";

fn corrupt(id: &str, column: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("request {id}: column {column} {detail}"))
}

/// A queue row from the columns named in `QUEUE_COLUMNS`, without touching the body.
pub(super) fn queue_row(row: &Row<'_>) -> Result<QueueRow, StoreError> {
    let get = |e: rusqlite::Error| StoreError::Corrupt(format!("reading a queue row: {e}"));
    let id: String = row.get(0).map_err(get)?;
    let tier: i64 = row.get(4).map_err(get)?;
    let reason: String = row.get(5).map_err(get)?;
    let key_params: String = row.get(8).map_err(get)?;
    let inputs: i64 = row.get(9).map_err(get)?;
    let status: String = row.get(12).map_err(get)?;
    let approvals: i64 = row.get(13).map_err(get)?;
    Ok(QueueRow {
        agent_id: row.get(1).map_err(get)?,
        agent_alias_id: row.get(2).map_err(get)?,
        session_id: row.get(3).map_err(get)?,
        tier: u8::try_from(tier)
            .ok()
            .and_then(RiskTier::from_rank)
            .ok_or_else(|| corrupt(&id, "tier", format!("holds {tier}, not a tier rank 0-3")))?,
        reason: ControlReason::parse(&reason)
            .ok_or_else(|| corrupt(&id, "reason", format!("holds unknown reason {reason:?}")))?,
        rule: row.get(6).map_err(get)?,
        action: row.get(7).map_err(get)?,
        key_params: serde_json::from_str(&key_params).map_err(|e| {
            corrupt(
                &id,
                "key_params",
                format!("is not a [[name, value]] list: {e}"),
            )
        })?,
        inputs: usize::try_from(inputs)
            .map_err(|_| corrupt(&id, "inputs", format!("holds {inputs}")))?,
        raised_at: from_ms(
            row.get(10).map_err(get)?,
            &format!("request {id} raised_at_ms"),
        )?,
        expires_at: from_ms(
            row.get(11).map_err(get)?,
            &format!("request {id} expires_at_ms"),
        )?,
        status: parse_status(&id, &status)?,
        approvals: usize::try_from(approvals)
            .map_err(|_| corrupt(&id, "approvals", format!("holds {approvals}")))?,
        id: ApprovalId(id),
    })
}

pub(super) fn parse_status(id: &str, status: &str) -> Result<Status, StoreError> {
    Status::parse(status)
        .ok_or_else(|| corrupt(id, "status", format!("holds unknown status {status:?}")))
}

/// A stored request row: the parsed body, its status column and its version.
#[derive(Debug)]
pub(super) struct Loaded {
    pub request: ApprovalRequest,
    pub status: Status,
    pub version: i64,
}

/// Loads a request by exact id, checking its body still matches the hash it was stored with, so
/// nobody decides on arguments that were changed behind the store's back.
pub(super) fn load_request(
    conn: &Connection,
    path: &str,
    id: &ApprovalId,
) -> Result<Option<Loaded>, StoreError> {
    let row: Option<(String, String, String, i64)> = conn
        .prepare_cached("SELECT body, body_hash, status, version FROM requests WHERE id = ?1")
        .and_then(|mut st| {
            st.query_row([id.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(|e| super::db_error(path, &format!("reading request {id}"), &e))?;
    let Some((body, body_hash, status, version)) = row else {
        return Ok(None);
    };
    if crate::domain::canonical::sha256_hex(body.as_bytes()) != body_hash {
        return Err(StoreError::Corrupt(format!(
            "request {id}: its body no longer matches the hash it was stored with; it was \
             changed outside agentdeck (run the audit check)"
        )));
    }
    let request: ApprovalRequest = serde_json::from_str(&body).map_err(|e| {
        StoreError::Corrupt(format!("request {id}: the stored body does not parse: {e}"))
    })?;
    Ok(Some(Loaded {
        request,
        status: parse_status(id.as_str(), &status)?,
        version,
    }))
}

/// The decisions recorded on `id`, in the order they were written, with their `seq`.
pub(super) fn load_decisions(
    conn: &Connection,
    path: &str,
    id: &ApprovalId,
) -> Result<Vec<(i64, Decision)>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT seq, input_index, verdict, reviewer, reason, decided_at_ms, dwell_ms, \
             args_hash FROM decisions WHERE request_id = ?1 ORDER BY seq",
        )
        .map_err(|e| super::db_error(path, "preparing the decisions query", &e))?;
    let rows = st
        .query_map([id.as_str()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, String>(7)?,
            ))
        })
        .map_err(|e| super::db_error(path, &format!("reading the decisions on {id}"), &e))?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, index, verdict, reviewer, reason, at_ms, dwell, args_hash) =
            row.map_err(|e| super::db_error(path, &format!("reading the decisions on {id}"), &e))?;
        let what = format!("request {id} decision {seq}");
        out.push((
            seq,
            Decision {
                request: id.clone(),
                input_index: usize::try_from(index).map_err(|_| {
                    StoreError::Corrupt(format!("{what}: input index {index} is negative"))
                })?,
                verdict: Verdict::parse(&verdict).ok_or_else(|| {
                    StoreError::Corrupt(format!("{what}: unknown verdict {verdict:?}"))
                })?,
                reviewer,
                reason,
                decided_at: from_ms(at_ms, &what)?,
                dwell_ms: dwell.map(|d| u64::try_from(d).unwrap_or(0)),
                args_hash,
            },
        ));
    }
    Ok(out)
}

pub(super) use crate::store::chain::decision_json;
