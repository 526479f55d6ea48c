#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The headless CLI end to end, through the real binary: submission and its strict validation
//! (every refusal names the field and the rule and writes nothing), the queue, decisions and
//! their refusals (exit codes 2/3), the audit log and its export, tampering found by
//! `audit verify`, an unavailable store (exit 4), usage and configuration errors.

use crate::bin_support;
use crate::moto;

use bin_support::{Sandbox, critical, doc, finish, function_input, high, low, medium, raised_ago};
use rusqlite::Connection;
use serde_json::{Value, json};

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------------------------
// submit, pending, show

#[test]
fn submit_from_a_file_and_from_stdin() {
    let sb = Sandbox::new();
    let file = sb.write_doc(&doc("file-0001", &[medium()]));
    let out = sb.run(&["submit", file.to_str().unwrap()]);
    out.code(0)
        .out_has(&["queued file-0001", "medium risk", "1 input"]);

    let body = serde_json::to_vec(&doc("stdin-0002", &[critical(), low()])).unwrap();
    let out = sb.run_stdin(&["submit", "-", "--json"], &body);
    out.code(0);
    let v = out.json();
    assert_eq!(v["id"], "stdin-0002");
    assert_eq!(v["tier"], "critical");
    assert_eq!(v["inputs"], 2);
    let expires = v["expiresAt"].as_str().unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    let left = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        (590..=600).contains(&left.num_seconds()),
        "the default TTL is 600 s; {left} left"
    );

    // With no file argument, submit reads stdin too.
    let body = serde_json::to_vec(&doc("stdin-0003", &[low()])).unwrap();
    sb.run_stdin(&["submit"], &body).code(0);

    let mut ids = sb.pending_ids();
    ids.sort();
    assert_eq!(ids, ["file-0001", "stdin-0002", "stdin-0003"]);
    let (code, report) = sb.verify();
    assert_eq!(code, 0);
    assert_eq!(report["entries"], 3);
}

/// Five requests submitted in scrambled order: the queue is riskiest first, then least time
/// left (the older medium request expires sooner).
fn ordered_store() -> Sandbox {
    let sb = Sandbox::new();
    sb.submit(&doc("ord-low", &[low()]));
    sb.submit(&doc("ord-med-new", &[medium()]));
    sb.submit(&doc("ord-high", &[high()]));
    sb.submit(&raised_ago(doc("ord-med-old", &[medium()]), 300));
    sb.submit(&doc("ord-crit", &[critical()]));
    sb
}

const ORDER: [&str; 5] = [
    "ord-crit",
    "ord-high",
    "ord-med-old",
    "ord-med-new",
    "ord-low",
];

#[test]
fn pending_json_is_riskiest_first_then_least_time_left() {
    let sb = ordered_store();
    let v = sb.run(&["pending", "--json"]).code(0).json();
    let rows = v.as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ORDER);
    let tiers: Vec<&str> = rows.iter().map(|r| r["tier"].as_str().unwrap()).collect();
    assert_eq!(tiers, ["critical", "high", "medium", "medium", "low"]);
    assert!(rows[2]["expires_at"].as_str() < rows[3]["expires_at"].as_str());
    assert_eq!(rows[0]["rule"], "large-payment");
    assert_eq!(rows[0]["key_params"], json!([["amount", "25000.00"]]));
}

#[test]
fn pending_text_is_in_the_same_order() {
    let sb = ordered_store();
    let out = sb.run(&["pending"]);
    out.code(0).out_has(&["TIER", "AGENT/ALIAS", "ACTION"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "a header and five rows:\n{}", out.stdout);
    for (line, id) in lines[1..].iter().zip(ORDER) {
        assert!(
            line.split_whitespace().any(|w| w == id),
            "expected {id} on {line:?}"
        );
    }
    assert!(lines[1].contains("critical") && lines[1].contains("amount=25000.00"));
    assert!(lines[5].contains("low") && lines[5].contains("customers.getBalance"));

    let empty = Sandbox::new();
    empty
        .run(&["pending"])
        .code(0)
        .out_has(&["no open requests"]);
}

#[test]
fn show_by_id_and_by_unambiguous_prefix() {
    let sb = ordered_store();
    let full = sb.show("ord-crit");
    let by_prefix = sb.show("ord-c");
    assert_eq!(full, by_prefix);
    assert_eq!(full["request"]["id"], "ord-crit");
    assert_eq!(full["status"], "pending");
    assert_eq!(full["tier"], "critical");
    let hashes = full["inputHashes"].as_array().unwrap();
    assert_eq!(hashes.len(), 1);
    assert!(is_sha256(hashes[0].as_str().unwrap()), "{hashes:?}");
    assert_eq!(full["decisions"], json!([]));

    let text = sb.run(&["show", "ord-h"]);
    text.code(0).out_has(&[
        "ord-high",
        "payments.transferFunds",
        "amount (string)",
        "5000",
        "payment",
        "The customer asked for it.",
    ]);
    let hash = sb.show("ord-high")["inputHashes"][0]
        .as_str()
        .unwrap()
        .to_owned();
    text.out_has(&[&hash]);
}

#[test]
fn ambiguous_prefix_and_unknown_id_are_bad_input() {
    let sb = ordered_store();
    sb.run(&["show", "ord-med"])
        .code(2)
        .err_has(&["\"ord-med\"", "matches 2 requests"]);
    sb.run(&["show", "nosuch"])
        .code(2)
        .err_has(&["no request matches \"nosuch\""]);
    sb.run(&["approve", "ord-"])
        .code(2)
        .err_has(&["\"ord-\"", "matches 5 requests"]);
    // Nothing was decided by the refused approve.
    assert_eq!(sb.pending_ids(), ORDER);
}

#[test]
fn a_duplicate_submit_is_a_conflict() {
    let sb = Sandbox::new();
    let d = doc("dup-0001", &[medium()]);
    sb.submit(&d);
    sb.try_submit(&d)
        .code(3)
        .err_has(&["dup-0001", "already in the store"]);
    assert_eq!(sb.pending_ids(), ["dup-0001"]);
    assert_eq!(sb.verify().1["entries"], 1);
}

// ---------------------------------------------------------------------------------------------
// validation: every refusal is exit 2, names the field and the rule, and writes nothing

fn base() -> Value {
    doc("val-0001", &[medium()])
}

fn input0(d: &mut Value) -> &mut Value {
    &mut d["returnControl"]["invocationInputs"][0]["functionInvocationInput"]
}

/// Needles starting with `.` are under the first invocation input.
const FIELD_0: &str = "returnControl.invocationInputs[0]";

type Case = (&'static str, fn(&mut Value), &'static [&'static str]);

const CASES: &[Case] = &[
    (
        "six invocation inputs",
        |d| d["returnControl"]["invocationInputs"] = json!(vec![medium(); 6]),
        &[
            "returnControl.invocationInputs:",
            "must hold 1 to 5 invocation inputs, got 6",
        ],
    ),
    (
        "zero invocation inputs",
        |d| d["returnControl"]["invocationInputs"] = json!([]),
        &[
            "returnControl.invocationInputs:",
            "must hold 1 to 5 invocation inputs, got 0",
        ],
    ),
    (
        "missing actionGroup",
        |d| {
            input0(d).as_object_mut().unwrap().remove("actionGroup");
        },
        &[".functionInvocationInput.actionGroup: is required"],
    ),
    (
        "missing function",
        |d| {
            input0(d).as_object_mut().unwrap().remove("function");
        },
        &[".functionInvocationInput.function: is required"],
    ),
    (
        "unknown actionInvocationType",
        |d| input0(d)["actionInvocationType"] = json!("MAYBE"),
        &[
            ".functionInvocationInput.actionInvocationType:",
            "unknown actionInvocationType \"MAYBE\"",
            "USER_CONFIRMATION",
        ],
    ),
    (
        "sessionId with bad characters",
        |d| d["sessionId"] = json!("bad session!"),
        &["sessionId: must match ^[0-9a-zA-Z._:-]+$", "' '"],
    ),
    (
        "sessionId too short",
        |d| d["sessionId"] = json!("x"),
        &["sessionId: must be 2 to 100 characters, got 1"],
    ),
    (
        "agentId too long",
        |d| d["agentId"] = json!("ABCDEFGHIJK"),
        &["agentId: must be 1 to 10 characters, got 11"],
    ),
    (
        "agentId with bad characters",
        |d| d["agentId"] = json!("AG_01"),
        &["agentId: must match ^[0-9a-zA-Z]+$", "'_'"],
    ),
    (
        "unknown top-level field",
        |d| d["approvedAlready"] = json!(true),
        &["approvedAlready: unknown field", "allowed here: agentId"],
    ),
    (
        "unknown field inside functionInvocationInput",
        |d| input0(d)["skipReview"] = json!("yes"),
        &[".functionInvocationInput.skipReview: unknown field"],
    ),
    (
        "function and api forms in one input",
        |d| {
            d["returnControl"]["invocationInputs"][0]["apiInvocationInput"] = json!({
                "actionGroup": "customers", "apiPath": "/x", "httpMethod": "GET"
            });
        },
        &[
            "returnControl.invocationInputs[0]:",
            "exactly one of functionInvocationInput or apiInvocationInput",
        ],
    ),
    (
        "apiPath without a leading slash",
        |d| {
            d["returnControl"]["invocationInputs"] = json!([{"apiInvocationInput": {
                "actionGroup": "accounts", "apiPath": "accounts/{id}", "httpMethod": "DELETE"
            }}]);
        },
        &["returnControl.invocationInputs[0].apiInvocationInput.apiPath: must start with '/'"],
    ),
    (
        "unknown httpMethod",
        |d| {
            d["returnControl"]["invocationInputs"] = json!([{"apiInvocationInput": {
                "actionGroup": "accounts", "apiPath": "/accounts", "httpMethod": "FETCH"
            }}]);
        },
        &[
            "returnControl.invocationInputs[0].apiInvocationInput.httpMethod:",
            "unknown HTTP method \"FETCH\"",
        ],
    ),
    (
        "parameter value that is a number",
        |d| input0(d)["parameters"][0]["value"] = json!(42),
        &[".functionInvocationInput.parameters[0].value: must be a string"],
    ),
    (
        "duplicate parameter names",
        |d| input0(d)["parameters"][1]["name"] = json!("customerId"),
        &[
            ".functionInvocationInput.parameters[1].name:",
            "duplicate parameter \"customerId\"",
        ],
    ),
    (
        "sessionAttributes with a non-string value",
        |d| d["sessionAttributes"]["retries"] = json!(3),
        &["sessionAttributes.retries: must be a string"],
    ),
    (
        "eventTime not RFC 3339",
        |d| d["eventTime"] = json!("25/11/2026 12:00"),
        &["eventTime: must be an RFC 3339 timestamp"],
    ),
    (
        "eventTime far in the future",
        |d| d["eventTime"] = json!("2099-01-01T00:00:00Z"),
        &["eventTime: is more than 5 minutes in the future"],
    ),
    (
        "agentVersion neither DRAFT nor a number",
        |d| d["agentVersion"] = json!("v3"),
        &["agentVersion: must be DRAFT or a version number"],
    ),
    (
        "missing returnControl",
        |d| {
            d.as_object_mut().unwrap().remove("returnControl");
        },
        &["returnControl: is required"],
    ),
];

#[test]
fn every_invalid_submission_names_the_field_and_the_rule_and_writes_nothing() {
    // The base document is valid: each case changes exactly one thing.
    assert!(CASES.iter().all(|(_, _, needles)| !needles.is_empty()));
    let sb = Sandbox::new();
    for (case, mutate, needles) in CASES {
        let mut d = base();
        mutate(&mut d);
        let out = sb.try_submit(&d);
        assert_eq!(
            out.code, 2,
            "{case}: exit {} (expected 2)\nstderr: {}",
            out.code, out.stderr
        );
        for n in *needles {
            let n = n
                .strip_prefix('.')
                .map_or_else(|| (*n).to_owned(), |rest| format!("{FIELD_0}.{rest}"));
            assert!(
                out.stderr.contains(&n),
                "{case}: the message does not say {n:?}:\n{}",
                out.stderr
            );
        }
        assert!(
            out.stderr.contains("nothing was written"),
            "{case}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{case}: {}", out.stdout);
        sb.assert_empty(case);
    }
    // The unmutated document goes in, so the checks above could see a write.
    sb.submit(&base());
    assert_eq!(sb.pending_ids(), ["val-0001"]);
    assert_eq!(sb.verify().1["entries"], 1);
}

#[test]
fn invalid_json_names_the_line_and_column() {
    let sb = Sandbox::new();
    let text = "{\n  \"agentId\": \"AGENT01\",\n  \"agentAliasId\": ALIAS01\n}\n";
    let file = sb.path("broken.json");
    std::fs::write(&file, text).unwrap();
    sb.run(&["submit", file.to_str().unwrap()])
        .code(2)
        .err_has(&["broken.json", "not valid JSON at line 3 column"]);
    sb.run_stdin(&["submit", "-"], b"[1, 2,")
        .code(2)
        .err_has(&["(stdin)", "not valid JSON at line 1 column"]);
    sb.run_stdin(&["submit", "-"], b"")
        .code(2)
        .err_has(&["not valid JSON"]);
    sb.run_stdin(&["submit", "-"], b"[1, 2]")
        .code(2)
        .err_has(&["(document): must be a JSON object"]);
    sb.assert_empty("invalid JSON");
}

#[test]
fn a_missing_file_is_bad_input() {
    let sb = Sandbox::new();
    let missing = sb.path("no-such-request.json");
    sb.run(&["submit", missing.to_str().unwrap()])
        .code(2)
        .err_has(&["no-such-request.json", "cannot open"]);
    sb.assert_empty("missing file");
}

#[test]
fn a_submission_over_8_mib_is_refused_unread() {
    let sb = Sandbox::new();
    let mut d = doc("huge-0001", &[medium()]);
    d["rationale"] = json!("x".repeat(9 * 1024 * 1024));
    let file = sb.write_doc(&d);
    assert!(std::fs::metadata(&file).unwrap().len() > 9 * 1024 * 1024);
    sb.run(&["submit", file.to_str().unwrap()])
        .code(2)
        .err_has(&["larger than 8388608 bytes", "nothing was written"]);
    let bytes = serde_json::to_vec(&d).unwrap();
    sb.run_stdin(&["submit", "-"], &bytes)
        .code(2)
        .err_has(&["(stdin)", "larger than 8388608 bytes"]);
    sb.assert_empty("over 8 MiB");

    // Just under the limit is accepted: the limit is the size, not the rationale.
    let mut d = doc("big-0002", &[medium()]);
    d["rationale"] = json!("y".repeat(8 * 1024 * 1024 - 4096));
    sb.submit(&d);
    assert_eq!(sb.pending_ids(), ["big-0002"]);
}

// ---------------------------------------------------------------------------------------------
// decisions

#[test]
fn approve_a_medium_request_then_again_is_a_conflict() {
    let sb = Sandbox::new();
    sb.submit(&doc("dec-0001", &[medium()]));
    sb.submit(&doc("dec-0002", &[low()]));
    sb.run_as("alice", &["approve", "dec-0001"])
        .code(0)
        .out_has(&["approved input 1 of dec-0001", "now approved"]);
    assert_eq!(sb.pending_ids(), ["dec-0002"]);

    let shown = sb.show("dec-0001");
    assert_eq!(shown["status"], "approved");
    let d = &shown["decisions"][0];
    assert_eq!(d["reviewer"], "alice");
    assert_eq!(d["verdict"], "confirm");
    assert_eq!(d["args_hash"], shown["inputHashes"][0]);
    let at = d["decided_at"].as_str().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .with_timezone(&chrono::Utc);

    let again = sb.run_as("bob", &["approve", "dec-0001"]);
    again
        .code(3)
        .err_has(&["dec-0001", "already decided (confirm) by alice at"]);
    let shown_at = at.format("%Y-%m-%d %H:%M:%S").to_string();
    again.err_has(&[&shown_at]);
    assert_eq!(
        sb.show("dec-0001")["decisions"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn reject_needs_a_reason() {
    let sb = Sandbox::new();
    sb.submit(&doc("rej-0001", &[medium()]));
    sb.run(&["reject", "rej-0001"])
        .code(2)
        .err_has(&["reject needs --reason"]);
    sb.run(&["reject", "rej-0001", "--reason", "   "])
        .code(2)
        .err_has(&["--reason"]);
    assert_eq!(sb.pending_ids(), ["rej-0001"]);
    sb.run_as("bob", &["reject", "rej-0001", "--reason", "wrong customer"])
        .code(0)
        .out_has(&["rejected input 1 of rej-0001", "now rejected"]);
    let shown = sb.show("rej-0001");
    assert_eq!(shown["status"], "rejected");
    assert_eq!(shown["decisions"][0]["verdict"], "deny");
    assert_eq!(shown["decisions"][0]["reason"], "wrong customer");
    assert_eq!(shown["decisions"][0]["reviewer"], "bob");
    assert!(sb.pending_ids().is_empty());
}

#[test]
fn two_processes_racing_on_one_request_one_wins_and_the_other_is_told_who() {
    let sb = Sandbox::new();
    for round in 0..4 {
        let id = format!("race-{round}");
        sb.submit(&doc(&id, &[medium()]));
        let spawn = |who: &str| {
            let mut cmd = sb.command(who);
            cmd.args(["approve", &id]);
            let what = format!("approve {id} as {who}");
            std::thread::spawn(move || bin_support::finish(cmd, None, &what))
        };
        let (a, b) = (spawn("alice"), spawn("bob"));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        let (winner, loser, who) = match (a.code, b.code) {
            (0, 3) => (&a, &b, "alice"),
            (3, 0) => (&b, &a, "bob"),
            _ => panic!(
                "round {round}: expected exactly one winner, got {} and {}\n{}\n{}",
                a.code, b.code, a.stderr, b.stderr
            ),
        };
        winner.out_has(&["approved"]);
        loser.err_has(&[&format!("already decided (confirm) by {who} at")]);
        let shown = sb.show(&id);
        let decisions = shown["decisions"].as_array().unwrap();
        assert_eq!(decisions.len(), 1, "round {round}: {decisions:?}");
        assert_eq!(decisions[0]["reviewer"], who);
    }
    // Sequentially, too: the second process names the first.
    sb.submit(&doc("race-seq", &[medium()]));
    sb.run_as("carol", &["approve", "race-seq"]).code(0);
    sb.run_as("dave", &["reject", "race-seq", "--reason", "no"])
        .code(3)
        .err_has(&["already decided (confirm) by carol at"]);
    let (code, report) = sb.verify();
    assert_eq!(
        (code, report["entries"].as_u64()),
        (0, Some(10)),
        "{report}"
    );
}

#[test]
fn a_multi_input_request_needs_input_or_all() {
    let sb = Sandbox::new();
    sb.submit(&doc("multi-0001", &[medium(), low()]));
    sb.run(&["approve", "multi-0001"])
        .code(2)
        .err_has(&["multi-0001 has 2 inputs", "--input N (1..=2) or --all"]);
    sb.run(&["approve", "multi-0001", "--input", "9"])
        .code(2)
        .err_has(&["--input 9", "inputs 1..=2"]);
    sb.run(&["approve", "multi-0001", "--input", "0"])
        .code(2)
        .err_has(&["--input 0"]);
    sb.run(&["approve", "multi-0001", "--input", "2", "--input", "2"])
        .code(2)
        .err_has(&["--input 2 is given twice"]);
    assert_eq!(sb.show("multi-0001")["decisions"], json!([]));

    sb.run(&["approve", "multi-0001", "--input", "2"])
        .code(0)
        .out_has(&["approved input 2", "now partially-decided"]);
    sb.run(&["reject", "multi-0001", "--all", "--reason", "not this one"])
        .code(0)
        .out_has(&["rejected input 1", "now mixed"]);
    sb.run(&["approve", "multi-0001", "--all"])
        .code(3)
        .err_has(&["no open inputs left", "mixed"]);
}

#[test]
fn critical_needs_the_typed_word_a_reason_and_two_distinct_approvers() {
    let sb = Sandbox::new();
    sb.submit(&doc("crit-0001", &[critical()]));
    sb.run(&["approve", "crit-0001", "--reason", "invoice ok"])
        .code(3)
        .err_has(&[
            "not allowed by policy",
            "critical-risk",
            "--confirm transferFunds",
        ]);
    sb.run(&[
        "approve",
        "crit-0001",
        "--confirm",
        "transferfunds",
        "--reason",
        "invoice ok",
    ])
    .code(3)
    .err_has(&["not allowed by policy"]);
    sb.run(&["approve", "crit-0001", "--confirm", "transferFunds"])
        .code(2)
        .err_has(&["a reason is required to approve a critical-risk request"]);
    assert_eq!(sb.show("crit-0001")["decisions"], json!([]));

    let first = [
        "approve",
        "crit-0001",
        "--confirm",
        "transferFunds",
        "--reason",
        "invoice INV-2291 checked",
    ];
    sb.run_as("alice", &first)
        .code(0)
        .out_has(&["now partially-decided"]);
    assert_eq!(
        sb.pending_ids(),
        ["crit-0001"],
        "one approval is not enough"
    );
    sb.run_as("alice", &first).code(3).err_has(&[
        "needs 2 distinct approvers",
        "alice has already approved it",
    ]);
    sb.run_as("bob", &first).code(0).out_has(&["now approved"]);
    assert!(sb.pending_ids().is_empty());
    let shown = sb.show("crit-0001");
    let who: Vec<&str> = shown["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reviewer"].as_str().unwrap())
        .collect();
    assert_eq!(who, ["alice", "bob"]);
    assert_eq!(shown["status"], "approved");
}

#[test]
fn a_high_request_needs_confirm_too() {
    let sb = Sandbox::new();
    sb.submit(&doc("high-0001", &[high()]));
    sb.run(&["approve", "high-0001"]).code(3).err_has(&[
        "not allowed by policy",
        "high-risk",
        "--confirm transferFunds",
    ]);
    sb.run(&["approve", "high-0001", "--confirm", "transferFunds"])
        .code(0);
    // Rejecting never needs the word.
    sb.submit(&doc("high-0002", &[high()]));
    sb.run(&["reject", "high-0002", "--reason", "too much"])
        .code(0);
}

#[test]
fn a_decision_bound_to_a_wrong_hash_is_refused() {
    let sb = Sandbox::new();
    sb.submit(&doc("hash-0001", &[medium(), low()]));
    let shown = sb.show("hash-0001");
    let h1 = shown["inputHashes"][0].as_str().unwrap().to_owned();
    let h2 = shown["inputHashes"][1].as_str().unwrap().to_owned();
    assert_ne!(h1, h2);
    let wrong = "0".repeat(64);
    sb.run(&["approve", "hash-0001", "--input", "2", "--hash", &wrong])
        .code(3)
        .err_has(&[
            "hash-0001 input 2",
            "the arguments differ from the ones you saw",
            &wrong,
            &h2,
        ]);
    // Input 1's hash is not input 2's.
    sb.run(&["approve", "hash-0001", "--input", "2", "--hash", &h1])
        .code(3)
        .err_has(&["input 2"]);
    sb.run(&[
        "approve",
        "hash-0001",
        "--input",
        "1",
        "--hash",
        &h1,
        "--hash",
        &h2,
    ])
    .code(2)
    .err_has(&["2 --hash given for 1 inputs"]);
    assert_eq!(sb.show("hash-0001")["decisions"], json!([]));
    sb.run(&[
        "approve",
        "hash-0001",
        "--all",
        "--hash",
        &h1,
        "--hash",
        &h2,
    ])
    .code(0)
    .out_has(&["approved input 1, 2", "now approved"]);
}

#[test]
fn an_expired_request_is_not_pending_and_cannot_be_decided() {
    let sb = Sandbox::new();
    sb.submit(&raised_ago(doc("exp-0001", &[medium()]), 20 * 60));
    sb.submit(&raised_ago(doc("exp-0002", &[medium()]), 20 * 60));
    sb.submit(&doc("live-0003", &[medium()]));
    assert_eq!(sb.pending_ids(), ["live-0003"]);
    sb.run(&["approve", "exp-0001"])
        .code(3)
        .err_has(&["exp-0001", "expired"]);
    // Without a `pending` sweep first, the decision itself sees the clock.
    let fresh = Sandbox::new();
    fresh.submit(&raised_ago(doc("exp-0004", &[medium()]), 20 * 60));
    fresh
        .run(&["reject", "exp-0004", "--reason", "late"])
        .code(3)
        .err_has(&["exp-0004 expired at", "session is gone"]);
    assert_eq!(sb.show("exp-0002")["status"], "expired");
}

// ---------------------------------------------------------------------------------------------
// the audit log

/// A minimal RFC 4180 reader: quoted fields may hold commas, doubled quotes and newlines.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (_, c) => field.push(c),
        }
    }
    assert!(!quoted, "unterminated quoted field");
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

const TRICKY: &str = "no, \"not today\": see INV-2291\nsecond line";

fn audited_store() -> Sandbox {
    let sb = Sandbox::new();
    sb.submit(&doc("aud-0001", &[medium()]));
    sb.submit(&doc("aud-0002", &[medium()]));
    sb.submit(&doc("aud-0003", &[low()]));
    sb.run(&["approve", "aud-0001"]).code(0);
    sb.run(&["reject", "aud-0002", "--reason", TRICKY]).code(0);
    sb
}

#[test]
fn audit_verify_on_a_clean_store() {
    let sb = audited_store();
    sb.run(&["audit", "verify"])
        .code(0)
        .out_has(&["audit log verifies: 5 entries", "chain intact"]);
    let (code, v) = sb.verify();
    assert_eq!(code, 0);
    assert_eq!(v, json!({"ok": true, "entries": 5, "problems": []}));
}

#[test]
fn audit_export_jsonl_is_one_object_per_line_in_seq_order() {
    let sb = audited_store();
    let out = sb.run(&["audit", "export", "--format", "jsonl"]);
    out.code(0);
    let entries: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert_eq!(entries.len(), 5);
    for (i, e) in entries.iter().enumerate() {
        assert!(e.is_object(), "{e}");
        assert_eq!(e["seq"], i as u64 + 1);
        assert!(is_sha256(e["hash"].as_str().unwrap()));
    }
    for pair in entries.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "the chain links");
    }
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["submitted", "submitted", "submitted", "decided", "decided"]
    );
    let payload: Value = serde_json::from_str(entries[4]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["decisions"][0]["reason"], TRICKY);
    // The default format is jsonl.
    assert_eq!(sb.run(&["audit", "export"]).code(0).stdout, out.stdout);
}

#[test]
fn audit_export_csv_quotes_commas_quotes_and_newlines() {
    let sb = audited_store();
    let out = sb.run(&["audit", "export", "--format", "csv"]);
    out.code(0);
    let rows = parse_csv(&out.stdout);
    assert_eq!(
        rows[0],
        [
            "seq",
            "at",
            "actor",
            "kind",
            "request",
            "payload",
            "prev_hash",
            "hash"
        ]
    );
    assert_eq!(rows.len(), 6, "a header and 5 rows:\n{}", out.stdout);
    for (i, r) in rows[1..].iter().enumerate() {
        assert_eq!(r.len(), 8, "row {i}: {r:?}");
        assert_eq!(r[0], (i + 1).to_string());
        assert_eq!(r[2], "alice");
    }
    let jsonl = sb.audit_entries();
    for (row, entry) in rows[1..].iter().zip(&jsonl) {
        assert_eq!(row[3], entry["kind"].as_str().unwrap());
        assert_eq!(row[4], entry["request"].as_str().unwrap());
        assert_eq!(
            row[5],
            entry["payload"].as_str().unwrap(),
            "payload round-trips"
        );
        assert_eq!(row[7], entry["hash"].as_str().unwrap());
    }
    let rejected = &rows[5];
    assert_eq!(rejected[4], "aud-0002");
    let payload: Value = serde_json::from_str(&rejected[5]).unwrap();
    assert_eq!(payload["decisions"][0]["reason"], TRICKY);
    assert_eq!(payload["decisions"][0]["verdict"], "deny");
}

// ---------------------------------------------------------------------------------------------
// tampering with the file directly

fn tamper(sb: &Sandbox, sql: &str) {
    let raw = Connection::open(&sb.db).unwrap();
    // A tamperer does not honour our constraints.
    raw.pragma_update(None, "foreign_keys", false).unwrap();
    let changed = raw.execute(sql, []).unwrap();
    assert!(changed > 0, "the tamper statement changed nothing: {sql}");
}

#[track_caller]
fn assert_tamper_named(sb: &Sandbox, needles: &[&str]) {
    let text = sb.run(&["audit", "verify"]);
    text.code(3)
        .out_has(&["audit log does NOT verify"])
        .err_has(&["audit verification failed"]);
    assert!(
        text.stdout
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n))),
        "no problem line names all of {needles:?}:\n{}",
        text.stdout
    );
    let (code, v) = sb.verify();
    assert_eq!(code, 3);
    assert_eq!(v["ok"], false);
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| needles.iter().all(|n| p.as_str().unwrap().contains(n))),
        "{v}"
    );
}

#[test]
fn an_edited_request_body_is_named_with_its_entry() {
    let sb = audited_store();
    let seq = sb.entry_seq("submitted", "aud-0003");
    tamper(
        &sb,
        "UPDATE requests SET body = replace(body, 'acc-7', 'acc-8') WHERE id = 'aud-0003'",
    );
    assert_tamper_named(&sb, &["request aud-0003", &format!("entry {seq}")]);
}

#[test]
fn a_deleted_request_row_is_named_with_its_entry() {
    let sb = audited_store();
    let seq = sb.entry_seq("submitted", "aud-0003");
    tamper(&sb, "DELETE FROM requests WHERE id = 'aud-0003'");
    assert_tamper_named(&sb, &[&format!("audit entry {seq}"), "aud-0003", "deleted"]);
    // The deleted request no longer shows as pending, yet the log still has it.
    assert!(sb.pending_ids().is_empty());
}

#[test]
fn an_edited_verdict_is_named_with_its_entry() {
    let sb = audited_store();
    let seq = sb.entry_seq("decided", "aud-0002");
    tamper(
        &sb,
        "UPDATE decisions SET verdict = 'confirm' WHERE request_id = 'aud-0002'",
    );
    assert_tamper_named(
        &sb,
        &[
            "request aud-0002 decision 1",
            &format!("audit entry {seq}"),
            "verdict",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// store unavailable, usage, configuration

#[test]
fn a_store_that_cannot_be_created_is_exit_4_naming_the_path() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("file.txt"), "a regular file").unwrap();
    let db = sb.path("file.txt/sub/x.db");
    let spec = format!("sqlite:{}", db.display());
    for args in [
        vec!["--store", spec.as_str(), "pending"],
        vec!["--store", spec.as_str(), "audit", "verify"],
    ] {
        sb.run_bare(&args)
            .code(4)
            .err_has(&["store unavailable", &db.display().to_string()]);
    }
    let file = sb.write_doc(&doc("nowhere-1", &[medium()]));
    sb.run_bare(&["--store", &spec, "submit", file.to_str().unwrap()])
        .code(4)
        .err_has(&[&db.display().to_string()]);

    // A file that is not a database at all.
    let junk = sb.path("junk.db");
    std::fs::write(&junk, vec![0x5a_u8; 8192]).unwrap();
    sb.run_bare(&["--store", &format!("sqlite:{}", junk.display()), "pending"])
        .code(4)
        .err_has(&[&junk.display().to_string()]);
}

#[test]
fn help_lists_the_exit_codes_and_usage_errors_are_exit_2() {
    let sb = Sandbox::new();
    let help = sb.run_bare(&["--help"]);
    help.code(0)
        .out_has(&["Exit codes:", "submit", "pending", "audit"]);
    for line in [
        "0  ok",
        "2  bad input or usage",
        "3  conflict",
        "4  store unavailable",
    ] {
        help.out_has(&[line]);
    }
    sb.run(&["pending", "--bogus"])
        .code(2)
        .err_has(&["--bogus"]);
    sb.run(&["approve"]).code(2).err_has(&["<ID>"]);
    sb.run(&["audit", "export", "--format", "xml"])
        .code(2)
        .err_has(&["xml"]);
    sb.run(&["approve", "x", "--all", "--input", "1"])
        .code(2)
        .err_has(&["cannot be used with"]);
    sb.run(&["frobnicate"]).code(2);
    assert!(!sb.db.exists(), "a usage error opened the store");
}

#[test]
fn a_config_file_with_an_unknown_key_names_the_file_and_the_key() {
    let sb = Sandbox::new();
    let cfg = sb.path("bad.toml");
    std::fs::write(
        &cfg,
        "reviewer = \"bob\"\nreveiwer_email = \"bob@example.com\"\n",
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    sb.run(&["--config", cfg_s, "pending"]).code(2).err_has(&[
        cfg_s,
        "reveiwer_email",
        "unknown field",
    ]);
    // Nested tables too.
    std::fs::write(&cfg, "[policy.tiers.critical]\napprovers = 2\nquorum = 3\n").unwrap();
    sb.run(&["--config", cfg_s, "pending"])
        .code(2)
        .err_has(&[cfg_s, "quorum"]);
    // The XDG location is read when no --config is given.
    let xdg = sb.path("config/agentdeck");
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::write(xdg.join("config.toml"), "colour = \"pink\"\n").unwrap();
    sb.run(&["pending"])
        .code(2)
        .err_has(&["config.toml", "colour"]);
    // And a good config file is used: its TTL sets the expiry.
    std::fs::write(xdg.join("config.toml"), "default_idle_ttl_secs = 900\n").unwrap();
    sb.submit(&doc("cfg-0001", &[medium()]));
    let row = &sb.run(&["pending", "--json"]).code(0).json()[0];
    let raised = chrono::DateTime::parse_from_rfc3339(row["raised_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(row["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires - raised).num_seconds(), 900);
}

#[test]
fn reviewer_comes_from_flag_over_env_over_config() {
    let sb = Sandbox::new();
    let cfg = sb.path("c.toml");
    std::fs::write(&cfg, "reviewer = \"from-config\"\n").unwrap();
    let cfg_s = cfg.to_str().unwrap().to_owned();
    for (i, (env_reviewer, flag, expected)) in [
        ("", None, "from-config"),
        ("from-env", None, "from-env"),
        ("from-env", Some("from-flag"), "from-flag"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("who-{i}");
        sb.submit(&doc(&id, &[medium()]));
        let mut args = vec!["--config", cfg_s.as_str(), "approve", id.as_str()];
        if let Some(f) = flag {
            args.extend(["--reviewer", f]);
        }
        sb.run_as(env_reviewer, &args).code(0);
        assert_eq!(sb.show(&id)["decisions"][0]["reviewer"], expected);
    }
}

#[test]
fn a_keys_conflict_makes_the_console_refuse_to_start_before_the_terminal() {
    let sb = Sandbox::new();
    let cfg = sb.path("keys.toml");
    std::fs::write(&cfg, "[keys]\napprove = [\"r\"]\n").unwrap();
    let cfg_s = cfg.to_str().unwrap();
    // No subcommand: the console. Stdin is /dev/null and stdout a pipe, so had it gone on to
    // enter the terminal it would fail differently (exit 4) or hang (the run's deadline).
    let out = sb.run(&["--config", cfg_s]);
    out.code(2).err_has(&[
        cfg_s,
        "key `r` is bound to both `approve` and `reject`",
        "rebind one of them",
    ]);
    assert!(
        !out.stderr.contains("[keys]: [keys]"),
        "the section is named once: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "nothing drawn: {:?}", out.stdout);

    std::fs::write(&cfg, "[keys]\nquit = []\n").unwrap();
    sb.run(&["--config", cfg_s])
        .code(2)
        .err_has(&[cfg_s, "`quit` must keep at least one key"]);
    std::fs::write(&cfg, "[keys]\naprove = [\"y\"]\n").unwrap();
    sb.run(&["--config", cfg_s])
        .code(2)
        .err_has(&[cfg_s, "unknown action `aprove`"]);
    // The headless commands do not need the keymap.
    std::fs::write(&cfg, "[keys]\napprove = [\"r\"]\n").unwrap();
    sb.run(&["--config", cfg_s, "pending"]).code(0);
}

#[test]
fn the_builders_are_rated_as_named_by_the_default_policy() {
    // Guards the builders the other tests lean on: the default policy rates them as named.
    let sb = Sandbox::new();
    for (id, input, tier) in [
        ("t-low", low(), "low"),
        ("t-medium", medium(), "medium"),
        ("t-high", high(), "high"),
        ("t-critical", critical(), "critical"),
        (
            "t-api",
            json!({"apiInvocationInput": {"actionGroup": "accounts", "apiPath": "/accounts/{id}/delete",
                "httpMethod": "post", "parameters": [{"name": "id", "type": "string", "value": "a-1"}]}}),
            "high",
        ),
        (
            "t-words",
            function_input("payments", "transferFunds", &[("amount", "one thousand")]),
            "critical",
        ),
    ] {
        let out = sb.run_stdin(
            &["submit", "--json"],
            &serde_json::to_vec(&doc(id, &[input])).unwrap(),
        );
        assert_eq!(out.code(0).json()["tier"], tier, "{id}");
    }
}

/// On a DynamoDB store (moto on 127.0.0.1, which serves STS too) the reviewer is the caller
/// STS names: an IAM user's name, or an assumed role's session name; `--reviewer` (or
/// `AGENTDECK_REVIEWER`, or the config) overrides it.
#[test]
fn on_dynamodb_the_reviewer_is_the_sts_caller_unless_one_is_given() {
    let moto = moto::Moto::start();
    let sb = Sandbox::dynamo(&moto.url);
    for id in ["sts-1", "sts-2", "sts-3"] {
        sb.submit(&doc(id, &[medium()]));
    }
    let approve = |id: &str, env: &[(&str, &str)]| {
        let mut cmd = sb.command("unused");
        cmd.env_remove("AGENTDECK_REVIEWER");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(["approve", id]);
        finish(cmd, None, "approve")
    };
    // moto answers GetCallerIdentity for plain keys as arn:aws:sts::123456789012:user/moto.
    approve("sts-1", &[]).code(0);
    assert_eq!(sb.show("sts-1")["decisions"][0]["reviewer"], "moto");
    // Credentials of an assumed role: the role-session name.
    let out = std::process::Command::new(moto::python_with_moto())
        .args([
            "-c",
            "import boto3,sys\n\
             c=boto3.client('sts',endpoint_url=sys.argv[1],region_name='us-east-1',\
             aws_access_key_id='AKIDTEST',aws_secret_access_key='test')\n\
             r=c.assume_role(RoleArn='arn:aws:iam::123456789012:role/Reviewers',\
             RoleSessionName='dana.reviewer')['Credentials']\n\
             print(r['AccessKeyId'],r['SecretAccessKey'],r['SessionToken'])",
            &moto.url,
        ])
        .output()
        .unwrap();
    let creds = String::from_utf8_lossy(&out.stdout).into_owned();
    let creds: Vec<&str> = creds.split_whitespace().collect();
    assert_eq!(creds.len(), 3, "{}", String::from_utf8_lossy(&out.stderr));
    approve(
        "sts-2",
        &[
            ("AWS_ACCESS_KEY_ID", creds[0]),
            ("AWS_SECRET_ACCESS_KEY", creds[1]),
            ("AWS_SESSION_TOKEN", creds[2]),
        ],
    )
    .code(0);
    assert_eq!(
        sb.show("sts-2")["decisions"][0]["reviewer"],
        "dana.reviewer"
    );
    // A given reviewer wins over STS.
    sb.run_as("erin", &["approve", "sts-3"]).code(0);
    assert_eq!(sb.show("sts-3")["decisions"][0]["reviewer"], "erin");
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    // `agentdeck audit export | head -1`: the pipe closes under us. That is not a failure.
    let sb = audited_store();
    for args in [
        &["audit", "export"][..],
        &["pending"][..],
        &["pending", "--json"][..],
    ] {
        let mut cmd = sb.command("alice");
        cmd.args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} printed: {stderr}");
    }
}

#[test]
fn every_subcommand_s_flags_are_consistent() {
    // clap checks a command's flags (unique names, aliases) only when that command is parsed;
    // this checks all of them at once, so a clash cannot hide in a command no test runs.
    use clap::CommandFactory;
    agentdeck::cli::args::Cli::command().debug_assert();
}
