//! The HTTP/1.1 client of every AWS client agentdeck points at a loopback endpoint (its own
//! simulator, `http://127.0.0.1:PORT`): plain HTTP, kept-alive connections, and a response
//! body read by the task that consumes it.
//!
//! The SDK's default client (hyper's) runs each connection as a task of its own and hands a
//! response's body over through a channel, one HTTP chunk at a time: on an event stream, where
//! each frame is a chunk, every event costs a wake-up of the connection's task and one of the
//! reader's. Here the body decodes its chunks straight off the socket when it is polled, so an
//! event that has arrived costs only its decoding. Requests are written in one write, heads
//! parsed with `httparse` (hyper's parser); a connection goes back to the pool only after its
//! response was read to the end, and one the server closed while it was idle is not reused.
//! HTTPS endpoints (real AWS) keep the SDK's default client.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Frame;
use hyper::http;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A response head larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;
/// Headers a response may have.
const MAX_HEADERS: usize = 96;
/// A chunk-size or trailer line longer than this is refused.
const MAX_LINE: usize = 4096;
/// Room made for each read from a socket.
const READ_ROOM: usize = 16 * 1024;
/// Idle connections kept per endpoint.
const IDLE_PER_HOST: usize = 1024;
/// An idle connection older than this is closed rather than reused (hyper's default too).
const IDLE_FOR: Duration = Duration::from_secs(90);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections by `host:port`.
#[derive(Debug, Default)]
struct Pool {
    /// Most recently returned last.
    idle: Mutex<HashMap<String, Vec<(TcpStream, Instant)>>>,
}

impl Pool {
    /// An idle connection to `authority` the server has not closed, if one is kept.
    fn take(&self, authority: &str) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let conns = idle.get_mut(authority)?;
        let now = Instant::now();
        // The oldest are first: once one is too old, so are all before it.
        if let Some(fresh) = conns
            .iter()
            .position(|(_, since)| now.duration_since(*since) < IDLE_FOR)
        {
            conns.drain(..fresh);
        } else {
            conns.clear();
        }
        while let Some((conn, _)) = conns.pop() {
            if still_open(&conn) {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, authority: &str, conn: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = (conn, Instant::now());
        if let Some(conns) = idle.get_mut(authority) {
            if conns.len() < IDLE_PER_HOST {
                conns.push(entry);
            }
        } else {
            idle.insert(authority.to_owned(), vec![entry]);
        }
    }
}

/// Whether an idle connection can take a request: nothing has arrived on it (an idle
/// connection that turned readable was closed by the server, or sent what nobody asked for).
fn still_open(conn: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(conn.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The loopback HTTP client: see the module notes.
#[derive(Debug, Default)]
pub struct LoopbackHttp {
    pool: Arc<Pool>,
}

impl LoopbackHttp {
    /// A client with an empty pool, shared as the SDK takes it.
    #[must_use]
    pub fn shared() -> SharedHttpClient {
        SharedHttpClient::new(Self::default())
    }
}

impl HttpClient for LoopbackHttp {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector {
            pool: Arc::clone(&self.pool),
            connect_timeout: settings.connect_timeout(),
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Debug)]
struct Connector {
    pool: Arc<Pool>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let pool = Arc::clone(&self.pool);
        let (connect_timeout, read_timeout) = (self.connect_timeout, self.read_timeout);
        HttpConnectorFuture::new(
            async move { send(pool, request, connect_timeout, read_timeout).await },
        )
    }
}

fn other(msg: String) -> ConnectorError {
    ConnectorError::other(msg.into(), None)
}

/// Runs `fut` within `limit`, if there is one.
async fn within<T>(
    limit: Option<Duration>,
    what: &str,
    fut: impl Future<Output = Result<T, ConnectorError>>,
) -> Result<T, ConnectorError> {
    match limit {
        None => fut.await,
        Some(d) => tokio::time::timeout(d, fut).await.unwrap_or_else(|_| {
            Err(ConnectorError::timeout(
                format!("{what} took longer than {d:?}").into(),
            ))
        }),
    }
}

async fn send(
    pool: Arc<Pool>,
    request: HttpRequest,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
) -> Result<HttpResponse, ConnectorError> {
    let request = request
        .try_into_http1x()
        .map_err(|e| other(format!("an invalid request: {e}")))?;
    let uri = request.uri();
    if uri.scheme_str() != Some("http") {
        return Err(other(format!(
            "the loopback HTTP client speaks only http://, not {uri}"
        )));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| other(format!("no host in {uri}")))?
        .as_str()
        .to_owned();
    let head_only = request.method() == http::Method::HEAD;
    let (mut parts, body) = request.into_parts();
    let streamed;
    let body = if let Some(b) = body.bytes() {
        b
    } else {
        // A streamed body is sent whole, with its length.
        parts.headers.remove(http::header::TRANSFER_ENCODING);
        streamed = http_body_util::BodyExt::collect(body)
            .await
            .map_err(|e| other(format!("reading the request body: {e}")))?
            .to_bytes();
        &streamed
    };
    let wire = request_bytes(&parts, body, &authority);
    let reused = pool.take(&authority);
    let mut conn = match reused {
        Some(c) => c,
        None => {
            within(connect_timeout, "connecting", async {
                let c = TcpStream::connect(&authority)
                    .await
                    .map_err(|e| ConnectorError::io(e.into()))?;
                c.set_nodelay(true)
                    .map_err(|e| ConnectorError::io(e.into()))?;
                Ok(c)
            })
            .await?
        }
    };
    conn.write_all(&wire)
        .await
        .map_err(|e| ConnectorError::io(e.into()))?;
    let mut buf = BytesMut::with_capacity(READ_ROOM);
    let head = within(read_timeout, "reading the response head", async {
        read_head(&mut conn, &mut buf).await
    })
    .await?;
    let framing = head.framing(head_only);
    if matches!(framing, Framing::Length(0)) {
        if head.keep_alive && buf.is_empty() {
            pool.put(&authority, conn);
        }
        return respond(head, SdkBody::empty());
    }
    let body = Body {
        conn: Some(conn),
        buf,
        state: match framing {
            Framing::Chunked => State::Size,
            Framing::Length(n) => State::Fixed(n),
            Framing::Close => State::Close,
        },
        keep: head.keep_alive,
        pool,
        authority,
    };
    respond(head, SdkBody::from_body_1_x(body))
}

/// The response the SDK takes: `head`'s status and headers, and `body`.
fn respond(head: Head, body: SdkBody) -> Result<HttpResponse, ConnectorError> {
    let mut response = http::Response::new(body);
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    HttpResponse::try_from(response).map_err(|e| other(format!("an invalid response: {e}")))
}

/// The request's head and body as they go on the wire.
fn request_bytes(request: &http::request::Parts, body: &[u8], authority: &str) -> Vec<u8> {
    let path = request
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let headers = &request.headers;
    let mut out = Vec::with_capacity(256 + body.len() + headers.len() * 64);
    out.extend_from_slice(request.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(http::header::HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(authority.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = matches!(
        request.method,
        http::Method::GET | http::Method::HEAD | http::Method::DELETE | http::Method::OPTIONS
    );
    if !headers.contains_key(http::header::CONTENT_LENGTH) && (!body.is_empty() || !bodiless) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

struct Head {
    status: http::StatusCode,
    headers: http::HeaderMap,
    keep_alive: bool,
}

enum Framing {
    Chunked,
    Length(u64),
    Close,
}

impl Head {
    fn framing(&self, head_only: bool) -> Framing {
        let s = self.status.as_u16();
        if head_only || s == 204 || s == 304 {
            return Framing::Length(0);
        }
        let chunked = self
            .headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        if chunked {
            return Framing::Chunked;
        }
        match self
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    }
}

/// Reads until a whole response head (informational ones skipped) is in `buf`; leaves what
/// follows it there.
async fn read_head(conn: &mut TcpStream, buf: &mut BytesMut) -> Result<Head, ConnectorError> {
    loop {
        if let Some((len, head)) = parse_head(buf)? {
            buf.advance(len);
            if head.status.is_informational()
                && head.status != http::StatusCode::SWITCHING_PROTOCOLS
            {
                continue;
            }
            return Ok(head);
        }
        if buf.len() >= MAX_HEAD {
            return Err(other(format!(
                "the response head is larger than {MAX_HEAD} bytes"
            )));
        }
        buf.reserve(READ_ROOM);
        let n = tokio::io::AsyncReadExt::read_buf(conn, buf)
            .await
            .map_err(|e| ConnectorError::io(e.into()))?;
        if n == 0 {
            return Err(ConnectorError::io(
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the connection closed before a response head arrived",
                )
                .into(),
            ));
        }
    }
}

/// The head at the start of `buf` and its length, once it is all there.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, ConnectorError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(other(format!("a malformed response head: {e}"))),
    };
    let code = parsed.code.unwrap_or(0);
    let status = http::StatusCode::from_u16(code)
        .map_err(|_| other(format!("a response with status {code}")))?;
    let mut headers = http::HeaderMap::with_capacity(parsed.headers.len());
    let mut keep_alive = parsed.version == Some(1);
    for h in parsed.headers.iter() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| other(format!("a response header named {:?}", h.name)))?;
        let value = http::HeaderValue::from_bytes(h.value)
            .map_err(|_| other(format!("a malformed value of response header {}", h.name)))?;
        if name == http::header::CONNECTION {
            let v = value.as_bytes();
            if v.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if v.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
        headers.append(name, value);
    }
    Ok(Some((
        len,
        Head {
            status,
            headers,
            keep_alive,
        },
    )))
}

/// Where the body's decoding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines, up to an empty one.
    Trailers,
    /// A body of known length, this many bytes left.
    Fixed(u64),
    /// A body that ends when the server closes the connection.
    Close,
    Done,
}

/// A response body, decoded off its connection as it is polled.
struct Body {
    conn: Option<TcpStream>,
    buf: BytesMut,
    state: State,
    keep: bool,
    pool: Arc<Pool>,
    authority: String,
}

enum Step {
    Data(Bytes),
    More,
    Done,
}

fn body_error(msg: String) -> BoxError {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg).into()
}

/// The line at the start of `buf` without its CRLF, once it is all there.
fn line(buf: &BytesMut) -> Result<Option<usize>, BoxError> {
    match memchr::memchr(b'\n', buf) {
        Some(i) if i > 0 && buf[i - 1] == b'\r' => Ok(Some(i - 1)),
        Some(_) => Err(body_error("a chunk line not ended by CRLF".into())),
        None if buf.len() > MAX_LINE => Err(body_error(format!(
            "a chunk line longer than {MAX_LINE} bytes"
        ))),
        None => Ok(None),
    }
}

impl Body {
    /// Decodes what `buf` holds as far as it goes.
    fn step(&mut self) -> Result<Step, BoxError> {
        loop {
            match self.state {
                State::Done => return Ok(Step::Done),
                State::Size => {
                    let Some(end) = line(&self.buf)? else {
                        return Ok(Step::More);
                    };
                    let digits = self.buf[..end]
                        .split(|b| *b == b';')
                        .next()
                        .unwrap_or_default();
                    let digits = std::str::from_utf8(digits)
                        .ok()
                        .map(str::trim)
                        .filter(|d| !d.is_empty() && d.len() <= 16)
                        .ok_or_else(|| body_error("a malformed chunk size".into()))?;
                    let size = u64::from_str_radix(digits, 16)
                        .map_err(|_| body_error(format!("a malformed chunk size {digits:?}")))?;
                    self.buf.advance(end + 2);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) | State::Fixed(left) => {
                    if self.buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.buf.len());
                    let data = self.buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = match (self.state, left) {
                        (State::Data(_), 0) => State::DataEnd,
                        (State::Data(_), l) => State::Data(l),
                        (_, 0) => State::Done,
                        (_, l) => State::Fixed(l),
                    };
                    return Ok(Step::Data(data));
                }
                State::DataEnd => {
                    if self.buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(body_error("a chunk not followed by CRLF".into()));
                    }
                    self.buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    let Some(end) = line(&self.buf)? else {
                        return Ok(Step::More);
                    };
                    self.buf.advance(end + 2);
                    if end == 0 {
                        self.state = State::Done;
                    }
                }
                State::Close => {
                    if self.buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(self.buf.split().freeze()));
                }
            }
        }
    }

    /// The body is read to its end: its connection goes back to the pool if it can serve
    /// another request.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.keep
            && self.buf.is_empty()
        {
            self.pool.put(&self.authority, conn);
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match this.step() {
                Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Step::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let Some(conn) = this.conn.as_ref() else {
                return Poll::Ready(None);
            };
            if let Err(e) = ready!(conn.poll_read_ready(cx)) {
                this.conn = None;
                this.state = State::Done;
                return Poll::Ready(Some(Err(e.into())));
            }
            this.buf.reserve(READ_ROOM);
            match conn.try_read_buf(&mut this.buf) {
                Ok(0) => {
                    this.conn = None;
                    if this.state == State::Close {
                        this.state = State::Done;
                        return Poll::Ready(None);
                    }
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the connection closed before the response body ended",
                    )
                    .into())));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn connector() -> Connector {
        Connector {
            pool: Arc::new(Pool::default()),
            connect_timeout: Some(Duration::from_secs(5)),
            read_timeout: Some(Duration::from_secs(5)),
        }
    }

    fn post(addr: std::net::SocketAddr, body: &'static str) -> HttpRequest {
        HttpRequest::try_from(
            http::Request::builder()
                .method("POST")
                .uri(format!("http://{addr}/agents/A/text?x=1"))
                .header("x-amz-date", "20260101T000000Z")
                .body(SdkBody::from(body))
                .unwrap(),
        )
        .unwrap()
    }

    /// Reads one request (head and a `content-length` body) off `conn`; None once it closes.
    async fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(buf[..end].to_vec()).unwrap();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.parse().unwrap());
                if buf.len() >= end + 4 + len {
                    let all = String::from_utf8(buf[..end + 4 + len].to_vec()).unwrap();
                    buf.drain(..end + 4 + len);
                    return Some(all);
                }
            }
            let mut more = [0u8; 4096];
            let n = conn.read(&mut more).await.unwrap();
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&more[..n]);
        }
    }

    /// A server that answers each request on each connection with `reply`, written in
    /// pieces of `piece` bytes; returns its address and the requests it saw, by connection.
    async fn server(
        reply: &'static [u8],
        piece: usize,
    ) -> (std::net::SocketAddr, Arc<Mutex<Vec<Vec<String>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let at = {
                        let mut l = log.lock().unwrap();
                        l.push(Vec::new());
                        l.len() - 1
                    };
                    let mut buf = Vec::new();
                    while let Some(req) = read_request(&mut conn, &mut buf).await {
                        log.lock().unwrap()[at].push(req);
                        for part in reply.chunks(piece) {
                            conn.write_all(part).await.unwrap();
                            conn.flush().await.unwrap();
                            tokio::task::yield_now().await;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    /// A server that answers one request per connection with `reply`, then closes it.
    async fn closing_server(reply: &'static [u8]) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                read_request(&mut conn, &mut buf).await.unwrap();
                conn.write_all(reply).await.unwrap();
                drop(conn);
            }
        });
        addr
    }

    async fn body_of(response: HttpResponse) -> Result<(Vec<Bytes>, Vec<u8>), BoxError> {
        let mut body = response.into_body();
        let mut frames = Vec::new();
        let mut all = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame?.into_data().unwrap();
            all.extend_from_slice(&data);
            frames.push(data);
        }
        Ok((frames, all))
    }

    const CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\n\
transfer-encoding: chunked\r\nx-amzn-requestid: r-1\r\n\r\n\
5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n";

    #[test]
    fn a_chunked_body_is_decoded_chunk_by_chunk_and_the_connection_is_reused() {
        rt().block_on(async {
            // One byte per write: every boundary of the head and the chunks falls mid-read.
            let (addr, seen) = server(CHUNKED, 1).await;
            let c = connector();
            for _ in 0..3 {
                let response = c.call(post(addr, "{\"inputText\":\"hi\"}")).await.unwrap();
                assert_eq!(response.status().as_u16(), 200);
                assert_eq!(response.headers().get("x-amzn-requestid"), Some("r-1"));
                let (_, all) = body_of(response).await.unwrap();
                assert_eq!(all, b"hello, world");
            }
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 1, "one connection for the three requests");
            assert_eq!(seen[0].len(), 3);
            let req = &seen[0][0];
            assert!(
                req.starts_with("POST /agents/A/text?x=1 HTTP/1.1\r\n"),
                "{req}"
            );
            assert!(req.contains(&format!("host: {addr}\r\n")), "{req}");
            assert!(req.contains("content-length: 18\r\n"), "{req}");
            assert!(req.contains("x-amz-date: 20260101T000000Z\r\n"), "{req}");
            assert!(req.ends_with("\r\n\r\n{\"inputText\":\"hi\"}"), "{req}");
        });
    }

    #[test]
    fn each_chunk_that_arrived_whole_is_one_frame() {
        rt().block_on(async {
            let (addr, _) = server(CHUNKED, CHUNKED.len()).await;
            let response = connector().call(post(addr, "")).await.unwrap();
            let (frames, _) = body_of(response).await.unwrap();
            assert_eq!(frames, vec![Bytes::from("hello"), Bytes::from(", world")]);
        });
    }

    #[test]
    fn a_body_of_known_length_and_an_empty_one() {
        rt().block_on(async {
            let (addr, seen) = server(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\n\r\n{\"m\":\"no\"}\n",
                3,
            )
            .await;
            let c = connector();
            let response = c.call(post(addr, "x")).await.unwrap();
            assert_eq!(response.status().as_u16(), 400);
            assert_eq!(body_of(response).await.unwrap().1, b"{\"m\":\"no\"}\n");
            let (addr2, _) = server(b"HTTP/1.1 204 No Content\r\n\r\n", 64).await;
            let response = c.call(post(addr2, "x")).await.unwrap();
            assert_eq!(response.status().as_u16(), 204);
            assert!(body_of(response).await.unwrap().1.is_empty());
            // Both connections were kept: a second call to each opens nothing new.
            let response = c.call(post(addr, "x")).await.unwrap();
            body_of(response).await.unwrap();
            assert_eq!(seen.lock().unwrap().len(), 1);
        });
    }

    #[test]
    fn a_connection_the_server_closes_is_not_reused() {
        rt().block_on(async {
            let (addr, seen) = server(
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                64,
            )
            .await;
            let c = connector();
            for _ in 0..2 {
                let response = c.call(post(addr, "x")).await.unwrap();
                assert_eq!(body_of(response).await.unwrap().1, b"ok");
            }
            assert_eq!(seen.lock().unwrap().len(), 2, "a new connection for each");
        });
    }

    #[test]
    fn an_idle_connection_closed_by_the_server_is_replaced() {
        rt().block_on(async {
            // The response says nothing of closing; the server closes all the same.
            let addr = closing_server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            let c = connector();
            for _ in 0..2 {
                let response = c.call(post(addr, "x")).await.unwrap();
                assert_eq!(body_of(response).await.unwrap().1, b"ok");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    #[test]
    fn a_broken_body_is_an_error_that_says_what_broke() {
        rt().block_on(async {
            for (reply, expect) in [
                (
                    &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"
                        [..],
                    "malformed chunk size",
                ),
                (
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n",
                    "not followed by CRLF",
                ),
            ] {
                let (addr, _) = server(reply, 64).await;
                let response = connector().call(post(addr, "x")).await.unwrap();
                let e = body_of(response).await.unwrap_err().to_string();
                assert!(e.contains(expect), "{e}");
            }
            let addr =
                closing_server(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel")
                    .await;
            let response = connector().call(post(addr, "x")).await.unwrap();
            let e = body_of(response).await.unwrap_err().to_string();
            assert!(e.contains("closed before the response body ended"), "{e}");
        });
    }

    #[test]
    fn a_malformed_or_oversized_head_is_refused() {
        rt().block_on(async {
            let (addr, _) = server(b"HTTP/1.1 2x0 OK\r\n\r\n", 64).await;
            let e = connector().call(post(addr, "x")).await.unwrap_err();
            assert!(
                format!("{e:?}").contains("malformed response head"),
                "{e:?}"
            );
            let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..90 {
                big.extend_from_slice(format!("x-h{i}: {}\r\n", "v".repeat(800)).as_bytes());
            }
            let (addr, _) = server(Box::leak(big.into_boxed_slice()), 4096).await;
            let e = connector().call(post(addr, "x")).await.unwrap_err();
            assert!(format!("{e:?}").contains("larger than"), "{e:?}");
        });
    }

    #[test]
    fn only_plain_http_is_spoken() {
        rt().block_on(async {
            let req = HttpRequest::try_from(
                http::Request::builder()
                    .uri("https://bedrock-agent-runtime.us-east-1.amazonaws.com/")
                    .body(SdkBody::empty())
                    .unwrap(),
            )
            .unwrap();
            let e = connector().call(req).await.unwrap_err();
            assert!(format!("{e:?}").contains("speaks only http://"), "{e:?}");
        });
    }
}
