//! The HTTP side: hyper 1 on 127.0.0.1, the InvokeAgent route, request validation in AWS's
//! words, session bookkeeping, and streaming the planned frames (with faults) as chunked body.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::cw::{self, store::MetricStore};
use super::engine::{self, Options, Out, Planned, Runner, World, match_results};
use super::error::AwsError;
use super::fault::{Corrupt, FaultPlan, Faults};
use super::frame;
use super::frame::EventType;
use super::session::{Aged, Clock, Sessions, Spent};
use super::{SimStats, scenario};

const MAX_BODY: usize = 32 * 1024 * 1024;

#[derive(Debug, Default)]
struct Counters {
    invocations: AtomicU64,
    resumes: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    throttle_draws: AtomicU64,
}

/// State shared by every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub world: World,
    pub seed: u64,
    pub faults: Faults,
    pub time_scale: f64,
    pub clock: Clock,
    sessions: Mutex<Sessions>,
    /// Resume attempts by invocationId (`resume_count`).
    resumes: Mutex<Aged<u32>>,
    counters: Counters,
    /// The CloudWatch stand-in's metrics: what the agents publish, plus whatever is put.
    pub cloudwatch: Mutex<MetricStore>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// FNV-1a over the parts, for seeds that do not depend on scheduling.
fn mix(seed: u64, parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Shared {
    pub fn new(world: World, seed: u64, faults: Faults, time_scale: f64) -> Self {
        Self {
            world,
            seed,
            faults,
            time_scale,
            clock: Clock::new(),
            sessions: Mutex::new(Sessions::default()),
            resumes: Mutex::new(Aged::default()),
            counters: Counters::default(),
            cloudwatch: Mutex::new(MetricStore::default()),
        }
    }

    /// Resume attempts for `id` (forgotten 90 minutes after the last one).
    pub fn resume_count(&self, id: &str) -> u32 {
        lock(&self.resumes).get(id).copied().unwrap_or(0)
    }

    pub fn stats(&self) -> SimStats {
        let c = &self.counters;
        SimStats {
            invocations: c.invocations.load(Ordering::Relaxed),
            resumes: c.resumes.load(Ordering::Relaxed),
            frames: c.frames.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            sessions: lock(&self.sessions).created,
            errors: c.errors.load(Ordering::Relaxed),
        }
    }
}

/// Accept connections until told to stop; then drop them all.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                conns.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(req, &shared).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// The response body: frames handed over by the streaming task as they are due.
#[derive(Debug)]
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

fn channel_body(chunks: Vec<Bytes>) -> ChannelBody {
    let (tx, rx) = mpsc::channel(chunks.len().max(1));
    for c in chunks {
        let _ = tx.try_send(Ok(c));
    }
    ChannelBody { rx }
}

fn error_response(shared: &Shared, e: &AwsError, request_id: &str) -> Response<ChannelBody> {
    shared.counters.errors.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(code = e.code, message = %e.message, "sim error response");
    let mut r = Response::new(channel_body(vec![Bytes::from(e.body())]));
    *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = r.headers_mut();
    h.insert("content-type", hv("application/json"));
    h.insert(
        "x-amzn-errortype",
        hv(&format!(
            "{}:http://internal.amazon.com/coral/com.amazon.bedrock.agent.runtime/",
            e.code
        )),
    );
    h.insert("x-amzn-requestid", hv(request_id));
    r
}

fn hv(s: &str) -> hyper::header::HeaderValue {
    hyper::header::HeaderValue::from_str(s)
        .unwrap_or_else(|_| hyper::header::HeaderValue::from_static("invalid"))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[allow(clippy::struct_field_names)]
struct Route {
    agent_id: String,
    alias_id: String,
    session_id: String,
}

fn route(path: &str) -> Option<Result<Route, AwsError>> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if parts.len() != 7
        || parts[0] != "agents"
        || parts[2] != "agentAliases"
        || parts[4] != "sessions"
        || parts[6] != "text"
    {
        return None;
    }
    let decode = |s: &str| percent_decode(s).unwrap_or_else(|| s.to_owned());
    let (agent_id, alias_id, session_id) = (decode(parts[1]), decode(parts[3]), decode(parts[5]));
    let id_rule = "Member must satisfy regular expression pattern: [0-9a-zA-Z]+";
    let check = || {
        if agent_id.len() > 10 {
            return Err(AwsError::constraint(
                &agent_id,
                "agentId",
                "Member must have length less than or equal to 10",
            ));
        }
        if !scenario::valid_id(&agent_id) {
            return Err(AwsError::constraint(&agent_id, "agentId", id_rule));
        }
        if alias_id.len() > 10 {
            return Err(AwsError::constraint(
                &alias_id,
                "agentAliasId",
                "Member must have length less than or equal to 10",
            ));
        }
        if !scenario::valid_id(&alias_id) {
            return Err(AwsError::constraint(&alias_id, "agentAliasId", id_rule));
        }
        if session_id.len() < 2 || session_id.len() > 100 {
            return Err(AwsError::constraint(
                &session_id,
                "sessionId",
                "Member must have length between 2 and 100",
            ));
        }
        if !session_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            return Err(AwsError::constraint(
                &session_id,
                "sessionId",
                "Member must satisfy regular expression pattern: [0-9a-zA-Z._:-]+",
            ));
        }
        Ok(())
    };
    Some(check().map(|()| Route {
        agent_id: agent_id.clone(),
        alias_id: alias_id.clone(),
        session_id: session_id.clone(),
    }))
}

/// The region from a SigV4 credential scope (`Credential=AKID/20250101/us-east-1/bedrock/aws4_request`).
fn check_auth(req: &Request<Incoming>) -> Result<String, AwsError> {
    let Some(auth) = req.headers().get("authorization") else {
        return Err(AwsError::missing_auth());
    };
    let auth = auth.to_str().unwrap_or_default();
    let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(AwsError::incomplete_signature(format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={auth}"
        )));
    };
    let Some(cred) = rest
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("Credential="))
    else {
        return Err(AwsError::incomplete_signature(format!(
            "Authorization header requires 'Credential' parameter. Authorization={auth}"
        )));
    };
    Ok(cred.split('/').nth(2).unwrap_or("us-east-1").to_owned())
}

fn opt<'a>(body: &'a Map<String, Value>, key: &str) -> &'a Value {
    body.get(key).unwrap_or(&Value::Null)
}

fn serialization(field: &str, expected: &str) -> AwsError {
    AwsError::serialization(format!(
        "Start of structure or map found where not expected, or wrong type for '{field}': expected {expected}"
    ))
}

/// Parsed request body.
struct Invoke {
    input: Option<String>,
    trace: bool,
    end_session: bool,
    memory_id: Option<String>,
    attributes: Option<Map<String, Value>>,
    invocation_id: Option<String>,
    results: Option<Vec<Value>>,
    streaming: Option<usize>,
}

fn parse_body(bytes: &[u8]) -> Result<Invoke, AwsError> {
    let value: Value = if bytes.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(bytes).map_err(|e| {
            AwsError::serialization(format!("Could not parse the request body as JSON: {e}"))
        })?
    };
    let Value::Object(body) = value else {
        return Err(AwsError::serialization(
            "The request body must be a JSON object",
        ));
    };
    let string = |v: &Value, f: &str| match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(serialization(f, "a string")),
    };
    let boolean = |v: &Value, f: &str| match v {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        _ => Err(serialization(f, "a boolean")),
    };
    let input = string(opt(&body, "inputText"), "inputText")?;
    if let Some(t) = &input {
        if t.chars().count() > 25_000_000 {
            return Err(AwsError::constraint(
                "...",
                "inputText",
                "Member must have length less than or equal to 25000000",
            ));
        }
    }
    let memory_id = string(opt(&body, "memoryId"), "memoryId")?;
    if let Some(m) = &memory_id {
        if m.len() < 2
            || m.len() > 100
            || !m
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            return Err(AwsError::constraint(
                m,
                "memoryId",
                "Member must satisfy regular expression pattern: [0-9a-zA-Z._:-]+",
            ));
        }
    }
    let (mut attributes, mut invocation_id, mut results) = (None, None, None);
    match opt(&body, "sessionState") {
        Value::Null => {}
        Value::Object(state) => {
            match opt(state, "sessionAttributes") {
                Value::Null => {}
                Value::Object(m) if m.values().all(Value::is_string) => {
                    attributes = Some(m.clone());
                }
                _ => {
                    return Err(serialization(
                        "sessionState.sessionAttributes",
                        "a map of strings",
                    ));
                }
            }
            invocation_id = string(opt(state, "invocationId"), "sessionState.invocationId")?;
            match opt(state, "returnControlInvocationResults") {
                Value::Null => {}
                Value::Array(a) => {
                    if a.is_empty() || a.len() > 5 {
                        return Err(AwsError::constraint(
                            &format!("[{} results]", a.len()),
                            "sessionState.returnControlInvocationResults",
                            "Member must have length less than or equal to 5 and greater than or equal to 1",
                        ));
                    }
                    results = Some(a.clone());
                }
                _ => {
                    return Err(serialization(
                        "sessionState.returnControlInvocationResults",
                        "a list",
                    ));
                }
            }
        }
        _ => return Err(serialization("sessionState", "a structure")),
    }
    let streaming = match opt(&body, "streamingConfigurations") {
        Value::Null => None,
        Value::Object(s) => {
            let on = boolean(
                opt(s, "streamFinalResponse"),
                "streamingConfigurations.streamFinalResponse",
            )?;
            let interval = match opt(s, "applyGuardrailInterval") {
                Value::Null => 50,
                Value::Number(n) => {
                    let n = n.as_u64().unwrap_or(0);
                    if n < 1 {
                        return Err(AwsError::constraint(
                            &n.to_string(),
                            "streamingConfigurations.applyGuardrailInterval",
                            "Member must have value greater than or equal to 1",
                        ));
                    }
                    n as usize
                }
                _ => {
                    return Err(serialization(
                        "streamingConfigurations.applyGuardrailInterval",
                        "an integer",
                    ));
                }
            };
            on.then_some(interval)
        }
        _ => return Err(serialization("streamingConfigurations", "a structure")),
    };
    Ok(Invoke {
        input,
        trace: boolean(opt(&body, "enableTrace"), "enableTrace")?,
        end_session: boolean(opt(&body, "endSession"), "endSession")?,
        memory_id,
        attributes,
        invocation_id,
        results,
        streaming,
    })
}

pub(crate) async fn handle(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<ChannelBody> {
    let path = req.uri().path().to_owned();
    if let Some(op) = path.strip_prefix(cw::PATH_PREFIX) {
        let op = op.to_owned();
        return cloudwatch(req, shared, &op, cw::Codec::Cbor).await;
    }
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(cw::JSON_TARGET_PREFIX))
        .map(str::to_owned);
    if let (Some(op), "/") = (target, path.as_str()) {
        return cloudwatch(req, shared, &op, cw::Codec::Json).await;
    }
    let fallback_id = engine::uuid(&mut fastrand::Rng::with_seed(mix(
        shared.seed,
        &[
            "http-error",
            &path,
            &shared.counters.errors.load(Ordering::Relaxed).to_string(),
        ],
    )));
    let route = match route(&path) {
        None => return error_response(shared, &AwsError::unknown_operation(), &fallback_id),
        Some(Err(e)) => return error_response(shared, &e, &fallback_id),
        Some(Ok(r)) => r,
    };
    if req.method() != hyper::Method::POST {
        return error_response(shared, &AwsError::unknown_operation(), &fallback_id);
    }
    let region = match check_auth(&req) {
        Ok(r) => r,
        Err(e) => return error_response(shared, &e, &fallback_id),
    };
    let bytes = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error_response(
                shared,
                &AwsError::validation("The request body is too large or was cut off."),
                &fallback_id,
            );
        }
    };
    let invoke = match parse_body(&bytes) {
        Ok(i) => i,
        Err(e) => {
            record(shared, &route, &region, Err(&e));
            return error_response(shared, &e, &fallback_id);
        }
    };
    match plan(shared, &route, &invoke, &region) {
        Ok(p) => {
            record(shared, &route, &region, Ok(&p));
            stream(shared, p, &route, invoke.memory_id.as_deref())
        }
        Err((e, rid)) => {
            record(shared, &route, &region, Err(&e));
            error_response(shared, &e, &rid)
        }
    }
}

fn outcome_of(e: &AwsError) -> cw::Outcome {
    match e.status {
        429 => cw::Outcome::Throttled,
        s if s >= 500 => cw::Outcome::ServerError,
        _ => cw::Outcome::ClientError,
    }
}

/// The `AWS/Bedrock/Agents` metrics Bedrock would publish for this call, into the stand-in.
fn record(shared: &Shared, route: &Route, region: &str, result: Result<&Prepared, &AwsError>) {
    let model_id = shared
        .world
        .agents
        .get(&route.agent_id)
        .filter(|a| a.aliases.contains(&route.alias_id))
        .map(|a| a.foundation_model.clone());
    let mut inv = cw::Invocation {
        at: shared.clock.wall(),
        alias_arn: engine::alias_arn(region, &route.agent_id, &route.alias_id),
        model_id,
        outcome: cw::Outcome::Ok,
        total_ms: None,
        ttft_ms: None,
        model_calls: Vec::new(),
    };
    match result {
        Err(e) => inv.outcome = outcome_of(e),
        Ok(p) => {
            let failed = p.faults.exception.as_ref().map(|(_, e)| e).or_else(|| {
                p.items.iter().find_map(|i| match &i.out {
                    Out::Exception(e) => Some(e),
                    Out::Event(..) | Out::Encoded(..) => None,
                })
            });
            if let Some(e) = failed {
                inv.outcome = outcome_of(e);
            }
            inv.total_ms = Some(p.items.last().map_or(0, |i| i.at_ms));
            if p.streaming {
                inv.ttft_ms = p
                    .items
                    .iter()
                    .find(|i| matches!(i.out, Out::Event(EventType::Chunk, _)))
                    .map(|i| i.at_ms);
            }
            inv.model_calls.clone_from(&p.model_calls);
        }
    }
    cw::record_invocation(&mut lock(&shared.cloudwatch), &inv);
}

/// A CloudWatch call over RPC v2 CBOR (see `cw`).
async fn cloudwatch(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    op: &str,
    codec: cw::Codec,
) -> Response<ChannelBody> {
    let request_id = engine::uuid(&mut fastrand::Rng::with_seed(mix(
        shared.seed,
        &[
            "cloudwatch",
            op,
            &shared.counters.errors.load(Ordering::Relaxed).to_string(),
            &shared.clock.now().as_nanos().to_string(),
        ],
    )));
    let answer = if req.method() != hyper::Method::POST {
        Err(cw::CwError::unknown_operation(&format!(
            "{} {op}",
            req.method()
        )))
    } else if let Err(e) = check_auth(&req) {
        Err(cw::CwError {
            status: e.status,
            code: e.code,
            shape: e.code,
            message: e.message,
        })
    } else if codec == cw::Codec::Cbor
        && req
            .headers()
            .get("smithy-protocol")
            .is_none_or(|v| v.as_bytes() != b"rpc-v2-cbor")
    {
        Err(cw::CwError::serialization(
            "This endpoint speaks Smithy RPC v2 CBOR: send the header smithy-protocol: rpc-v2-cbor and a CBOR body.",
        ))
    } else {
        let gzip = req
            .headers()
            .get("content-encoding")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        match http_body_util::Limited::new(req.into_body(), 2 * cw::MAX_PUT_BYTES + 1024)
            .collect()
            .await
        {
            Ok(b) => Ok(b.to_bytes()),
            Err(_) => Err(cw::CwError::too_large(format!(
                "The request body is larger than {} bytes or was cut off.",
                2 * cw::MAX_PUT_BYTES
            ))),
        }
        .map(|bytes| {
            let call = cw::Call {
                codec,
                op,
                body: &bytes,
                gzip,
            };
            cw::serve(&shared.cloudwatch, call, shared.clock.wall())
        })
    };
    let (status, body, error) = match answer {
        Ok(a) => (a.status, a.body, a.error),
        Err(e) => (e.status, e.body(codec), Some(e)),
    };
    let mut r = Response::new(channel_body(vec![Bytes::from(body)]));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = r.headers_mut();
    h.insert("content-type", hv(codec.content_type()));
    if codec == cw::Codec::Cbor {
        h.insert("smithy-protocol", hv("rpc-v2-cbor"));
    }
    h.insert("x-amzn-requestid", hv(&request_id));
    if let Some(e) = error {
        shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(code = e.code, message = %e.message, "sim cloudwatch error");
        h.insert("x-amzn-query-error", hv(&e.query_error()));
    }
    r
}

struct Prepared {
    request_id: String,
    items: Vec<Planned>,
    model_calls: Vec<cw::ModelCall>,
    streaming: bool,
    faults: FaultPlan,
    rng_seed: u64,
}

fn plan(
    shared: &Shared,
    route: &Route,
    invoke: &Invoke,
    region: &str,
) -> Result<Prepared, (AwsError, String)> {
    let Route {
        agent_id,
        alias_id,
        session_id,
    } = route;
    let key = format!("{agent_id}/{alias_id}/{session_id}");
    let throttle_n = shared
        .counters
        .throttle_draws
        .fetch_add(1, Ordering::Relaxed);
    let now = shared.clock.now();
    let mut sessions = lock(&shared.sessions);
    let turn = sessions.map.get(&key).map_or(0, |s| s.turns);
    let seed = mix(
        shared.seed,
        &[agent_id, alias_id, session_id, &turn.to_string()],
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let request_id = engine::uuid(&mut rng);
    let fail = |e: AwsError| (e, request_id.clone());
    // Every resume attempt counts, even one that is throttled or rejected.
    let resume_id = invoke.invocation_id.clone();
    if let Some(id) = &resume_id {
        *lock(&shared.resumes).touch(id, now, || 0) += 1;
    }
    if shared.faults.throttle > 0.0 {
        let mut t = fastrand::Rng::with_seed(mix(seed, &["throttle", &throttle_n.to_string()]));
        if t.f64() < shared.faults.throttle {
            return Err(fail(AwsError::throttling()));
        }
    }
    let Some(agent) = shared.world.agents.get(agent_id).cloned() else {
        return Err(fail(AwsError::not_found()));
    };
    if !agent.aliases.contains(alias_id) {
        return Err(fail(AwsError::not_found()));
    }
    let ttl = Duration::from_secs(agent.idle_ttl_secs);
    let session = sessions.open(&key, now, ttl);
    let opts = Options {
        trace: invoke.trace,
        streaming: invoke.streaming,
        region: region.to_owned(),
        start: shared.clock.wall(),
        time_scale: shared.time_scale,
    };
    let mut runner = Runner::new(&shared.world, rng.u64(..), opts);
    let mut superseded = None;
    match (&resume_id, &invoke.results) {
        (Some(id), Some(results)) => {
            let pending = session.pending.as_ref().filter(|p| &p.invocation_id == id);
            let Some(pending) = pending else {
                let why = sessions.spent.get(id).copied();
                let msg = match why {
                    Some(Spent::Resumed) => format!(
                        "The invocationId {id} has already been used to resume the session; each return of control can be answered once."
                    ),
                    Some(Spent::Superseded) => format!(
                        "The invocationId {id} is no longer pending: a newer request in session {session_id} replaced it."
                    ),
                    Some(Spent::Expired { ttl_secs }) => format!(
                        "The invocationId {id} is not valid: session {session_id} expired after {ttl_secs} seconds without activity. Start a new request."
                    ),
                    None => format!(
                        "The invocationId {id} does not match the pending return of control of session {session_id}."
                    ),
                };
                return Err(fail(AwsError::validation(msg)));
            };
            let outcomes = match_results(pending, results).map_err(&fail)?;
            let pending = session
                .pending
                .take()
                .ok_or_else(|| fail(AwsError::internal("pending vanished")))?;
            runner.resume(
                pending,
                &outcomes,
                &Value::Array(results.clone()),
                &request_id,
            );
            sessions.spent.insert(id.clone(), Spent::Resumed, now);
            shared.counters.resumes.fetch_add(1, Ordering::Relaxed);
        }
        (Some(_), None) => {
            return Err(fail(AwsError::validation(
                "sessionState.invocationId was given without returnControlInvocationResults: send one result per invocation input.",
            )));
        }
        (None, Some(_)) => {
            return Err(fail(AwsError::validation(
                "sessionState.returnControlInvocationResults require sessionState.invocationId: use the invocationId of the returnControl event.",
            )));
        }
        (None, None) => {
            let input = invoke.input.clone().unwrap_or_default();
            if input.trim().is_empty() {
                return Err(fail(AwsError::validation(
                    "inputText is required unless sessionState.returnControlInvocationResults are sent.",
                )));
            }
            if let Some(attrs) = &invoke.attributes {
                session.attributes.clone_from(attrs);
            }
            superseded = session.pending.take().map(|p| p.invocation_id);
            let attrs = session.attributes.clone();
            runner.invoke(&agent, alias_id, session_id, &input, &request_id, &attrs);
        }
    }
    let session = sessions.open(&key, now, ttl);
    session.turns += 1;
    session.last_seen = now;
    session.pending = runner.pending.take();
    if invoke.memory_id.is_some() {
        session.memory_id.clone_from(&invoke.memory_id);
    }
    if invoke.end_session {
        if let Some(old) = sessions.map.remove(&key) {
            if let Some(p) = old.pending {
                sessions
                    .spent
                    .insert(p.invocation_id, Spent::Superseded, now);
            }
        }
    }
    if let Some(id) = superseded {
        sessions.spent.insert(id, Spent::Superseded, now);
    }
    drop(sessions);
    let items = runner.out;
    let model_calls = runner.model_calls;
    let faults = shared.faults.plan(&mut rng, items.len());
    shared.counters.invocations.fetch_add(1, Ordering::Relaxed);
    Ok(Prepared {
        request_id,
        items,
        model_calls,
        streaming: invoke.streaming.is_some(),
        faults,
        rng_seed: rng.u64(..),
    })
}

fn encode(out: &Out) -> Bytes {
    match out {
        Out::Event(kind, json) => {
            let mut text = crate::domain::json_text::JsonText::with_capacity(1024);
            text.value(json);
            frame::event(*kind, text.into_string().as_bytes())
        }
        Out::Encoded(bytes) => bytes.clone(),
        Out::Exception(e) => frame::exception(&e.exception_type(), &e.message),
    }
}

fn stream(
    shared: &Arc<Shared>,
    p: Prepared,
    route: &Route,
    memory_id: Option<&str>,
) -> Response<ChannelBody> {
    let request_id = hv(&p.request_id);
    let body = if shared.time_scale <= 0.0 && p.faults.is_clean() {
        // Nothing paces these frames and no fault touches them: every one is due now, so the
        // body is ready with the head and goes out with it, in one write. Sent by a task, the
        // head went out alone first (the task had not run when the connection polled the
        // body): a second write, read and wake-up on both sides for every turn.
        channel_body(encoded(&p, &shared.counters))
    } else {
        let (tx, rx) = mpsc::channel(16);
        let shared = shared.clone();
        tokio::spawn(async move {
            send_frames(p, &tx, &shared.counters, shared.time_scale).await;
        });
        ChannelBody { rx }
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert("content-type", hv("application/vnd.amazon.eventstream"));
    h.insert("x-amzn-bedrock-agent-content-type", hv("application/json"));
    h.insert("x-amz-bedrock-agent-session-id", hv(&route.session_id));
    h.insert("x-amzn-requestid", request_id);
    if let Some(m) = memory_id {
        h.insert("x-amz-bedrock-agent-memory-id", hv(m));
    }
    r
}

/// Every frame of a clean, unpaced stream, encoded and counted as `send_frames` sends them.
fn encoded(p: &Prepared, stats: &Counters) -> Vec<Bytes> {
    p.items
        .iter()
        .map(|item| {
            if matches!(item.out, Out::Exception(_)) {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            let bytes = encode(&item.out);
            stats.frames.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            bytes
        })
        .collect()
}

async fn send_frames(
    p: Prepared,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    stats: &Counters,
    time_scale: f64,
) {
    let mut rng = fastrand::Rng::with_seed(p.rng_seed);
    let mut last_ms = 0u64;
    let n = p.items.len();
    for (i, item) in p.items.iter().enumerate() {
        if let Some((at, e)) = &p.faults.exception {
            if *at == i {
                let bytes = frame::exception(&e.exception_type(), &e.message);
                stats.errors.fetch_add(1, Ordering::Relaxed);
                let _ = send(tx, bytes, &mut rng, p.faults.split, stats).await;
                return;
            }
        }
        if p.faults.drop_after == Some(i) {
            let _ = tx
                .send(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fault: drop",
                )))
                .await;
            return;
        }
        if let Some((at, d)) = p.faults.stall {
            if at == i {
                tokio::time::sleep(d).await;
            }
        }
        if let Some(d) = p.faults.slow {
            tokio::time::sleep(d).await;
        }
        let wait = item.at_ms.saturating_sub(last_ms);
        last_ms = item.at_ms;
        if time_scale > 0.0 && wait > 0 {
            tokio::time::sleep(Duration::from_secs_f64(wait as f64 / 1000.0 * time_scale)).await;
        }
        let mut bytes = encode(&item.out);
        if matches!(item.out, Out::Exception(_)) {
            stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((at, how)) = p.faults.corrupt {
            if at == i {
                match how {
                    Corrupt::Flip => {
                        let mut v = bytes.to_vec();
                        let k = v.len().saturating_sub(5);
                        v[k] ^= 0x20;
                        bytes = Bytes::from(v);
                    }
                    Corrupt::Truncate => {
                        let cut = bytes.len() / 2;
                        let _ = send(tx, bytes.slice(..cut), &mut rng, p.faults.split, stats).await;
                        return;
                    }
                }
            }
        }
        if send(tx, bytes, &mut rng, p.faults.split, stats)
            .await
            .is_err()
        {
            return;
        }
    }
    if let Some((at, e)) = &p.faults.exception {
        if *at >= n {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            let _ = send(
                tx,
                frame::exception(&e.exception_type(), &e.message),
                &mut rng,
                p.faults.split,
                stats,
            )
            .await;
        }
    }
}

/// Send one frame; with the `split` fault, as two HTTP chunks written apart when a seeded coin
/// says so.
async fn send(
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    bytes: Bytes,
    rng: &mut fastrand::Rng,
    split: f64,
    stats: &Counters,
) -> Result<(), ()> {
    stats.frames.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    if bytes.len() > 16 && split > 0.0 && rng.f64() < split {
        let cut = rng.usize(1..bytes.len());
        tx.send(Ok(bytes.slice(..cut))).await.map_err(|_| ())?;
        tokio::task::yield_now().await;
        tx.send(Ok(bytes.slice(cut..))).await.map_err(|_| ())
    } else {
        tx.send(Ok(bytes)).await.map_err(|_| ())
    }
}
