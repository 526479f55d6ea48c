//! A moto server on 127.0.0.1 for the DynamoDB tests (moto[server] is installed by
//! `bash .ci/test` into target/py; `AGENTDECK_PYTHON` or `AGENTDECK_MOTO_PYTHON` name another).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server: single-threaded (each request is handled whole before the next, as DynamoDB
/// applies a transaction atomically); it exits when this process's end of its stdin closes.
pub struct Moto {
    pub child: Child,
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const MOTO_SCRIPT: &str = r#"
import os, sys, threading
def watch():
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=False, use_reloader=False)
"#;

pub fn python_with_moto() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("AGENTDECK_MOTO_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py/bin/python"));
    if let Ok(p) = std::env::var("AGENTDECK_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    for python in &candidates {
        let ok = Command::new(python)
            .args(["-c", "import moto.server, werkzeug"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return python.clone();
        }
    }
    panic!(
        "no python with moto[server] found (tried {candidates:?}): run `bash .ci/test` once, \
         which installs it into target/py"
    );
}

impl Moto {
    pub fn start() -> Self {
        let python = python_with_moto();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&python)
            .args(["-c", MOTO_SCRIPT, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting moto with {}: {e}", python.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}
