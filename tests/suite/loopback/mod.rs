//! A loopback HTTP server that answers InvokeAgent calls with scripted responses (event-stream
//! frames written with aws-smithy-eventstream, or HTTP errors), and records every request, so
//! the real SDK client is tested end to end without AWS.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub body: Value,
}

/// One scripted response.
#[derive(Debug, Clone)]
pub enum Reply {
    /// HTTP 200 with this event-stream body.
    Stream(Vec<u8>),
    /// An HTTP error with `x-amzn-ErrorType` and `{"message"}`.
    Error {
        status: u16,
        kind: String,
        message: String,
    },
}

#[derive(Debug)]
pub struct Server {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

fn str_header(name: &'static str, value: &str) -> Header {
    Header::new(name, HeaderValue::String(value.to_owned().into()))
}

/// An event frame of `:event-type` with a JSON payload.
pub fn event(kind: &str, payload: &Value) -> Vec<u8> {
    let message = Message::new(serde_json::to_vec(payload).unwrap_or_default())
        .add_header(str_header(":message-type", "event"))
        .add_header(str_header(":event-type", kind))
        .add_header(str_header(":content-type", "application/json"));
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap_or_default();
    out
}

/// An exception frame.
pub fn exception(kind: &str, message: &str) -> Vec<u8> {
    let m = Message::new(
        serde_json::to_vec(&serde_json::json!({ "message": message })).unwrap_or_default(),
    )
    .add_header(str_header(":message-type", "exception"))
    .add_header(str_header(":exception-type", kind))
    .add_header(str_header(":content-type", "application/json"));
    let mut out = Vec::new();
    write_message_to(&m, &mut out).unwrap_or_default();
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Serves `replies` in order (the last one repeats), one per connection.
pub async fn serve(replies: Vec<Reply>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    let handle = tokio::spawn(async move {
        let mut n = 0_usize;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let reply = replies
                .get(n)
                .or(replies.last())
                .cloned()
                .unwrap_or(Reply::Stream(Vec::new()));
            n += 1;
            let seen = Arc::clone(&seen2);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0_u8; 8192];
                let (head_end, length) = loop {
                    let Ok(k) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    if let Some(end) = find(&buf, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let Ok(k) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if k == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let path = head
                    .lines()
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .unwrap_or_default()
                    .to_owned();
                let body = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
                seen.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(Seen { path, body });
                let response = match reply {
                    Reply::Stream(bytes) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\n\
                             x-amzn-bedrock-agent-content-type: application/json\r\n\
                             x-amz-bedrock-agent-session-id: sess-1\r\n\
                             x-amzn-RequestId: req-{n}\r\ncontent-length: {}\r\n\
                             connection: close\r\n\r\n",
                            bytes.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(&bytes);
                        r
                    }
                    Reply::Error {
                        status,
                        kind,
                        message,
                    } => {
                        let body = serde_json::json!({ "message": message }).to_string();
                        format!(
                            "HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\n\
                             x-amzn-ErrorType: {kind}\r\nx-amzn-RequestId: err-{n}\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .into_bytes()
                    }
                };
                let _ = sock.write_all(&response).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Server { url, seen, handle }
}

impl Server {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
