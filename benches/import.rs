//! Import throughput: reading a recording (parse + map every record to the domain's
//! `TraceEvent`) against plain `serde_json::from_slice::<serde_json::Value>` over the same bytes,
//! and the whole import into SQLite on disk. Samples are boto3-style JSONL and a JSON array of
//! the same events, generated here (`sample`).
//!
//! Run: `cargo bench --bench import`.
//! Write a large sample instead: `AGENTDECK_IMPORT_SAMPLE=PATH AGENTDECK_IMPORT_STEPS=1000000
//! cargo bench --bench import` (one invocation of that many steps, JSONL), then time
//! `agentdeck import PATH`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::Write;

use chrono::{Duration, TimeZone, Utc};
use criterion::{BatchSize, Criterion, Throughput};
use serde_json::{Value, json};

use agentdeck::bedrock::import::{FileSummary, ImportOptions, import};
use agentdeck::bedrock::recording::{ChunkBytes, Format, Item, Record, Recording};
use agentdeck::store::run::{InvocationStart, TraceStore, TurnWrite};
use agentdeck::store::sqlite::SqliteStore;

/// Writes one session's invocation of `steps` reasoning steps as boto3 stream events, one per
/// line (each step: a model output with usage and nanosecond timing, and its rationale; every
/// 50th step also the prompt it was given), then the final response and the answer's chunk.
pub fn sample(steps: usize, out: &mut dyn Write) -> std::io::Result<()> {
    let t0 = Utc.with_ymd_and_hms(2025, 3, 14, 18, 0, 0).unwrap();
    let request = "5f2b9c1e-7d3a-4e8b-9a61-0c2d4e6f8a10";
    let part = |i: usize, at: chrono::DateTime<Utc>, trace: Value| {
        json!({ "trace": {
            "agentId": "BENCHAGT01", "agentAliasId": "TSTALIASID", "agentVersion": "7",
            "sessionId": "bench-session-1",
            "eventTime": at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "callerChain": [{ "agentAliasArn": "arn:aws:bedrock:us-east-1:123456789012:agent-alias/BENCHAGT01/TSTALIASID" }],
            "trace": trace,
            "approximateStep": i,
        }})
    };
    let prompt =
        "You are a payments assistant. Decide the next action from the tools below. ".repeat(24);
    for i in 0..steps {
        let trace_id = format!("{request}-{i}");
        let at = t0 + Duration::nanoseconds(i as i64 * 1_234_567_891);
        if i % 50 == 0 {
            let e = part(
                i,
                at,
                json!({ "orchestrationTrace": { "modelInvocationInput": {
                    "traceId": trace_id, "text": prompt, "type": "ORCHESTRATION",
                    "foundationModel": "anthropic.claude-3-5-sonnet-20240620-v1:0",
                    "inferenceConfiguration": { "maximumLength": 2048, "temperature": 0.0, "topP": 1.0 },
                    "promptCreationMode": "DEFAULT", "parserMode": "DEFAULT" } } }),
            );
            writeln!(out, "{e}")?;
        }
        let end = at + Duration::nanoseconds(987_654_321);
        let output = part(
            i,
            end,
            json!({ "orchestrationTrace": { "modelInvocationOutput": {
                "traceId": trace_id,
                "rawResponse": { "content": format!("<thinking>Step {i}: check the payee, then the amount limit.</thinking>") },
                "metadata": {
                    "startTime": at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    "endTime": end.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    "totalTimeMs": 987, "usage": { "inputTokens": 1200 + i % 300, "outputTokens": 40 } } } } }),
        );
        writeln!(out, "{output}")?;
        let rationale = part(
            i,
            end,
            json!({ "orchestrationTrace": { "rationale": {
                "traceId": trace_id,
                "text": format!("Step {i}: check the payee, then the amount limit.") } } }),
        );
        writeln!(out, "{rationale}")?;
    }
    let at = t0 + Duration::nanoseconds(steps as i64 * 1_234_567_891);
    let answer = "The payment of 250 EUR to acct-7 was made.";
    let done = part(
        steps,
        at,
        json!({ "orchestrationTrace": { "observation": {
            "traceId": format!("{request}-{steps}"), "type": "FINISH",
            "finalResponse": { "text": answer, "metadata": { "operationTotalTimeMs": 1000 } } } } }),
    );
    writeln!(out, "{done}")?;
    let chunk = json!({ "chunk": { "bytes": base64_of(answer) } });
    writeln!(out, "{chunk}")
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn jsonl(steps: usize) -> Vec<u8> {
    let mut out = Vec::new();
    sample(steps, &mut out).unwrap();
    out
}

/// The same events as one JSON array.
fn array(lines: &[u8]) -> Vec<u8> {
    let mut out = b"[\n".to_vec();
    for (i, line) in lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.extend_from_slice(b",\n");
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"\n]\n");
    out
}

fn read_all(bytes: &[u8], format: Format) -> usize {
    let mut r = Recording::new(bytes, Some(format), ChunkBytes::Auto).unwrap();
    let mut n = 0;
    while let Some(item) = r.next_item().unwrap() {
        match item {
            Item::Good(record, _) => {
                std::hint::black_box(&record);
                n += 1;
            }
            Item::Bad(at, e) => panic!("{at}: {e}"),
        }
    }
    n
}

fn import_into(store: &SqliteStore, bytes: &[u8]) -> FileSummary {
    import(
        store,
        bytes,
        "bench.jsonl",
        Utc::now(),
        &ImportOptions {
            format: None,
            chunks: ChunkBytes::Auto,
            session: None,
        },
        &mut |r| panic!("{r:?}"),
        &mut |_| {},
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let lines = jsonl(5_000);
    let arr = array(&lines);
    let records = memchr::memchr_iter(b'\n', &lines).count();
    assert_eq!(read_all(&lines, Format::Jsonl), records);
    assert_eq!(read_all(&arr, Format::JsonArray), records);

    let mut g = c.benchmark_group("import/jsonl");
    g.throughput(Throughput::Bytes(lines.len() as u64));
    g.bench_function("serde_json::Value per line", |b| {
        b.iter(|| {
            let mut n = 0;
            for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let v: Value = serde_json::from_slice(line).unwrap();
                std::hint::black_box(&v);
                n += 1;
            }
            assert_eq!(n, records);
        });
    });
    g.bench_function("read + map", |b| {
        b.iter(|| assert_eq!(read_all(&lines, Format::Jsonl), records));
    });
    g.finish();

    let mut g = c.benchmark_group("import/json-array");
    g.throughput(Throughput::Bytes(arr.len() as u64));
    g.bench_function("serde_json::Value whole array", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(&arr).unwrap();
            assert_eq!(v.as_array().map(Vec::len), Some(records));
        });
    });
    g.bench_function("read + map", |b| {
        b.iter(|| assert_eq!(read_all(&arr, Format::JsonArray), records));
    });
    g.finish();

    // The same bytes as the groups above. Opening the fresh store (its migrations) and closing
    // it (the WAL checkpoint) are outside the timing: the routine returns the store.
    let mut g = c.benchmark_group("import/sqlite");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(lines.len() as u64));
    g.bench_function("whole import into a fresh store", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                // As `agentdeck import` opens its store.
                let store = SqliteStore::open_for_import(&dir.path().join("import.db")).unwrap();
                (dir, store)
            },
            |(dir, store)| {
                assert_eq!(import_into(&store, &lines).steps, 5_001);
                (dir, store)
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

/// The store's side alone, on one thread: the 5,000-step sample read into memory first, then
/// only its writes timed, in the import's batches (`AGENTDECK_IMPORT_PASS=writer`).
fn writer_only() -> usize {
    let lines = jsonl(5_000);
    let mut r = Recording::new(&lines[..], Some(Format::Jsonl), ChunkBytes::Auto).unwrap();
    let mut events = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        if let Item::Good(Record::Trace(e), _) = item {
            events.push(e);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_for_import(&dir.path().join("import.db")).unwrap();
    let start = InvocationStart {
        request_id: "bench-1".into(),
        agent_id: "BENCHAGT01".into(),
        agent_alias_id: "TSTALIASID".into(),
        session_id: "bench-session-1".into(),
        input_text: None,
        resumes: None,
        started_at: Utc::now(),
    };
    let t = std::time::Instant::now();
    for (i, batch) in events.chunks(agentdeck::bedrock::import::BATCH).enumerate() {
        store
            .write_turn(&TurnWrite {
                request_id: "bench-1",
                start: (i == 0).then_some(&start),
                events: batch,
                chunks: &[],
                end: None,
            })
            .unwrap();
    }
    println!(
        "writes alone: {:?} for {} events",
        t.elapsed(),
        events.len()
    );
    events.len()
}

fn main() {
    if let Some(path) = std::env::var_os("AGENTDECK_IMPORT_SAMPLE") {
        let steps = std::env::var("AGENTDECK_IMPORT_STEPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_000_000);
        let file = std::fs::File::create(&path).unwrap();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        sample(steps, &mut out).unwrap();
        out.flush().unwrap();
        println!("wrote {steps} steps to {}", path.to_string_lossy());
        return;
    }
    // One pass of one reader over a 2,000-step sample, for instruction counts that machine load
    // does not distort: `valgrind --tool=callgrind <bench binary>` with AGENTDECK_IMPORT_PASS set.
    if let Ok(pass) = std::env::var("AGENTDECK_IMPORT_PASS") {
        let lines = jsonl(2_000);
        let arr = array(&lines);
        let n = match pass.as_str() {
            "value" => lines
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .inspect(|l| {
                    std::hint::black_box(serde_json::from_slice::<Value>(l).unwrap());
                })
                .count(),
            "map" => read_all(&lines, Format::Jsonl),
            "array-value" => serde_json::from_slice::<Value>(&arr)
                .unwrap()
                .as_array()
                .map_or(0, Vec::len),
            "array-map" => read_all(&arr, Format::JsonArray),
            "sqlite" => {
                let dir = tempfile::tempdir().unwrap();
                let store = SqliteStore::open_for_import(&dir.path().join("import.db")).unwrap();
                import_into(&store, &lines).events as usize
            }
            "writer" => writer_only(),
            "none" => 0,
            other => panic!(
                "AGENTDECK_IMPORT_PASS={other}: value, map, array-value, array-map, sqlite, \
                 writer, none"
            ),
        };
        println!("{pass}: {n} records, {} bytes", lines.len());
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
