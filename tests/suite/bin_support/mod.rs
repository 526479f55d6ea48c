//! Running the real `agentdeck` binary in isolation: a temporary directory holds the store and
//! the XDG config/data/state homes, every inherited `AGENTDECK_*` and `NO_COLOR` variable is
//! removed, and each run has a deadline so a hung process fails the test instead of hanging it.
//!
//! - `Sandbox::new()`: a fresh store at `<tmp>/x.db`.
//! - `sb.run(&["pending", "--json"])` / `sb.run_as("bob", ...)` / `sb.run_stdin(args, bytes)`.
//! - `sb.submit(&doc)` writes the document to a file and submits it (asserting exit 0).
//! - `doc(id, inputs)`, `medium()`, `high()`, `critical()`, `low()`: submission documents rated
//!   by the embedded default policy (`src/config/default.toml`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_agentdeck");

/// How long any one CLI run may take before the test fails.
const RUN_DEADLINE: Duration = Duration::from_secs(30);

/// What a finished run left behind.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for assertion messages.
    pub what: String,
}

impl Out {
    /// Asserts the exit code, showing everything the process said if it differs.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "`{}` exited {} (expected {expected})\nstdout:\n{}\nstderr:\n{}",
            self.what, self.code, self.stdout, self.stderr
        );
        self
    }

    /// Asserts that stderr holds every needle.
    #[track_caller]
    pub fn err_has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "`{}`: stderr does not mention {n:?}:\n{}",
                self.what,
                self.stderr
            );
        }
        self
    }

    /// Asserts that stdout holds every needle.
    #[track_caller]
    pub fn out_has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(
                self.stdout.contains(n),
                "`{}`: stdout does not mention {n:?}:\n{}",
                self.what,
                self.stdout
            );
        }
        self
    }

    /// Stdout parsed as one JSON value.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}`: stdout is not JSON ({e}):\n{}",
                self.what, self.stdout
            )
        })
    }
}

/// A temporary world for the binary: store, config, data and state homes.
#[derive(Debug)]
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    /// `(table, endpoint)` when the sandbox's store is a DynamoDB table on a local server.
    pub dynamo: Option<(String, String)>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["config", "data", "state"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let db = dir.path().join("x.db");
        Self {
            dir,
            db,
            dynamo: None,
        }
    }

    /// A sandbox whose store is a fresh table on the DynamoDB endpoint `url` (created with
    /// `agentdeck init`).
    pub fn dynamo(url: &str) -> Self {
        let mut sb = Self::new();
        sb.dynamo = Some((format!("deck-{:08x}", fastrand::u32(..)), url.to_owned()));
        sb.run(&["init"]).code(0);
        sb
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn store_arg(&self) -> String {
        match &self.dynamo {
            Some((table, _)) => format!("dynamodb:{table}"),
            None => format!("sqlite:{}", self.db.display()),
        }
    }

    /// The isolated environment as `NAME=value` pairs (also used inside tmux via `env`).
    pub fn env_pairs(&self, reviewer: &str) -> Vec<(String, String)> {
        let p = |s: &str| self.dir.path().join(s).display().to_string();
        let mut pairs: Vec<(String, String)> = self
            .dynamo
            .iter()
            .map(|(_, url)| ("AGENTDECK_STORE_ENDPOINT".to_owned(), url.clone()))
            .collect();
        pairs.extend([
            ("XDG_CONFIG_HOME".into(), p("config")),
            ("XDG_DATA_HOME".into(), p("data")),
            ("XDG_STATE_HOME".into(), p("state")),
            ("AGENTDECK_REVIEWER".into(), reviewer.into()),
            // Static loopback credentials: a test never reaches for real ones (or IMDS).
            ("AWS_ACCESS_KEY_ID".into(), "AKIDTEST".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]);
        pairs
    }

    /// A command for the binary with the isolated environment and nothing inherited that
    /// agentdeck reads. No `--store` is added.
    pub fn bare_command(&self, reviewer: &str) -> Command {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("AGENTDECK_") || k.starts_with("AWS_") || k == "NO_COLOR" {
                cmd.env_remove(&k);
            }
        }
        for (k, v) in self.env_pairs(reviewer) {
            cmd.env(k, v);
        }
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// A command on this sandbox's store.
    pub fn command(&self, reviewer: &str) -> Command {
        let mut cmd = self.bare_command(reviewer);
        cmd.arg("--store").arg(self.store_arg());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_as("alice", args)
    }

    pub fn run_as(&self, reviewer: &str, args: &[&str]) -> Out {
        let mut cmd = self.command(reviewer);
        cmd.args(args);
        finish(cmd, None, &args.join(" "))
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut cmd = self.command("alice");
        cmd.args(args);
        finish(cmd, Some(stdin.to_vec()), &args.join(" "))
    }

    /// Runs without `--store` (the caller gives one, or none).
    pub fn run_bare(&self, args: &[&str]) -> Out {
        let mut cmd = self.bare_command("alice");
        cmd.args(args);
        finish(cmd, None, &args.join(" "))
    }

    /// Writes `doc` to a file and submits it; returns the run (not asserted).
    pub fn try_submit(&self, doc: &Value) -> Out {
        let file = self.write_doc(doc);
        self.run(&["submit", file.to_str().unwrap()])
    }

    /// Submits `doc`, asserting success.
    #[track_caller]
    pub fn submit(&self, doc: &Value) {
        self.try_submit(doc).code(0);
    }

    /// Writes `doc` to a fresh file in the sandbox.
    pub fn write_doc(&self, doc: &Value) -> PathBuf {
        let id = doc["returnControl"]["invocationId"]
            .as_str()
            .unwrap_or("doc")
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let mut n = 0;
        loop {
            let p = self.path(&format!("{id}-{n}.json"));
            if !p.exists() {
                std::fs::write(&p, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
                return p;
            }
            n += 1;
        }
    }

    /// The ids `pending --json` lists, in its order.
    #[track_caller]
    pub fn pending_ids(&self) -> Vec<String> {
        let v = self.run(&["pending", "--json"]).code(0).json();
        v.as_array()
            .unwrap_or_else(|| panic!("pending --json is not an array: {v}"))
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `audit verify --json`, asserting it ran (exit 0 or 3).
    #[track_caller]
    pub fn verify(&self) -> (i32, Value) {
        let out = self.run(&["audit", "verify", "--json"]);
        assert!(
            out.code == 0 || out.code == 3,
            "audit verify exited {}: {}",
            out.code,
            out.stderr
        );
        (out.code, out.json())
    }

    /// Asserts the store holds nothing: no open request and no audit entry.
    #[track_caller]
    pub fn assert_empty(&self, case: &str) {
        let pending = self.run(&["pending", "--json"]).code(0).json();
        assert_eq!(pending, json!([]), "{case}: something was queued");
        let (code, report) = self.verify();
        assert_eq!(code, 0, "{case}: {report}");
        assert_eq!(
            report["entries"], 0,
            "{case}: something was logged: {report}"
        );
    }

    /// `show ID --json`.
    #[track_caller]
    pub fn show(&self, id: &str) -> Value {
        self.run(&["show", id, "--json"]).code(0).json()
    }

    /// The audit log as parsed JSONL entries.
    #[track_caller]
    pub fn audit_entries(&self) -> Vec<Value> {
        let out = self.run(&["audit", "export", "--format", "jsonl"]);
        out.code(0);
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// The seq of the first audit entry of `kind` on request `id`.
    #[track_caller]
    pub fn entry_seq(&self, kind: &str, id: &str) -> u64 {
        self.audit_entries()
            .iter()
            .find(|e| e["kind"] == kind && e["request"] == id)
            .unwrap_or_else(|| panic!("no {kind} entry for {id}"))["seq"]
            .as_u64()
            .unwrap()
    }
}

/// Runs `cmd` to completion with a deadline, feeding `stdin` if given.
pub fn finish(mut cmd: Command, stdin: Option<Vec<u8>>, what: &str) -> Out {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let feeder = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        // The binary stops reading at its size limit; a broken pipe then is expected.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not finish within {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    Out {
        code: status.code().unwrap_or(-1),
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
        what: format!("agentdeck {what}"),
    }
}

/// A submission document with the given inputs, raised now.
pub fn doc(id: &str, inputs: &[Value]) -> Value {
    json!({
        "agentId": "AGENT01",
        "agentAliasId": "ALIAS01",
        "sessionId": format!("sess-{id}"),
        "agentVersion": "3",
        "sessionAttributes": {"team": "payments"},
        "rationale": "The customer asked for it.",
        "returnControl": {"invocationId": id, "invocationInputs": inputs},
    })
}

/// A `functionInvocationInput` with string parameters.
pub fn function_input(group: &str, function: &str, params: &[(&str, &str)]) -> Value {
    json!({"functionInvocationInput": {
        "actionGroup": group,
        "function": function,
        "actionInvocationType": "USER_CONFIRMATION",
        "parameters": params
            .iter()
            .map(|(n, v)| json!({"name": n, "type": "string", "value": v}))
            .collect::<Vec<_>>(),
    }})
}

/// Rated low by the default policy (rule `read-only`: function `get*`).
pub fn low() -> Value {
    function_input("customers", "getBalance", &[("accountId", "acc-7")])
}

/// Rated medium (no rule matches; the default tier).
pub fn medium() -> Value {
    function_input(
        "customers",
        "updateAddress",
        &[("customerId", "c-42"), ("address", "1 Quay St")],
    )
}

/// Rated high (rule `payment`: amount > 1000).
pub fn high() -> Value {
    function_input("payments", "transferFunds", &[("amount", "5000")])
}

/// Rated critical (rule `large-payment`: amount > 10000). Its confirmation word is
/// `transferFunds`.
pub fn critical() -> Value {
    function_input("payments", "transferFunds", &[("amount", "25000.00")])
}

/// `doc` with its `eventTime` set `secs_ago` seconds in the past.
pub fn raised_ago(mut d: Value, secs_ago: i64) -> Value {
    let t = chrono::Utc::now() - chrono::Duration::seconds(secs_ago);
    d["eventTime"] = json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    d
}
