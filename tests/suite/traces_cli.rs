//! `agentdeck traces`, `traces show` and `traces export` through the binary, on turns the runner recorded from
//! the simulator: a payment that returned control, its approval, and the resumed continuation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::bin_support;
use crate::sim_support;

use bin_support::Sandbox;

#[test]
fn traces_list_sessions_and_show_the_turn_tree() {
    let (rt, sim) = sim_support::started();
    let url = sim.endpoint();
    let sb = Sandbox::new();
    sb.run(&[
        "invoke",
        "--endpoint-url",
        &url,
        "--agent-id",
        "PAYAGENT01",
        "--agent-alias-id",
        "PRODALIAS",
        "--session-id",
        "trace-s1",
        "pay 250 EUR to acct-7",
    ])
    .code(0);
    sb.run(&[
        "invoke",
        "--endpoint-url",
        &url,
        "--agent-id",
        "KBAGENT003",
        "--agent-alias-id",
        "LIVE",
        "--session-id",
        "trace-s2",
        "what is the travel policy?",
    ])
    .code(0);
    let pending = sb.pending_ids();
    assert_eq!(pending.len(), 1, "the payment waits for a human");
    sb.run(&["approve", &pending[0]]).code(0);
    sb.run(&["resume", "--endpoint-url", &url]).code(0);

    let list = sb.run(&["traces", "--json"]).code(0).json();
    let sessions = list.as_array().unwrap();
    let s1 = sessions
        .iter()
        .find(|s| s["sessionId"] == "trace-s1")
        .unwrap();
    assert_eq!(s1["turns"], 2, "the first turn and the resume");
    assert_eq!(s1["state"], "finished");
    assert!(s1["steps"].as_u64().unwrap() >= 2);
    assert!(s1["inputTokens"].as_i64().unwrap() > 0);
    let s2 = sessions
        .iter()
        .find(|s| s["sessionId"] == "trace-s2")
        .unwrap();
    assert_eq!(s2["state"], "finished");

    let tree = sb
        .run(&["traces", "show", "trace-s1", "--json"])
        .code(0)
        .json();
    let turns = tree["turns"].as_array().unwrap();
    assert_eq!(turns[0]["outcome"], "waiting-for-human");
    assert_eq!(turns[0]["inputText"], "pay 250 EUR to acct-7");
    assert!(
        turns[0]["steps"][0]["rationale"]
            .as_str()
            .unwrap()
            .contains("transfer")
    );
    assert_eq!(turns[1]["resumes"], pending[0].as_str());
    assert!(
        turns[1]["finalResponse"]
            .as_str()
            .unwrap()
            .contains("250.00")
    );

    sb.run(&["traces", "show", "trace-s1"]).code(0).out_has(&[
        "session trace-s1",
        "resume after decision on",
        "answer: Done",
    ]);
    sb.run(&["traces", "show", "no-such-session"])
        .code(2)
        .err_has(&["no turns recorded"]);

    // Export: every event's raw JSON, in order, with the text the agent streamed.
    let doc = sb.run(&["traces", "export", "trace-s1"]).code(0).json();
    let turns = doc["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    let events = turns[0]["events"].as_array().unwrap();
    assert!(!events.is_empty());
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(events[0]["raw"]["trace"].is_object());
    assert!(turns[1]["text"].as_str().unwrap().contains("250.00"));
    let file = sb.path("s1.json");
    sb.run(&["traces", "export", "trace-s1", "-o", file.to_str().unwrap()])
        .code(0)
        .out_has(&["exported session trace-s1"]);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written, doc);
    // An existing file is never overwritten.
    sb.run(&["traces", "export", "trace-s1", "-o", file.to_str().unwrap()])
        .code(2)
        .err_has(&["never overwritten"]);
    rt.block_on(sim.shutdown());
}
