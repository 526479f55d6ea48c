//! `agentdeck cloudwatch read` through the binary, against the simulator's CloudWatch stand-in:
//! the figures of the turns the simulator served, as JSON and as a table; bad windows refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bin_support;
mod sim_support;

use bin_support::Sandbox;

#[test]
fn cloudwatch_read_shows_the_simulated_agents_figures() {
    let (rt, sim) = sim_support::started();
    let url = sim.endpoint();
    let sb = Sandbox::new();
    for (i, text) in ["hello", "pay 250 EUR to acct-7"].iter().enumerate() {
        sb.run(&[
            "invoke",
            "--endpoint-url",
            &url,
            "--agent-id",
            "PAYAGENT01",
            "--agent-alias-id",
            "PRODALIAS",
            "--session-id",
            &format!("cw-cli-{i}"),
            text,
        ])
        .code(0);
    }
    let out = sb.run(&[
        "--cloudwatch-endpoint",
        &url,
        "cloudwatch",
        "read",
        "--window",
        "15m",
        "--json",
    ]);
    out.code(0);
    let v = out.json();
    assert_eq!(v["namespace"], "AWS/Bedrock/Agents");
    assert_eq!(v["window_secs"], 900);
    let aliases = v["aliases"].as_array().unwrap();
    assert_eq!(aliases.len(), 1, "{v}");
    let a = &aliases[0];
    assert_eq!(a["agent_id"], "PAYAGENT01");
    assert_eq!(a["alias_id"], "PRODALIAS");
    assert_eq!(a["invocations"], 2.0);
    assert!(a["input_tokens"].as_f64().unwrap() > 0.0, "{a}");
    assert!(a["total_time_p95_ms"].as_f64().unwrap() > 0.0, "{a}");

    let out = sb.run(&["--cloudwatch-endpoint", &url, "cloudwatch", "read"]);
    out.code(0)
        .out_has(&["AGENT/ALIAS", "PAYAGENT01/PRODALIAS", "TOTAL ms"]);

    sb.run(&[
        "--cloudwatch-endpoint",
        &url,
        "cloudwatch",
        "read",
        "--window",
        "10s",
    ])
    .code(2)
    .err_has(&["between 1m and 63d"]);
    rt.block_on(sim.shutdown());
}
