//! A client nobody here wrote: boto3's cloudwatch client reads the same figures from the
//! simulator's CloudWatch stand-in as agentdeck's own reader, publishes, reads back, and gets an
//! AWS-shaped error. botocore 1.44 resolves CloudWatch to awsJson1_0 (its preference order puts
//! `json` before `smithy-rpc-v2-cbor`), so this also proves the stand-in's JSON side; the Rust
//! SDK proves the CBOR side (tests/suite/cloudwatch_sdk.rs).
//! `bash .ci/test` installs boto3 into `target/py`; `AGENTDECK_PYTHON` may point elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use crate::sim_support;

use std::time::Duration;

use agentdeck::cloudwatch::{self, Datum, DatumValue, Unit};
use chrono::Utc;

#[test]
fn boto3_reads_the_same_cloudwatch_figures() {
    let (rt, sim) = sim_support::started();
    let endpoint = sim.endpoint();
    let now = Utc::now();
    let window = Duration::from_secs(3600);
    let start_t = now - chrono::Duration::minutes(30);
    let end_t = now + chrono::Duration::minutes(30);
    let ours = rt.block_on(async {
        let b = aws_sdk_bedrockagentruntime::Client::from_conf(
            aws_sdk_bedrockagentruntime::config::Builder::new()
                .behavior_version(aws_sdk_bedrockagentruntime::config::BehaviorVersion::latest())
                .region(aws_sdk_bedrockagentruntime::config::Region::new(
                    "us-east-1",
                ))
                .credentials_provider(aws_sdk_bedrockagentruntime::config::Credentials::new(
                    "AKIDTEST", "secret", None, None, "test",
                ))
                .endpoint_url(&endpoint)
                .build(),
        );
        for (agent, alias, text) in [
            ("PAYAGENT01", "PRODALIAS", "hello"),
            ("PAYAGENT01", "PRODALIAS", "what is my balance"),
            ("PAYAGENT01", "PRODALIAS", "pay 250 EUR to acct-77"),
        ] {
            let mut out = b
                .invoke_agent()
                .agent_id(agent)
                .agent_alias_id(alias)
                .session_id(format!("b3-{text}").replace(' ', "-"))
                .input_text(text)
                .send()
                .await
                .unwrap();
            while out.completion.recv().await.unwrap().is_some() {}
        }
        let client = cloudwatch::loopback(&endpoint);
        cloudwatch::publish(
            &client,
            "agentdeck/test",
            &[Datum {
                name: "DecisionLatency".into(),
                unit: Unit::Milliseconds,
                value: DatumValue::Distribution {
                    values: (1..=100).map(f64::from).collect(),
                    counts: vec![],
                },
                dimensions: vec![
                    ("Agent".into(), "PAYAGENT01".into()),
                    ("Alias".into(), "PRODALIAS".into()),
                ],
                timestamp: now,
            }],
        )
        .await
        .unwrap();
        // The same window as boto3's: [now - 30m, now + 30m).
        cloudwatch::read_bedrock(&client, window, Duration::from_secs(300), end_t)
            .await
            .unwrap()
    });
    let v = sim_support::boto3_script(
        "cloudwatch.py",
        &[
            endpoint.clone(),
            start_t.timestamp().to_string(),
            end_t.timestamp().to_string(),
        ],
    );
    assert_eq!(v["protocol"], "json", "botocore's resolved protocol: {v}");
    let names: Vec<&str> = v["metricNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"InvocationCount") && names.contains(&"TotalTime"),
        "{names:?}"
    );
    assert_eq!(ours.len(), 1, "{ours:?}");
    let f = &ours[0];
    let theirs = &v["aliases"][&f.alias_arn];
    assert_eq!(theirs["invocations"].as_f64(), Some(f.invocations), "{v}");
    assert_eq!(f.invocations, 3.0);
    assert_eq!(theirs["totalTimeP95"].as_f64(), f.total_time_p95_ms, "{v}");
    assert_eq!(theirs["timestampTypes"][0], "datetime");
    assert_eq!(v["decisionLatencyP95"], serde_json::json!([95.0]));
    // Put by boto3: values 1,2,3,10 seen 5,3,1,1 times: p90 = 3, sum = 24.
    assert_eq!(v["own"]["w"], serde_json::json!([3.0]));
    assert_eq!(v["own"]["s"], serde_json::json!([24.0]));
    assert_eq!(v["error"]["code"], "InvalidParameterValue");
    assert_eq!(v["error"]["status"], 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("reserved"),
        "{v}"
    );
    rt.block_on(sim.shutdown());
}
