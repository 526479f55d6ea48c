//! Shared by the tests that drive the simulator from a synchronous test: a runtime with the
//! simulator started (built-in scenarios, no waiting), and the Python that has boto3.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use agentdeck::sim::{SimConfig, SimHandle, start};

/// A runtime and the simulator running on it (built-in scenarios, time scale 0).
pub fn started() -> (tokio::runtime::Runtime, SimHandle) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(async {
        start(SimConfig {
            time_scale: 0.0,
            ..SimConfig::builtin().unwrap()
        })
        .await
        .unwrap()
    });
    (rt, sim)
}

/// Run `tests/boto3/<script>` with boto3's Python and these arguments; its stdout as JSON.
pub fn boto3_script(script: &str, args: &[String]) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/boto3")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 script {script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `AGENTDECK_PYTHON`, or `target/py/bin/python`; it must import boto3.
pub fn python() -> PathBuf {
    let path = std::env::var_os("AGENTDECK_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py/bin/python"),
        PathBuf::from,
    );
    let ok = Command::new(&path)
        .args(["-c", "import boto3"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import boto3: run `bash .ci/test`, which installs it into target/py",
        path.display()
    );
    path
}
