//! A client nobody here wrote: boto3's `invoke_agent`, pointed at the simulator, decodes the
//! whole stream: traces, return of control, a resume, streamed chunks and AWS-shaped errors.
//! `bash .ci/test` installs boto3 into `target/py`; `AGENTDECK_PYTHON` may point elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::sim_support;

#[test]
fn boto3_round_trips_through_the_simulator() {
    let (rt, sim) = sim_support::started();
    let v = sim_support::boto3_script("invoke_agent.py", &[sim.endpoint()]);

    let first = &v["first"];
    assert_eq!(first["sessionId"], "boto3-session-1");
    assert_eq!(first["contentType"], "application/json");
    assert_eq!(
        first["eventTimeTypes"],
        serde_json::json!(["datetime"]),
        "RFC 3339 strings decode as datetimes"
    );
    let kinds: Vec<&str> = first["traces"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["sub"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
        })
        .collect();
    assert!(
        kinds.contains(&"modelInvocationInput") && kinds.contains(&"rationale"),
        "{kinds:?}"
    );
    let input = &first["inputs"][0]["functionInvocationInput"];
    assert_eq!(input["function"], "transferFunds");
    assert_eq!(input["actionInvocationType"], "USER_CONFIRMATION");
    let amount = input["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "amount")
        .unwrap();
    assert_eq!(amount["value"], "5000.00");

    let resumed = &v["resumed"];
    assert!(
        resumed["chunks"].as_str().unwrap().contains("5000.00"),
        "{resumed}"
    );
    let resumed_kinds: Vec<&str> = resumed["traces"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["sub"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
        })
        .collect();
    assert!(resumed_kinds.contains(&"observation"), "{resumed_kinds:?}");

    let streamed = &v["streamed"];
    assert!(!streamed["chunks"].as_str().unwrap().is_empty());
    assert!(
        streamed["traces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "guardrailTrace"),
        "streaming interleaves guardrail traces: {streamed}"
    );

    assert_eq!(v["reuse_error"], "ValidationException");
    assert_eq!(v["not_found_error"], "ResourceNotFoundException");
    let invocation = first["invocationId"].as_str().unwrap();
    assert_eq!(
        sim.resume_count(invocation),
        2,
        "one resume and one refused reuse"
    );
    rt.block_on(sim.shutdown());
}
