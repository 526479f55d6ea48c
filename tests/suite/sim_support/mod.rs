//! Shared by the tests that drive the simulator from a synchronous test: a runtime with the
//! simulator started (built-in scenarios, no waiting), the Python that has boto3, and a raw
//! HTTP/1.1 exchange with the simulator.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use agentdeck::sim::{SimConfig, SimHandle, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A runtime and the simulator running on it (built-in scenarios, time scale 0).
pub fn started() -> (tokio::runtime::Runtime, SimHandle) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(async {
        start(SimConfig {
            time_scale: 0.0,
            // Clients nobody here wrote reassemble frames split across HTTP chunks too.
            faults: agentdeck::sim::Faults::parse("split=0.25").unwrap(),
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

/// A raw HTTP/1.1 exchange: status, headers (lower-cased names), body chunks as sent.
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub chunks: Vec<Vec<u8>>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

/// POSTs `body` to the simulator over a fresh connection, with `auth` as the Authorization
/// header, and reads the whole reply.
pub async fn raw(h: &SimHandle, path: &str, auth: Option<&str>, body: &str) -> Raw {
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        h.addr,
        body.len()
    );
    if let Some(a) = auth {
        req.push_str("Authorization: ");
        req.push_str(a);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(all[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut rest = &all[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v == "chunked");
    let mut chunks = Vec::new();
    if chunked {
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            chunks.push(rest[..size].to_vec());
            rest = &rest[size + 2..];
        }
    } else {
        chunks.push(rest.to_vec());
    }
    Raw {
        status,
        headers,
        chunks,
    }
}

/// A well-formed SigV4 Authorization header (the simulator checks the form, not the signature).
pub const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20250314/eu-west-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
