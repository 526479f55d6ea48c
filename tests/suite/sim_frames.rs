//! The simulator's bytes: golden event-stream frames checked against Python's zlib-computed bytes,
//! a hand-written CRC32 and the smithy decoder; and the raw HTTP exchange (headers, chunked
//! encoding with frames split across chunks, error shapes) read with a bare TCP client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::format_collect,
    clippy::format_push_string
)]

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder, read_message_from};
use aws_smithy_types::event_stream::{HeaderValue, Message};

use crate::sim_support::{AUTH, raw};
use agentdeck::sim::frame::{self, EventType};
use agentdeck::sim::{Faults, SimConfig, SimHandle, start};

/// CRC-32/IEEE, bit by bit: an implementation independent of the crates under test.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn header_str<'a>(m: &'a Message, name: &str) -> &'a str {
    let h = m
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .unwrap();
    match h.value() {
        HeaderValue::String(s) => s.as_str(),
        other => panic!("{name} is not a string header: {other:?}"),
    }
}

// Computed with Python's struct + zlib.crc32 from the format description, not from this code.
const TRACE_FRAME: &str = "000000620000004b67de635c0b3a6576656e742d7479706507000574726163650d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b2261223a317d69680266";
const EXCEPTION_FRAME: &str = "0000008300000061a9d144e50f3a657863657074696f6e2d747970650700137468726f74746c696e67457863657074696f6e0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d74797065070009657863657074696f6e7b226d657373616765223a22626f6f6d227d0dcbbc54";

#[test]
fn trace_frame_bytes_are_exact() {
    let bytes = frame::event(EventType::Trace, br#"{"a":1}"#);
    assert_eq!(hex(&bytes), TRACE_FRAME);
    // prelude: total length 98, headers length 75, then the CRC of those 8 bytes
    assert_eq!(&bytes[0..8], &[0, 0, 0, 98, 0, 0, 0, 75]);
    assert_eq!(crc32(&bytes[0..8]), 0x67de_635c);
    assert_eq!(
        u32::from_be_bytes(bytes[8..12].try_into().unwrap()),
        crc32(&bytes[0..8])
    );
    let n = bytes.len();
    assert_eq!(
        u32::from_be_bytes(bytes[n - 4..].try_into().unwrap()),
        crc32(&bytes[..n - 4])
    );
    // every header is a String (type 7)
    assert_eq!(bytes[12], 11);
    assert_eq!(&bytes[13..24], b":event-type");
    assert_eq!(bytes[24], 7);

    let m = read_message_from(&bytes[..]).unwrap();
    assert_eq!(header_str(&m, ":message-type"), "event");
    assert_eq!(header_str(&m, ":event-type"), "trace");
    assert_eq!(header_str(&m, ":content-type"), "application/json");
    assert_eq!(&m.payload()[..], br#"{"a":1}"#);
}

#[test]
fn exception_frame_bytes_are_exact() {
    let bytes = frame::exception("throttlingException", "boom");
    assert_eq!(hex(&bytes), EXCEPTION_FRAME);
    assert_eq!(crc32(&bytes[0..8]), 0xa9d1_44e5);
    let mut decoder = MessageFrameDecoder::new();
    let mut buf = &bytes[..];
    let DecodedFrame::Complete(m) = decoder.decode_frame(&mut buf).unwrap() else {
        panic!("one complete frame")
    };
    assert_eq!(header_str(&m, ":message-type"), "exception");
    assert_eq!(header_str(&m, ":exception-type"), "throttlingException");
    assert_eq!(&m.payload()[..], br#"{"message":"boom"}"#);
}

#[test]
fn the_decoder_waits_for_a_split_frame() {
    let bytes = frame::event(EventType::Chunk, br#"{"bytes":"aGk="}"#);
    // As the SDK's receiver does: keep one buffer, append what arrives, decode again.
    let mut decoder = MessageFrameDecoder::new();
    let mut buf = bytes::BytesMut::from(&bytes[..10]);
    assert!(matches!(
        decoder.decode_frame(&mut buf).unwrap(),
        DecodedFrame::Incomplete
    ));
    buf.extend_from_slice(&bytes[10..]);
    assert!(matches!(
        decoder.decode_frame(&mut buf).unwrap(),
        DecodedFrame::Complete(_)
    ));
}

#[test]
fn a_flipped_byte_fails_the_crc() {
    let mut bytes = frame::event(EventType::Trace, br#"{"a":1}"#).to_vec();
    let k = bytes.len() - 5;
    bytes[k] ^= 0x20;
    assert!(read_message_from(&bytes[..]).is_err());
}

/// A simulator that splits about one frame in four across two HTTP chunks (`split=0.25`).
async fn sim() -> SimHandle {
    sim_splitting("split=0.25").await
}

async fn sim_splitting(faults: &str) -> SimHandle {
    start(SimConfig {
        time_scale: 0.0,
        faults: Faults::parse(faults).unwrap(),
        ..SimConfig::builtin().unwrap()
    })
    .await
    .unwrap()
}

/// Chunk ends that fall inside a frame, for a body read as `chunks`.
fn splits(chunks: &[Vec<u8>], body: &[u8]) -> usize {
    let mut ends = std::collections::BTreeSet::new();
    let (mut offset, mut buf) = (0usize, body);
    while buf.len() >= 4 {
        let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        offset += len;
        ends.insert(offset);
        buf = &buf[len..];
    }
    let mut at = 0;
    chunks
        .iter()
        .filter(|c| {
            at += c.len();
            !ends.contains(&at)
        })
        .count()
}

#[tokio::test]
async fn without_the_split_fault_every_frame_is_one_chunk() {
    for (faults, split) in [("", false), ("split=1", true)] {
        let h = sim_splitting(faults).await;
        let r = raw(
            &h,
            "/agents/KBAGENT003/agentAliases/LIVE/sessions/whole/text",
            Some(AUTH),
            r#"{"inputText":"what is the travel policy?","enableTrace":true}"#,
        )
        .await;
        assert_eq!(r.status, 200);
        let body = r.body();
        let frames = decode_all(&body).len();
        assert!(frames > 5, "{frames}");
        if split {
            assert_eq!(
                splits(&r.chunks, &body),
                frames,
                "split=1 splits every frame"
            );
        } else {
            assert_eq!(splits(&r.chunks, &body), 0, "{faults:?}");
            assert_eq!(r.chunks.len(), frames);
        }
        h.shutdown().await;
    }
}

fn decode_all(body: &[u8]) -> Vec<Message> {
    let mut decoder = MessageFrameDecoder::new();
    let mut buf = body;
    let mut out = Vec::new();
    while !buf.is_empty() {
        match decoder.decode_frame(&mut buf).unwrap() {
            DecodedFrame::Complete(m) => out.push(m),
            DecodedFrame::Incomplete => panic!("trailing partial frame"),
        }
    }
    out
}

#[tokio::test]
async fn response_headers_and_chunked_frames_are_bedrock_shaped() {
    let h = sim().await;
    let mut split_seen = false;
    for i in 0..6 {
        let r = raw(
            &h,
            &format!("/agents/KBAGENT003/agentAliases/LIVE/sessions/raw%3A{i}/text"),
            Some(AUTH),
            r#"{"inputText":"what is the travel policy?","enableTrace":true,"memoryId":"mem-1"}"#,
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("application/vnd.amazon.eventstream")
        );
        assert_eq!(
            r.header("x-amzn-bedrock-agent-content-type"),
            Some("application/json")
        );
        assert_eq!(
            r.header("x-amz-bedrock-agent-session-id"),
            Some(format!("raw:{i}").as_str())
        );
        assert_eq!(r.header("x-amz-bedrock-agent-memory-id"), Some("mem-1"));
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        let rid = r.header("x-amzn-requestid").unwrap().to_owned();
        assert_eq!(rid.len(), 36);
        // some frame is split across two HTTP chunks
        let body = r.body();
        split_seen |= splits(&r.chunks, &body) > 0;
        let messages = decode_all(&body);
        let traces: Vec<serde_json::Value> = messages
            .iter()
            .filter(|m| header_str(m, ":event-type") == "trace")
            .map(|m| serde_json::from_slice(m.payload()).unwrap())
            .collect();
        // region from the SigV4 credential scope; timestamps as RFC 3339 with nanoseconds
        let arn = traces[0]["callerChain"][0]["agentAliasArn"]
            .as_str()
            .unwrap();
        assert!(arn.starts_with("arn:aws:bedrock:eu-west-1:"), "{arn}");
        let t = traces[0]["eventTime"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok());
        assert_eq!(t.len(), "2025-03-14T18:17:14.009573108Z".len(), "{t}");
        let ids: Vec<&str> = traces
            .iter()
            .filter_map(|t| {
                t["trace"]
                    .as_object()
                    .and_then(|o| o.values().next())
                    .and_then(|v| v.as_object())
                    .and_then(|inner| {
                        inner
                            .values()
                            .find_map(|x| x.get("traceId"))
                            .or(inner.get("traceId"))
                    })
                    .and_then(|x| x.as_str())
            })
            .collect();
        assert!(ids.iter().all(|id| id.starts_with(&rid)), "{ids:?}");
        assert!(ids.iter().any(|id| id.ends_with("-guardrail-pre-0")));
        let chunk = messages
            .iter()
            .find(|m| header_str(m, ":event-type") == "chunk")
            .unwrap();
        let c: serde_json::Value = serde_json::from_slice(chunk.payload()).unwrap();
        assert!(c["bytes"].is_string());
    }
    assert!(
        split_seen,
        "the seeded coin split no frame in six responses"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn without_trace_only_chunks_are_sent() {
    let h = sim().await;
    let r = raw(
        &h,
        "/agents/PAYAGENT01/agentAliases/PRODALIAS/sessions/s-nt/text",
        Some(AUTH),
        r#"{"inputText":"balance of account x-1"}"#,
    )
    .await;
    let kinds: Vec<String> = decode_all(&r.body())
        .iter()
        .map(|m| header_str(m, ":event-type").to_owned())
        .collect();
    assert_eq!(kinds, vec!["chunk"]);
    h.shutdown().await;
}

#[tokio::test]
async fn errors_have_the_aws_shape() {
    let h = sim().await;
    let path = "/agents/PAYAGENT01/agentAliases/PRODALIAS/sessions/s-err/text";
    let r = raw(&h, path, None, "{}").await;
    assert_eq!(r.status, 403);
    assert!(
        r.header("x-amzn-errortype")
            .unwrap()
            .starts_with("MissingAuthenticationTokenException")
    );
    let body: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
    assert_eq!(body["message"], "Missing Authentication Token");
    assert_eq!(r.header("content-type"), Some("application/json"));

    let r = raw(&h, path, Some("Basic abc"), "{}").await;
    assert_eq!(r.status, 403);
    assert!(
        r.header("x-amzn-errortype")
            .unwrap()
            .starts_with("IncompleteSignatureException")
    );

    let r = raw(&h, path, Some(AUTH), "{not json").await;
    assert_eq!(r.status, 400);
    assert!(
        r.header("x-amzn-errortype")
            .unwrap()
            .starts_with("SerializationException")
    );

    let r = raw(
        &h,
        "/agents/TOOLONGAGENTID/agentAliases/LIVE/sessions/s-1/text",
        Some(AUTH),
        "{}",
    )
    .await;
    assert_eq!(r.status, 400);
    let body: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("1 validation error detected: Value 'TOOLONGAGENTID' at 'agentId'")
    );

    let r = raw(&h, "/nope", Some(AUTH), "{}").await;
    assert_eq!(r.status, 404);
    assert!(
        r.header("x-amzn-errortype")
            .unwrap()
            .starts_with("UnknownOperationException")
    );

    let r = raw(
        &h,
        path,
        Some(AUTH),
        r#"{"sessionState":{"invocationId":"x","returnControlInvocationResults":[]}}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.header("x-amzn-errortype")
            .unwrap()
            .starts_with("ValidationException")
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_stall_holds_the_stream_then_it_completes() {
    let h = start(SimConfig {
        time_scale: 0.0,
        faults: Faults::parse("stall=300ms").unwrap(),
        ..SimConfig::builtin().unwrap()
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let r = raw(
        &h,
        "/agents/PAYAGENT01/agentAliases/PRODALIAS/sessions/s-stall/text",
        Some(AUTH),
        r#"{"inputText":"balance","enableTrace":true}"#,
    )
    .await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert!(decode_all(&r.body()).len() > 3);
    h.shutdown().await;
}

#[tokio::test]
async fn time_scale_paces_the_scripted_latencies() {
    let h = start(SimConfig {
        time_scale: 0.05,
        ..SimConfig::builtin().unwrap()
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let r = raw(
        &h,
        "/agents/PAYAGENT01/agentAliases/PRODALIAS/sessions/s-pace/text",
        Some(AUTH),
        r#"{"inputText":"balance","enableTrace":true}"#,
    )
    .await;
    let elapsed = started.elapsed();
    let total_ms = decode_all(&r.body())
        .iter()
        .filter(|m| header_str(m, ":event-type") == "trace")
        .find_map(|m| {
            let v: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
            v["trace"]["orchestrationTrace"]["observation"]["finalResponse"]["metadata"]["operationTotalTimeMs"].as_u64()
        })
        .unwrap();
    // The scripted run took 20 times longer than the stream at 0.05; the trace states the time
    // the stream took (scaled like the pacing), so its client sees one clock.
    let in_trace = std::time::Duration::from_millis(total_ms);
    assert!(total_ms > 25, "{total_ms}");
    assert!(
        elapsed >= in_trace.mul_f64(0.9),
        "{elapsed:?} < {in_trace:?}"
    );
    assert!(
        elapsed < in_trace * 4 + std::time::Duration::from_millis(500),
        "{elapsed:?}"
    );
    h.shutdown().await;
}
