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
import copy
import moto.dynamodb.models as ddb
from moto.dynamodb.models.table import Table

# Test-harness change to moto's TransactWriteItems rollback (atomicity kept, cost changed):
# moto deep-copies every table a transaction names before applying it, so each transaction
# costs the whole table, and a 500-request race takes tens of minutes. Here the snapshot is
# the items the transaction touches (taken before it runs), and a cancelled transaction puts
# exactly those back (or deletes the ones it created). The server handles one request at a
# time, so nothing else sees the items in between, as with the table copy.
class _NoTableCopy:
    def __getattr__(self, name):
        return getattr(copy, name)
    @staticmethod
    def deepcopy(obj, *args, **kwargs):
        if isinstance(obj, Table):
            return obj
        return copy.deepcopy(obj, *args, **kwargs)

ddb.copy = _NoTableCopy()
_transact = ddb.DynamoDBBackend.transact_write_items

def _touched_items(backend, transact_items):
    seen = []
    for entry in transact_items:
        try:
            op_type, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            if op_type == "Put":
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            current = backend.get_item(table.name, key)
            old = copy.deepcopy(current.to_json()["Attributes"]) if current else None
            seen.append((table.name, copy.deepcopy(key), old))
        except Exception:
            continue
    return seen

def _transact_restoring_items(self, transact_items):
    before = _touched_items(self, transact_items)
    try:
        return _transact(self, transact_items)
    except Exception:
        for table_name, key, old in reversed(before):
            if old is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, old)
        raise

ddb.DynamoDBBackend.transact_write_items = _transact_restoring_items

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

/// The moto server shared by the suite's tests (each test uses tables of its own), started on
/// first use; its URL.
pub fn shared() -> &'static str {
    static SERVER: std::sync::OnceLock<Moto> = std::sync::OnceLock::new();
    &SERVER.get_or_init(Moto::start).url
}
