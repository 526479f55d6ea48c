//! `agentdeck import`: recordings in the three formats (raw eventstream bodies, boto3 events as
//! JSON / JSONL, bare TraceParts) into a SQLite store on disk. Fixtures in
//! `tests/fixtures/import/`: `sim-*.eventstream` are bodies the simulator sent (curl against
//! `agentdeck sim --time-scale 0`), `boto3-*` are what `tests/boto3/dump_events.py` wrote from
//! boto3 against the simulator, `handwritten-*` were written from the wire reference (unknown
//! fields, unknown trace variants and members, nanosecond timestamps, bad records). One test
//! also captures a body live from the simulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::bin_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use base64::Engine as _;
use chrono::{TimeZone, Utc};

use agentdeck::bedrock::import::{FileSummary, ImportOptions, Rejected, import};
use agentdeck::bedrock::recording::{ChunkBytes, Location};
use agentdeck::sim::{SimConfig, start};
use agentdeck::store::run::{Outcome, TraceStore};
use agentdeck::store::sqlite::SqliteStore;
use bin_support::Sandbox;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

fn options() -> ImportOptions {
    ImportOptions {
        format: None,
        chunks: ChunkBytes::Auto,
        session: None,
    }
}

fn import_bytes(store: &SqliteStore, name: &str, bytes: &[u8]) -> (FileSummary, Vec<Rejected>) {
    let mut errors = Vec::new();
    let summary = import(
        store,
        bytes,
        name,
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        &options(),
        &mut |r| errors.push(r.clone()),
        &mut |_| {},
    )
    .unwrap();
    (summary, errors)
}

fn import_file(store: &SqliteStore, name: &str) -> (FileSummary, Vec<Rejected>) {
    import_bytes(store, name, &std::fs::read(fixture(name)).unwrap())
}

fn open_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("deck.db")).unwrap();
    (dir, store)
}

fn header<'a>(m: &'a Message, name: &str) -> &'a str {
    match m
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .map(aws_smithy_types::event_stream::Header::value)
    {
        Some(HeaderValue::String(s)) => s.as_str(),
        _ => "",
    }
}

/// The frames of a body, decoded by the SDK's own decoder, with their offsets.
fn frames(body: &[u8]) -> Vec<(usize, Message)> {
    let mut decoder = MessageFrameDecoder::new();
    let mut buf = body;
    let mut out = Vec::new();
    while !buf.is_empty() {
        let at = body.len() - buf.len();
        match decoder.decode_frame(&mut buf).unwrap() {
            DecodedFrame::Complete(m) => out.push((at, m)),
            DecodedFrame::Incomplete => panic!("partial frame"),
        }
    }
    out
}

/// What the SDK decoder reads in a body: trace count, chunk text.
fn expected(body: &[u8]) -> (usize, String) {
    let (traces, _, text) = expected_chunks(body);
    (traces, text)
}

/// Trace count, chunk count, chunk text.
fn expected_chunks(body: &[u8]) -> (usize, usize, String) {
    let mut traces = 0;
    let mut chunks = 0;
    let mut text = String::new();
    for (_, m) in frames(body) {
        match header(&m, ":event-type") {
            "trace" => traces += 1,
            "chunk" => {
                chunks += 1;
                let v: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
                let b = base64::engine::general_purpose::STANDARD
                    .decode(v["bytes"].as_str().unwrap())
                    .unwrap();
                text.push_str(&String::from_utf8(b).unwrap());
            }
            _ => {}
        }
    }
    (traces, chunks, text)
}

#[test]
fn simulator_eventstream_bodies_import_whole() {
    let (_d, store) = open_store();
    for (name, outcome) in [
        ("sim-kb.eventstream", Outcome::Finished),
        ("sim-payment.eventstream", Outcome::WaitingForHuman),
    ] {
        let body = std::fs::read(fixture(name)).unwrap();
        let (traces, text) = expected(&body);
        let (s, errors) = import_file(&store, name);
        assert!(errors.is_empty(), "{name}: {errors:?}");
        assert_eq!(s.format, Some("eventstream"));
        assert_eq!(s.invocations, 1, "{name}: one body is one invocation");
        assert_eq!(s.bytes, body.len() as u64);
        let rec = store.invocation(&s.invocation_ids[0]).unwrap().unwrap();
        assert_eq!(rec.outcome, outcome, "{name}");
        let chunks = u64::from(!text.is_empty());
        // returnControl is kept as an event of its own.
        let others = u64::from(outcome == Outcome::WaitingForHuman);
        assert_eq!(rec.events, traces as u64 + others, "{name}");
        assert_eq!(s.events, rec.events + rec.chunks);
        assert!(rec.chunks >= chunks);
        assert_eq!(store.chunk_text(&rec.start.request_id).unwrap(), text);
        assert!(rec.steps > 1 && rec.input_tokens > 0, "{name}: {rec:?}");
        assert!(rec.start.session_id.starts_with("fixture-raw-"));
    }
}

#[test]
fn a_corrupt_frame_is_named_by_offset_and_the_others_are_kept() {
    let (_d, store) = open_store();
    let mut body = std::fs::read(fixture("sim-kb.eventstream")).unwrap();
    let all = frames(&body);
    let (traces, _) = expected(&body);
    // Flip a payload byte of the third frame: its message CRC fails.
    let (at, m) = &all[2];
    assert_eq!(header(m, ":event-type"), "trace");
    let at = *at;
    body[at + 60] ^= 0x20;
    // And garbage between the fifth and sixth frames.
    let sixth = all[5].0;
    body.splice(sixth..sixth, b"garbage!".iter().copied());
    let (s, errors) = import_bytes(&store, "cut.eventstream", &body);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].location, Location::Offset(at as u64));
    assert!(
        errors[0].message.contains("checksum"),
        "{}",
        errors[0].message
    );
    assert_eq!(errors[1].location, Location::Offset(sixth as u64));
    assert!(
        errors[1].message.contains("skipped 8 byte(s)"),
        "{}",
        errors[1].message
    );
    let rec = store.invocation(&s.invocation_ids[0]).unwrap().unwrap();
    assert_eq!(rec.events, traces as u64 - 1);
    assert_eq!(rec.outcome, Outcome::Finished);
}

#[test]
fn boto3_json_array_and_jsonl_dumps_import() {
    let (_d, store) = open_store();
    let (pay, errors) = import_file(&store, "boto3-payment.json");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(pay.format, Some("json-array"));
    assert_eq!(
        pay.invocations, 2,
        "the turn that returned control, then its resume"
    );
    assert_eq!(pay.sessions, 1);
    let first = store.invocation(&pay.invocation_ids[0]).unwrap().unwrap();
    let second = store.invocation(&pay.invocation_ids[1]).unwrap().unwrap();
    assert_eq!(first.outcome, Outcome::WaitingForHuman);
    assert_eq!(second.outcome, Outcome::Finished);
    assert_eq!(first.start.session_id, "fixture-pay-1");
    // Chunk bytes were dumped as base64: decoded.
    let answer = store.chunk_text(&second.start.request_id).unwrap();
    assert!(
        !answer.is_empty() && answer.is_ascii() && answer.contains(' '),
        "{answer}"
    );
    assert_eq!(second.final_response.as_deref(), Some(answer.as_str()));

    let (kb, errors) = import_file(&store, "boto3-kb.jsonl");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(kb.format, Some("jsonl"));
    // Streamed final response: chunks interleave with guardrail traces, the final step's traces
    // come after them; all of it is one invocation.
    assert_eq!(kb.invocations, 1);
    let rec = store.invocation(&kb.invocation_ids[0]).unwrap().unwrap();
    assert_eq!(rec.outcome, Outcome::Finished);
    assert!(rec.chunks > 1);
    // Chunk bytes were dumped with default=str (`b'...'`): unescaped.
    let text = store.chunk_text(&rec.start.request_id).unwrap();
    assert_eq!(rec.final_response.as_deref(), Some(text.as_str()));
    // boto3's datetimes, written by str() with a space, parse.
    let events = store.events(&rec.start.request_id, 0, 5).unwrap();
    assert!(events.iter().all(|e| e.event_time.is_some()), "{events:?}");
}

#[test]
fn hand_written_parts_keep_unknowns_nanoseconds_and_name_bad_lines() {
    let (_d, store) = open_store();
    let (s, errors) = import_file(&store, "handwritten-parts.jsonl");
    assert_eq!(s.format, Some("jsonl"));
    let at: Vec<Location> = errors.iter().map(|e| e.location).collect();
    assert_eq!(at, [Location::Line(5), Location::Line(6)], "{errors:?}");
    assert!(
        errors[1].message.contains("found an array"),
        "{}",
        errors[1].message
    );
    assert_eq!(s.events, 10);
    assert_eq!(s.invocations, 2);
    assert_eq!(
        s.sessions, 1,
        "the collaborator's session is its caller's turn"
    );
    let first = store.invocation(&s.invocation_ids[0]).unwrap().unwrap();
    assert_eq!(first.outcome, Outcome::Finished);
    assert_eq!(
        first.final_response.as_deref(),
        Some("Order 42 was refunded.")
    );
    assert_eq!(first.latency_ms, Some(3114));
    assert_eq!(first.input_tokens, 1200);
    assert_eq!(
        first.start.started_at,
        Utc.timestamp_opt(1_741_976_234, 9_000_000).unwrap(),
        "the store keeps milliseconds"
    );
    assert_eq!(first.events, 7);
    assert_eq!(first.steps, 4);
    assert_eq!(
        store.chunk_text(&first.start.request_id).unwrap(),
        "Order 42 was refunded."
    );
    let events = store.events(&first.start.request_id, 0, 100).unwrap();
    assert_eq!(
        events[0].event_time.as_deref(),
        Some("2025-03-14T18:17:14.009573108Z")
    );
    // Unknown fields stay in the raw JSON.
    assert_eq!(events[0].raw["approximateTime"], "2025-03-14T18:17:14Z");
    assert_eq!(
        events[0].raw["trace"]["orchestrationTrace"]["modelInvocationInput"]["inferenceConfiguration"]
            ["__type"],
        "com.amazon.bedrock.agent.orchestration.type#InferenceConfiguration"
    );
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "orchestration/model-input",
            "orchestration/model-output",
            "orchestration/rationale",
            "unknown(memoryRecallTrace)",
            "orchestration/unknown(plannerNote)",
            "orchestration/observation",
            "orchestration/observation",
        ]
    );
    assert_eq!(events[3].raw["trace"]["memoryRecallTrace"]["recalled"], 3);
    let second = store.invocation(&s.invocation_ids[1]).unwrap().unwrap();
    assert_eq!(second.outcome, Outcome::WaitingForHuman);
    let events = store.events(&second.start.request_id, 0, 100).unwrap();
    assert_eq!(events[1].kind, "unknown(returnControl)");
    assert_eq!(events[1].raw["returnControl"]["invocationId"], "5e6f-roc-1");
}

#[test]
fn hand_written_pretty_array_names_the_bad_element_line() {
    let (_d, store) = open_store();
    let (s, errors) = import_file(&store, "handwritten-events.json");
    assert_eq!(s.format, Some("json-array"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    // `{ "trace": 5 }` is on line 19 of the file.
    assert_eq!(errors[0].location, Location::Line(19));
    assert_eq!(s.invocations, 2);
    let first = store.invocation(&s.invocation_ids[0]).unwrap().unwrap();
    assert_eq!(first.outcome, Outcome::Finished);
    assert_eq!(
        store.chunk_text(&first.start.request_id).unwrap(),
        "It's sunny \u{2600}"
    );
    let events = store.events(&first.start.request_id, 0, 100).unwrap();
    assert_eq!(events.last().unwrap().kind, "unknown(newStreamEvent)");
    let second = store.invocation(&s.invocation_ids[1]).unwrap().unwrap();
    assert_eq!(second.outcome, Outcome::Exception);
    assert_eq!(
        second.error.as_deref(),
        Some("throttlingException: Rate exceeded")
    );
}

#[test]
fn importing_twice_adds_nothing_and_an_interrupted_import_resumes() {
    let (_d, store) = open_store();
    let (a, _) = import_file(&store, "boto3-payment.json");
    let before: Vec<_> = a
        .invocation_ids
        .iter()
        .map(|id| store.invocation(id).unwrap().unwrap())
        .collect();
    let (b, _) = import_file(&store, "boto3-payment.json");
    assert_eq!(b.invocation_ids, a.invocation_ids);
    assert_eq!(b.already_imported, 2);
    let after: Vec<_> = b
        .invocation_ids
        .iter()
        .map(|id| store.invocation(id).unwrap().unwrap())
        .collect();
    assert_eq!(before, after);
    assert_eq!(store.invocations("fixture-pay-1", 0, 100).unwrap().len(), 2);

    // An import killed mid-file left a running invocation with a prefix of its events: the
    // next import appends the rest, once.
    let (_d2, store2) = open_store();
    let body = std::fs::read(fixture("sim-kb.eventstream")).unwrap();
    let (full, _) = import_bytes(&store, "sim-kb.eventstream", &body);
    let whole = store.invocation(&full.invocation_ids[0]).unwrap().unwrap();
    let first_three = frames(&body)[3].0;
    let id = full.invocation_ids[0].clone();
    let events = store.events(&id, 0, 3).unwrap();
    store2
        .write_turn(&agentdeck::store::run::TurnWrite {
            request_id: &id,
            start: Some(&whole.start),
            events: &events
                .iter()
                .map(agentdeck::store::StoredEvent::event)
                .collect::<Vec<_>>(),
            chunks: &[],
            end: None,
        })
        .unwrap();
    assert!(first_three > 0);
    let (resumed, _) = import_bytes(&store2, "sim-kb.eventstream", &body);
    assert_eq!(resumed.already_imported, 0);
    let rec = store2.invocation(&id).unwrap().unwrap();
    assert_eq!(
        (rec.events, rec.steps, rec.chunks),
        (whole.events, whole.steps, whole.chunks)
    );
    assert_eq!(rec.outcome, Outcome::Finished);
    let a = store.events(&id, 0, 1000).unwrap();
    let b = store2.events(&id, 0, 1000).unwrap();
    assert_eq!(a, b);
}

/// A body captured live from the simulator over HTTP/1.0 (no chunked encoding to undo).
fn capture(addr: &str, path: &str, body: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=AKIDTEST/20250314/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(all.starts_with(b"HTTP/1.1 200") || all.starts_with(b"HTTP/1.0 200"));
    all.split_off(split + 4)
}

#[test]
fn a_body_captured_live_from_the_simulator_imports_through_the_binary() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(async {
        start(SimConfig {
            time_scale: 0.0,
            ..SimConfig::builtin().unwrap()
        })
        .await
        .unwrap()
    });
    let addr = sim.endpoint().trim_start_matches("http://").to_owned();
    let body = capture(
        &addr,
        "/agents/KBAGENT003/agentAliases/LIVE/sessions/live-1/text",
        r#"{"inputText":"what is the travel policy?","enableTrace":true}"#,
    );
    let (traces, chunks, _) = expected_chunks(&body);
    let sb = Sandbox::new();
    let path = sb.path("live.bin");
    std::fs::write(&path, &body).unwrap();
    let bad = sb.path("bad.jsonl");
    std::fs::write(&bad, "{\"chunk\": {\"bytes\": \"aGk=\"}}\nnot json\n").unwrap();
    let p = path.to_str().unwrap();
    let out = sb.run(&["import", p, "--json"]).code(0).json();
    assert_eq!(out[0]["events"], (traces + chunks) as u64);
    assert_eq!(out[0]["invocations"], 1);
    let again = sb.run(&["import", p]);
    again.code(0).out_has(&[
        "eventstream",
        "1 invocations (1 already imported)",
        "0 errors",
    ]);
    // A rejected line: named with its file and line, the rest kept, exit 2.
    let r = sb.run(&["import", bad.to_str().unwrap(), p]);
    r.code(2)
        .err_has(&["bad.jsonl: line 2:", "1 record(s) rejected"]);
    r.out_has(&["bad.jsonl: jsonl, 38 bytes, 1 events", "1 error"]);
    // Without enableTrace a body holds only chunks and names no session: --session gives it.
    let quiet = capture(
        &addr,
        "/agents/KBAGENT003/agentAliases/LIVE/sessions/quiet-1/text",
        r#"{"inputText":"what is the travel policy?"}"#,
    );
    let (traces, chunks, text) = expected_chunks(&quiet);
    assert_eq!(traces, 0);
    let quiet_path = sb.path("quiet.bin");
    std::fs::write(&quiet_path, &quiet).unwrap();
    let out = sb
        .run(&[
            "import",
            quiet_path.to_str().unwrap(),
            "--session",
            "quiet-1",
            "--json",
        ])
        .code(0)
        .json();
    assert_eq!(out[0]["events"], chunks as u64);
    let shown = sb
        .run(&["traces", "show", "quiet-1", "--json"])
        .code(0)
        .json();
    assert_eq!(shown["turns"][0]["outcome"], "finished");
    assert!(!text.is_empty());
    let traces_out = sb.run(&["traces", "--json"]).code(0).json();
    let sessions: Vec<&str> = traces_out
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sessionId"].as_str().unwrap())
        .collect();
    assert!(sessions.contains(&"live-1"), "{sessions:?}");
    assert!(
        sessions
            .iter()
            .any(|s| s.starts_with("import:") && s.ends_with("bad.jsonl")),
        "{sessions:?}"
    );
    drop(sim);
}
