//! Scenario files, the built-in agents other code relies on, and the CLI banner. (boto3 against the
//! simulator is in `tests/suite/boto3_sim.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;

use agentdeck::sim::cli::{SimArgs, banner, config};
use agentdeck::sim::{Scenario, SimConfig, start};

#[tokio::test]
async fn builtin_agents_are_the_documented_ones() {
    let h = start(SimConfig::builtin().unwrap()).await.unwrap();
    let agents = h.agents();
    let find = |id: &str| agents.iter().find(|a| a.id == id).unwrap();
    let pay = find("PAYAGENT01");
    assert_eq!(pay.name, "payments-assistant");
    assert_eq!(pay.aliases, vec!["PRODALIAS", "TSTALIASID"]);
    assert!(
        pay.behaviours
            .iter()
            .any(|b| b.keywords.contains(&"refund".to_owned())
                && b.does.contains("orders.issueRefund (RoC RESULT)"))
    );
    assert!(pay.behaviours.iter().any(|b| {
        b.keywords.contains(&"pay".to_owned())
            && b.does
                .contains("payments.transferFunds (RoC USER_CONFIRMATION)")
    }));
    assert!(
        pay.behaviours
            .iter()
            .any(|b| b.keywords.contains(&"balance".to_owned()) && b.does.contains("(Lambda)"))
    );
    assert!(
        pay.behaviours
            .iter()
            .any(|b| b.shared && b.keywords.contains(&"fail".to_owned()))
    );
    let ops = find("OPSAGENT02");
    assert_eq!(
        (ops.name.as_str(), ops.aliases.as_slice()),
        ("ops-assistant", &["LIVE".to_owned()][..])
    );
    assert!(ops.behaviours.iter().any(|b| {
        b.does
            .contains("DELETE /clusters/{clusterName} (RoC USER_CONFIRMATION_AND_RESULT)")
    }));
    let kb = find("KBAGENT003");
    assert_eq!(kb.name, "policy-helper");
    assert!(kb.behaviours[0].does.contains("guardrail"));
    let sup = find("SUPERVISR1");
    assert!(sup.behaviours.iter().any(|b| {
        b.does
            .contains("collaborator payments-collaborator (PAYAGENT01/PRODALIAS)")
    }));
    h.shutdown().await;
}

const EXTRA: &str = r#"
description = "a team's own agent"
faults = "slow=1ms"

[[agent]]
id = "HRAGENT007"
name = "hr-bot"
aliases = ["BETA"]
idle_ttl_secs = 60

[[agent.action_group]]
name = "hr"
executor = "return_control"
[[agent.action_group.function]]
name = "approveLeave"
confirmation = true
params = [{ name = "days", type = "integer" }, { name = "employee", type = "string" }]

[[agent.script]]
keywords = ["leave"]
vars = { days = "number(1..10)", employee = "after(for|E-1)" }
[[agent.script.step]]
type = "think"
rationale = "Approve {days} days for {employee}."
[[agent.script.step]]
type = "action"
[[agent.script.step.call]]
action_group = "hr"
function = "approveLeave"
params = { days = "{days}", employee = "{employee}" }
[[agent.script.step]]
type = "answer"
text = "Approved: {result}"
"#;

#[tokio::test]
async fn a_scenario_file_adds_agents_through_the_cli_options() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(EXTRA.as_bytes()).unwrap();
    let args = SimArgs {
        port: 0,
        scenarios: vec![file.path().to_path_buf()],
        seed: 7,
        faults: Some("throttle=0.25".to_owned()),
        time_scale: 0.0,
    };
    let cfg = config(&args).unwrap();
    assert_eq!(cfg.seed, 7);
    let h = start(cfg).await.unwrap();
    // the scenario's faults merge with the flag's
    assert_eq!(h.faults().describe(), "throttle=0.25,slow=1ms");
    let hr = h
        .agents()
        .into_iter()
        .find(|a| a.id == "HRAGENT007")
        .unwrap();
    assert!(
        hr.behaviours[0]
            .does
            .contains("hr.approveLeave (RoC USER_CONFIRMATION_AND_RESULT)")
    );
    let text = banner(&h.endpoint(), &h.agents(), h.faults(), 7);
    assert!(text.contains(&h.endpoint()));
    assert!(text.contains("HRAGENT007"));
    assert!(text.contains("PAYAGENT01  payments-assistant"));
    assert!(text.contains("Any agent (checked before its own scripts):"));
    assert!(text.contains("faults    throttle=0.25,slow=1ms"));
    h.shutdown().await;
}

#[test]
fn scenario_mistakes_name_the_file_and_the_problem() {
    let cases = [
        (
            "[[agent]]\nid = \"bad-id\"\nname = \"x\"\naliases = [\"A\"]\n",
            "agent id \"bad-id\"",
        ),
        (
            "[[agent]]\nid = \"A1\"\nname = \"x\"\naliases = [\"A\"]\nidle_ttl_secs = 5\n",
            "outside 60..=5400",
        ),
        (
            "[[agent]]\nid = \"A1\"\nname = \"x\"\naliases = [\"A\"]\n[[agent.script]]\n[[agent.script.step]]\ntype = \"kb\"\nknowledge_base = \"NOPE\"\n",
            "unknown knowledge base",
        ),
        (
            "[[agent]]\nid = \"A1\"\nname = \"x\"\naliases = [\"A\"]\n[[agent.script]]\n[[agent.script.step]]\ntype = \"action\"\n[[agent.script.step.call]]\naction_group = \"g\"\nfunction = \"f\"\n",
            "matches no function or API",
        ),
        (
            "[[agent]]\nid = \"A1\"\nname = \"x\"\naliases = [\"A\"]\ncolour = \"red\"\n",
            "unknown field `colour`",
        ),
        (
            "[[script]]\n[[script.step]]\ntype = \"fail\"\nreason = \"r\"\nexception = \"boom\"\n",
            "unknown exception",
        ),
        ("faults = \"throttle=7\"\n", "throttle"),
    ];
    for (text, expect) in cases {
        let e = Scenario::parse("team.toml", text).unwrap_err().to_string();
        assert!(e.starts_with("scenario team.toml:"), "{e}");
        assert!(e.contains(expect), "{e} should mention {expect}");
    }
}

#[tokio::test]
async fn duplicate_agents_and_dangling_collaborators_are_refused() {
    let mut cfg = SimConfig::builtin().unwrap();
    cfg.scenarios.push(
        Scenario::parse(
            "dup.toml",
            "[[agent]]\nid = \"PAYAGENT01\"\nname = \"x\"\naliases = [\"A\"]\n",
        )
        .unwrap(),
    );
    assert!(
        start(cfg)
            .await
            .unwrap_err()
            .to_string()
            .contains("defined twice")
    );
    let lone = Scenario::parse("lone.toml", "[[agent]]\nid = \"SUP2\"\nname = \"s\"\naliases = [\"A\"]\n[[agent.collaborator]]\nname = \"c\"\nagent = \"GHOST\"\nalias = \"A\"\n").unwrap();
    let cfg = SimConfig {
        scenarios: vec![lone],
        ..SimConfig::builtin().unwrap()
    };
    assert!(
        start(cfg)
            .await
            .unwrap_err()
            .to_string()
            .contains("GHOST/A")
    );
}
