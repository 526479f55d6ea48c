//! Golden streams: the simulator's whole answers (status, request id, body bytes) for a fixed
//! set of invocations across every built-in agent -- new input, returns of control answered
//! with results, confirmation, denial, failure and reprompt, collaborators, knowledge base,
//! guardrail, code interpreter, custom orchestration, trace off, streamed final responses, and
//! injected faults -- at seed 0 with the wall clock frozen, hashed per invocation. A change in
//! what the simulator sends (an event, a field, a value, key order, framing) changes a hash.
//!
//! `AGENTDECK_SIM_GOLDEN_DUMP=DIR` also writes every body to DIR, to diff two builds byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::format_push_string)]

use std::fmt::Write as _;
use std::time::Duration;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::HeaderValue;
use chrono::TimeZone as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::sim_support::{AUTH, raw};
use agentdeck::sim::fault::{Chance, Corrupt, ExceptionFault};
use agentdeck::sim::{Faults, SimConfig, SimHandle, start};

const AGENTS: [(&str, &str); 6] = [
    ("PAYAGENT01", "PRODALIAS"),
    ("PAYAGENT01", "TSTALIASID"),
    ("KBAGENT003", "LIVE"),
    ("SUPERVISR1", "LIVE"),
    ("OPSAGENT02", "LIVE"),
    ("CUSTORCH01", "LIVE"),
];

const INPUTS: [&str; 14] = [
    "pay 250 EUR to acct-7",
    "transfer $1,500.75 to the account DE-44",
    "what is my balance",
    "refund order 77 please",
    "close account acct-9",
    "delete cluster c-1",
    "what is the travel policy?",
    "how many vacation days off do I get?",
    "what is my password?",
    "soft fail now",
    "this will fail",
    "run some code on the numbers",
    "hello there",
    "say \"hi\" <b>& bye</b> \u{e9}\u{1F600}",
];

/// How a return of control is answered.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Confirm,
    Deny,
    Failure,
    Reprompt,
}

struct Reply {
    status: u16,
    request_id: String,
    body: Vec<u8>,
}

async fn post(h: &SimHandle, path: &str, body: &str) -> Reply {
    let r = raw(h, path, Some(AUTH), body).await;
    Reply {
        status: r.status,
        request_id: r.header("x-amzn-requestid").unwrap_or_default().to_owned(),
        body: r.body(),
    }
}

/// The payload of the stream's returnControl event, if it has one (and its frames decode).
fn return_control(body: &[u8]) -> Option<Value> {
    let mut decoder = MessageFrameDecoder::new();
    let mut buf = body;
    while !buf.is_empty() {
        let Ok(DecodedFrame::Complete(m)) = decoder.decode_frame(&mut buf) else {
            return None;
        };
        let roc = m.headers().iter().any(|h| {
            h.name().as_str() == ":event-type"
                && matches!(h.value(), HeaderValue::String(s) if s.as_str() == "returnControl")
        });
        if roc {
            return serde_json::from_slice(m.payload()).ok();
        }
    }
    None
}

/// The resume request answering every input of a returnControl payload the same way.
fn resume_body(roc: &Value, answer: Answer, round: u32) -> String {
    let results: Vec<Value> = roc["invocationInputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|input| {
            let (kind, inner) = match input.get("functionInvocationInput") {
                Some(f) => ("functionResult", f),
                None => ("apiResult", &input["apiInvocationInput"]),
            };
            let mut r = json!({ "actionGroup": inner["actionGroup"] });
            for k in ["function", "apiPath", "httpMethod", "agentId"] {
                if let Some(v) = inner.get(k) {
                    r[k] = v.clone();
                }
            }
            let confirm = inner["actionInvocationType"]
                .as_str()
                .is_some_and(|t| t.starts_with("USER_CONFIRMATION"));
            let text = format!("{{\"ok\": true, \"round\": {round}, \"answer\": \"{answer:?}\"}}");
            match answer {
                Answer::Confirm if confirm => r["confirmationState"] = json!("CONFIRM"),
                Answer::Deny if confirm => r["confirmationState"] = json!("DENY"),
                Answer::Failure => r["responseState"] = json!("FAILURE"),
                Answer::Reprompt => r["responseState"] = json!("REPROMPT"),
                Answer::Confirm | Answer::Deny => {}
            }
            if kind == "functionResult" {
                r["responseBody"] = json!({ "TEXT": { "body": text } });
            } else {
                r["responseBody"] = json!({ "application/json": { "body": text } });
                r["httpStatusCode"] = json!(200);
            }
            json!({ kind: r })
        })
        .collect();
    json!({
        "enableTrace": true,
        "sessionState": {
            "invocationId": roc["invocationId"],
            "returnControlInvocationResults": results,
        }
    })
    .to_string()
}

struct Golden {
    lines: String,
    dump: Option<std::path::PathBuf>,
}

impl Golden {
    fn record(&mut self, name: &str, r: &Reply) {
        let digest = sha2::Sha256::digest(&r.body);
        let hex: String = digest[..12].iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        let _ = writeln!(
            self.lines,
            "{name}: {} {} {}B {hex}",
            r.status,
            r.request_id,
            r.body.len()
        );
        if let Some(dir) = &self.dump {
            let file = name.replace(['/', ' '], "_");
            std::fs::write(dir.join(file), &r.body).unwrap();
        }
    }
}

fn path(agent: &str, alias: &str, session: &str) -> String {
    format!("/agents/{agent}/agentAliases/{alias}/sessions/{session}/text")
}

/// One conversation: the first turn, then returns of control answered as `answers` says.
async fn conversation(
    h: &SimHandle,
    g: &mut Golden,
    name: &str,
    (agent, alias): (&str, &str),
    first: &Value,
    answers: &[Answer],
) {
    let p = path(agent, alias, name);
    let mut r = post(h, &p, &first.to_string()).await;
    g.record(&format!("{name}/0"), &r);
    for (round, answer) in (1_u32..).zip(answers) {
        let Some(roc) = return_control(&r.body) else {
            return;
        };
        r = post(h, &p, &resume_body(&roc, *answer, round)).await;
        g.record(&format!("{name}/{round}-{answer:?}"), &r);
    }
}

async fn golden_sim(time_scale: f64, faults: Faults) -> SimHandle {
    let h = start(SimConfig {
        time_scale,
        faults,
        ..SimConfig::builtin().unwrap()
    })
    .await
    .unwrap();
    h.freeze_wall_clock(
        chrono::Utc
            .with_ymd_and_hms(2025, 3, 14, 18, 17, 14)
            .unwrap()
            + chrono::Duration::nanoseconds(9_573_108),
    );
    h
}

#[tokio::test]
async fn simulator_streams_are_byte_for_byte_unchanged() {
    let dump = std::env::var_os("AGENTDECK_SIM_GOLDEN_DUMP").map(std::path::PathBuf::from);
    if let Some(d) = &dump {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut g = Golden {
        lines: String::new(),
        dump,
    };
    let h = golden_sim(0.0, Faults::default()).await;
    let plans: [&[Answer]; 4] = [
        &[Answer::Confirm, Answer::Confirm],
        &[Answer::Deny],
        &[Answer::Failure],
        &[Answer::Reprompt, Answer::Confirm],
    ];
    for (a, &(agent, alias)) in AGENTS.iter().enumerate() {
        for (i, input) in INPUTS.iter().enumerate() {
            let first = json!({ "inputText": input, "enableTrace": true });
            conversation(
                &h,
                &mut g,
                &format!("a{a}-i{i}"),
                (agent, alias),
                &first,
                plans[0],
            )
            .await;
            // The other answers only where the first turn returned control.
            let probe = post(
                &h,
                &path(agent, alias, &format!("probe-{a}-{i}")),
                &first.to_string(),
            )
            .await;
            if return_control(&probe.body).is_some() {
                for (k, plan) in plans.iter().enumerate().skip(1) {
                    let name = format!("a{a}-i{i}-p{k}");
                    conversation(&h, &mut g, &name, (agent, alias), &first, plan).await;
                }
            }
        }
    }
    // Request options: trace off, streamed final response, session attributes, memory.
    let options = [
        json!({ "inputText": "what is the travel policy?" }),
        json!({ "inputText": "what is the travel policy?", "enableTrace": true,
                "streamingConfigurations": { "streamFinalResponse": true, "applyGuardrailInterval": 20 } }),
        json!({ "inputText": "what is my password?", "enableTrace": true,
                "streamingConfigurations": { "streamFinalResponse": true } }),
        json!({ "inputText": "pay 90 GBP to acct-3", "enableTrace": true, "memoryId": "mem-1",
                "sessionState": { "sessionAttributes": { "tier": "gold" } } }),
        json!({ "inputText": "pay 90 GBP to acct-3", "endSession": true }),
    ];
    for (k, first) in options.iter().enumerate() {
        for &(agent, alias) in &[AGENTS[2], AGENTS[3]] {
            let name = format!("opt{k}-{agent}");
            conversation(&h, &mut g, &name, (agent, alias), first, &[Answer::Confirm]).await;
        }
    }
    // Requests the simulator refuses.
    let bad = post(
        &h,
        &path("PAYAGENT01", "PRODALIAS", "bad"),
        "{\"inputText\": 5}",
    )
    .await;
    g.record("bad-input", &bad);
    let gone = post(
        &h,
        &path("NOAGENT", "LIVE", "bad"),
        "{\"inputText\": \"hi\"}",
    )
    .await;
    g.record("no-agent", &gone);
    h.shutdown().await;

    // Scaled time: timestamps and durations move with the scripted latencies.
    let h = golden_sim(0.002, Faults::default()).await;
    for (a, &(agent, alias)) in AGENTS.iter().enumerate() {
        let first = json!({ "inputText": INPUTS[a * 2], "enableTrace": true });
        conversation(
            &h,
            &mut g,
            &format!("scaled-a{a}"),
            (agent, alias),
            &first,
            &[Answer::Confirm],
        )
        .await;
    }
    h.shutdown().await;

    // Faults: throttling, exception frames, corrupt and truncated frames (seeded draws).
    let chance = |probability| Chance {
        value: ExceptionFault {
            after_frames: 3,
            exception_type: "internalServerException".to_owned(),
        },
        probability,
    };
    let faulty = [
        Faults {
            throttle: 0.3,
            exception: Some(chance(0.4)),
            ..Faults::default()
        },
        Faults {
            corrupt: Some(Chance {
                value: Corrupt::Flip,
                probability: 0.5,
            }),
            ..Faults::default()
        },
        Faults {
            corrupt: Some(Chance {
                value: Corrupt::Truncate,
                probability: 0.5,
            }),
            stall: Some(Chance {
                value: Duration::from_millis(1),
                probability: 0.5,
            }),
            ..Faults::default()
        },
    ];
    for (f, faults) in faulty.into_iter().enumerate() {
        let h = golden_sim(0.0, faults).await;
        for (a, &(agent, alias)) in AGENTS.iter().enumerate() {
            for i in [0, 2, 6, 10] {
                let first = json!({ "inputText": INPUTS[i], "enableTrace": true });
                let name = format!("fault{f}-a{a}-i{i}");
                conversation(
                    &h,
                    &mut g,
                    &name,
                    (agent, alias),
                    &first,
                    &[Answer::Confirm],
                )
                .await;
            }
        }
        h.shutdown().await;
    }
    insta::assert_snapshot!(g.lines);
}
