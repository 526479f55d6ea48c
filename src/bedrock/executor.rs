//! Executors: what runs an approved action whose result the application must return.
//! `CommandExecutor` runs a shell command with the call as JSON on stdin and takes stdout as the
//! body, bounded in time and size; `ScriptedExecutor` answers from a script (the demo's);
//! `NoExecutor` refuses, so an approved RESULT action is never answered with an invented body.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::domain::resume::{ExecutionCall, Executor};

/// Runs `sh -c COMMAND` per call.
#[derive(Debug, Clone)]
pub struct CommandExecutor {
    pub command: String,
    pub timeout: Duration,
    /// Output past this many bytes fails the call.
    pub max_output: usize,
}

impl CommandExecutor {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_OUTPUT: usize = 1 << 20;

    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            timeout: Self::DEFAULT_TIMEOUT,
            max_output: Self::DEFAULT_MAX_OUTPUT,
        }
    }
}

impl Executor for CommandExecutor {
    fn execute(&self, call: &ExecutionCall<'_>) -> Result<String, String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the executor {:?}: {e}", self.command))?;
        let input = call.to_json().to_string();
        let stdin = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let Some(mut s) = stdin {
                // A command that does not read its input closes the pipe: not an error here.
                let _ = s.write_all(input.as_bytes());
            }
        });
        let limit = self.max_output;
        let read_capped = move |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(p) = pipe {
                    let _ = p.take(limit as u64 + 1).read_to_end(&mut buf);
                }
                buf
            })
        };
        let stdout = read_capped(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = read_capped(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "the executor {:?} ran past {} s and was killed",
                        self.command,
                        self.timeout.as_secs_f32()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("waiting for the executor: {e}")),
            }
        };
        let _ = writer.join();
        let out = stdout.join().unwrap_or_default();
        let err = stderr.join().unwrap_or_default();
        if out.len() > limit {
            return Err(format!(
                "the executor {:?} wrote more than {limit} bytes",
                self.command
            ));
        }
        if !status.success() {
            let err = String::from_utf8_lossy(&err);
            return Err(format!(
                "the executor {:?} failed ({status}): {}",
                self.command,
                err.trim().chars().take(300).collect::<String>()
            ));
        }
        String::from_utf8(out)
            .map(|s| s.trim_end_matches('\n').to_owned())
            .map_err(|_| {
                format!(
                    "the executor {:?} wrote output that is not UTF-8",
                    self.command
                )
            })
    }
}

/// Answers from a script: a body per `group.function` / `group METHOD /path`, else a default.
#[derive(Debug, Clone, Default)]
pub struct ScriptedExecutor {
    pub bodies: BTreeMap<String, String>,
    pub default_body: Option<String>,
}

impl ScriptedExecutor {
    /// The demo's: every action "succeeds" with a body that says it was simulated.
    pub fn demo() -> Self {
        Self {
            bodies: BTreeMap::new(),
            default_body: Some(
                r#"{"status":"ok","note":"simulated by agentdeck's demo executor"}"#.to_owned(),
            ),
        }
    }
}

impl Executor for ScriptedExecutor {
    fn execute(&self, call: &ExecutionCall<'_>) -> Result<String, String> {
        let label = call.input.action_label();
        self.bodies
            .get(&label)
            .or(self.default_body.as_ref())
            .cloned()
            .ok_or_else(|| format!("no scripted result for {label}"))
    }
}

/// Refuses every call: approved RESULT actions get a REPROMPT saying no executor is set up.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoExecutor;

impl Executor for NoExecutor {
    fn execute(&self, call: &ExecutionCall<'_>) -> Result<String, String> {
        Err(format!(
            "no executor is configured to run {} (run the resume with --executor CMD)",
            call.input.action_label()
        ))
    }
}
