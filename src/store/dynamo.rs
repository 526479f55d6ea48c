//! `DynamoStore`: the approvals store on one DynamoDB table (team mode: many consoles, one
//! queue). Same rules as `SqliteStore`: decisions are planned by `domain::decision::plan`, and
//! each decision is ONE `TransactWriteItems` and no read: the request's conditional update
//! (version, status, and the two-person rule as `NOT contains(apN, :reviewer)`) appending the
//! decisions, the audit entry and the audit `HEAD` (the chain's serialisation point,
//! `seq = :expected`). The state the write is conditioned on is what this handle last knew (from
//! `get`, a submit or a decision); when it is stale the write fails and answers with the items
//! as they are now (`ALL_OLD` on the failed conditions), and the decision is planned again.
//!
//! Single-table layout (`pk`, `sk` strings; see README "Team mode"):
//! - request   `REQ#<id>` / `R`       body (or `chunks`), status, version, approvals, `apN` sets,
//!   `decs` (the decisions, in order), `row` (queue summary) and, only while open,
//!   `qpk`=`OPEN` / `qsk`=`<expiresMs>#<raisedMs>#<id>`
//! - body part `REQ#<id>` / `B#0001`  bodies over the item limit, split (never trimmed)
//! - id index  `IDS` / `<id>`         prefix lookups (`resolve`) and the audit cross-check
//! - audit     `AUDIT` / `E#<seq>`    hash-chained entries; `AUDIT` / `HEAD` = last seq, hash, totals
//! - settled   `REQ#<id>` / `M`       the request's metrics fact, put by the transaction that
//!   makes it final, on the index as `SETTLED` / `<settledMs>#<id>` (see `metrics`)
//!
//! The GSI `queue` (`qpk`, `qsk`) is sparse: only open requests carry its keys, so `open_queue`
//! is one Query whose cost follows the pending requests, never the history.
//!
//! The ports are synchronous; SDK futures run on a private runtime and the calling thread waits
//! on a channel, so any thread (a plain one, `spawn_blocking`, even an async worker) may call.

mod metrics;
mod runner;

pub use runner::TRACE_TTL_DAYS;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, Select, TimeToLiveSpecification, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::run::{RunnerLink, resumes_after};
use super::{
    ApprovalStore, AuditEntry, AuditReport, DecisionOutcome, QueueRow, StoreCounts, StoreError,
    StoredRequest,
};
use crate::domain::approval::{ApprovalId, ApprovalRequest};
use crate::domain::canonical::{canonical_json, sha256_hex};
use crate::domain::decision::{self, Decision, DecisionAsk, Refusal, Verdict};
use crate::domain::policy::{Policy, RiskTier};
use crate::domain::resume::ResumePlan;
use crate::domain::status::Status;
use crate::store::chain::{GENESIS, decision_json, entry_hash};

/// The queue index's name.
pub const QUEUE_INDEX: &str = "queue";
/// The table's TTL attribute (epoch seconds), enabled by `init`.
pub const TTL_ATTRIBUTE: &str = "ttl";
/// Body bytes kept inline in the request item; longer bodies are split into parts of this size.
pub const BODY_PART: usize = 350_000;
/// Parts one request may have: a submit is one transaction and transactions carry at most 4 MB.
pub const MAX_BODY_PARTS: usize = 10;
/// Attempts for a throttled call before it fails as `Unavailable` ("throttled").
const THROTTLE_ATTEMPTS: u32 = 6;
/// Attempts for a transaction that lost a race on the audit head before giving up.
const RACE_ATTEMPTS: u32 = 200;
/// Requests a handle remembers for `decide`, and their body bytes (past either it forgets them
/// all and reads again).
const KNOWN_REQUESTS: usize = 4096;
const KNOWN_BYTES: usize = 64 << 20;
/// Failed writes that brought no news (a conflict) before a decide reads the state again.
const BLIND_RETRIES: u32 = 3;
/// Where the audit head's update sits in a decision's transaction (see `decision_items`).
const DECISION_HEAD_AT: usize = 2;

/// Where the table is and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct DynamoOptions {
    pub table: String,
    /// `http://127.0.0.1:PORT` for a local server; None for AWS.
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Static credentials (tests against a local server); None uses the standard chain.
    pub static_credentials: Option<(String, String)>,
    /// Per-attempt timeout of one call (default 5 s).
    pub attempt_timeout: Option<Duration>,
}

/// The approvals store on a DynamoDB table.
pub struct DynamoStore {
    client: Client,
    table: String,
    shown: String,
    rt: Option<tokio::runtime::Runtime>,
    /// The committed state of turns this handle is writing (see `runner`).
    turns: runner::Turns,
    /// STS on the same credentials and endpoint, for `caller_identity`.
    sts: aws_sdk_sts::Client,
    /// What this handle remembers between calls so that it reads less.
    memo: Box<Memo>,
}

/// The requests a handle knows, bounded in count and body bytes.
#[derive(Default)]
struct KnownMap {
    map: HashMap<String, Known>,
    bytes: usize,
}

/// What a handle remembers between calls, so that it reads less.
#[derive(Default)]
struct Memo {
    /// What this handle last knew of requests it read, submitted or decided (see `decide`).
    known: Mutex<KnownMap>,
    /// The audit head as this handle last knew it (a hint: every write is conditioned on it).
    head_known: Mutex<Option<Head>>,
    /// Calls sent to DynamoDB by this handle, by operation (each attempt counts).
    calls: Mutex<BTreeMap<&'static str, u64>>,
    /// How far this handle has read each running turn's steps (see `trace_index`).
    step_cursors: runner::StepCursors,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("at", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Drop for DynamoStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks; shutting it down in the background never panics, even when
        // the last handle goes away inside another runtime's async context.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// What `init` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    Created,
    /// The table was there with the expected keys and index.
    Exists,
}

type Item = HashMap<String, AttributeValue>;

/// A failed call, sorted by what to do about it.
enum Fail {
    Throttled(String),
    /// A transaction whose conditions failed (or that conflicted with another): one reason per
    /// item, in order, with the item as it is now where the write asked for it (`ALL_OLD`).
    Canceled(Vec<Reason>),
    Other(String),
}

/// Why one item of a cancelled transaction (or a single conditional write) did not go through.
struct Reason {
    /// `ConditionalCheckFailed`, `TransactionConflict`, `None` (this item was fine), ...
    code: String,
    /// The item as it is now, when the write asked for it on a failed condition.
    item: Option<Item>,
}

impl Reason {
    fn code(code: &str) -> Self {
        Self {
            code: code.to_owned(),
            item: None,
        }
    }

    fn failed(&self) -> bool {
        self.code == "ConditionalCheckFailed"
    }
}

fn codes(reasons: &[Reason]) -> Vec<String> {
    reasons.iter().map(|r| r.code.clone()).collect()
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

#[allow(clippy::needless_pass_by_value)]
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn req_pk(id: &str) -> String {
    format!("REQ#{id}")
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn corrupt(what: &str, why: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {why}"))
}

fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn truncate_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

fn queue_sk(expires_ms: i64, raised_ms: i64, id: &str) -> String {
    format!("{expires_ms:013}#{raised_ms:013}#{id}")
}

/// Splits `body` into parts of at most `BODY_PART` bytes on char boundaries.
fn split_body(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let mut cut = rest.len().min(BODY_PART);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        parts.push(head);
        rest = tail;
    }
    parts
}

/// A request as read back: the item's bookkeeping beside the body.
struct Loaded {
    request: ApprovalRequest,
    body_len: usize,
    body_hash: String,
    stored_body_hash: String,
    status: Status,
    version: i64,
    decisions: Vec<(i64, Decision)>,
    /// Set when the runner raised the request (it is resumed once final).
    link: Option<RunnerLink>,
}

/// The audit head: last seq and hash.
#[derive(Debug, Clone)]
struct Head {
    seq: i64,
    hash: String,
}

impl Head {
    fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

fn head_of(item: &Item) -> Head {
    Head {
        seq: get_n(item, "seq").unwrap_or(0),
        hash: get_s(item, "hash").unwrap_or(GENESIS).to_owned(),
    }
}

/// What a handle knows of a request it read, submitted or decided: the body (immutable) and the
/// state a decision's write is conditioned on. The write's answer corrects it when stale.
#[derive(Debug, Clone)]
struct Known {
    request: Arc<ApprovalRequest>,
    status: Status,
    version: i64,
    decisions: Vec<(i64, Decision)>,
    link: Option<RunnerLink>,
    /// The body's length, for the memory bound.
    bytes: usize,
}

fn known_from(loaded: &Loaded) -> Known {
    Known {
        bytes: loaded.body_len,
        request: Arc::new(loaded.request.clone()),
        status: loaded.status,
        version: loaded.version,
        decisions: loaded.decisions.clone(),
        link: loaded.link.clone(),
    }
}

/// A request item's state (everything but the body).
struct ItemState {
    status: Status,
    version: i64,
    decisions: Vec<(i64, Decision)>,
    link: Option<RunnerLink>,
}

/// Reads the state off a request item: status, version, the decisions (kept on the item, in the
/// `decs` list, so a failed write's answer carries them) and the runner link.
fn item_state(item: &Item, what: &str) -> Result<ItemState, StoreError> {
    let status_s = get_s(item, "status").unwrap_or_default();
    let status = Status::parse(status_s)
        .ok_or_else(|| corrupt(what, &format!("unknown status {status_s:?}")))?;
    let mut decisions = Vec::new();
    if let Some(list) = item.get("decs") {
        let list = list
            .as_l()
            .map_err(|_| corrupt(what, "its decisions are not a list"))?;
        for v in list {
            let m = v
                .as_m()
                .map_err(|_| corrupt(what, "a decision is not a map"))?;
            let seq = get_n(m, "seq").ok_or_else(|| corrupt(what, "a decision has no seq"))?;
            let d: Decision = serde_json::from_str(get_s(m, "d").unwrap_or_default())
                .map_err(|e| corrupt(what, &format!("decision {seq}: {e}")))?;
            decisions.push((seq, d));
        }
    }
    decisions.sort_by_key(|(seq, _)| *seq);
    Ok(ItemState {
        status,
        version: get_n(item, "version").unwrap_or(0),
        decisions,
        link: get_s(item, "link")
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt(what, &format!("its runner link does not parse: {e}")))?,
    })
}

/// One audit entry to append in a transaction.
struct NewEntry<'a> {
    at_ms: i64,
    actor: &'a str,
    kind: &'a str,
    request: &'a str,
    payload: &'a Value,
}

impl DynamoStore {
    /// Connects to the table and checks it exists (run `agentdeck init` first).
    pub fn connect(opts: &DynamoOptions) -> Result<Self, StoreError> {
        let store = Self::client_only(opts)?;
        let table = store.table.clone();
        let client = store.client.clone();
        let described = store.call("checking the table", || {
            client.describe_table().table_name(&table).send()
        });
        match described {
            Ok(_) => Ok(store),
            Err(StoreError::Unavailable(m)) if m.contains("ResourceNotFoundException") => {
                Err(StoreError::Unavailable(format!(
                    "{}: the table does not exist: run `agentdeck init --store dynamodb:{}` first",
                    store.shown, store.table
                )))
            }
            Err(e) => Err(e),
        }
    }

    fn client_only(opts: &DynamoOptions) -> Result<Self, StoreError> {
        if opts.table.is_empty() {
            return Err(StoreError::Unavailable(
                "dynamodb: no table name given (--store dynamodb:TABLE)".to_owned(),
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("agentdeck-dynamo")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Unavailable(format!("dynamodb: cannot start a runtime: {e}"))
            })?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = &opts.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &opts.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        } else if opts.endpoint_url.is_some() {
            // A local server does not care, but the SDK wants some region to sign for.
            loader = loader.region(
                aws_config::meta::region::RegionProviderChain::default_provider()
                    .or_else("us-east-1"),
            );
        }
        if let Some(profile) = &opts.profile {
            loader = loader.profile_name(profile);
        }
        if let Some((id, secret)) = &opts.static_credentials {
            loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                id,
                secret,
                None,
                None,
                "agentdeck-static",
            ));
        }
        let timeout = opts.attempt_timeout.unwrap_or(Duration::from_secs(5));
        loader = loader
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(timeout)
                    .build(),
            )
            // Retries are ours (bounded, jittered, and reported as throttling when they run out).
            .retry_config(aws_config::retry::RetryConfig::disabled());
        let sdk = rt.block_on(loader.load());
        let shown = match &opts.endpoint_url {
            Some(url) => format!("dynamodb:{} at {url}", opts.table),
            None => format!(
                "dynamodb:{} ({})",
                opts.table,
                sdk.region().map_or("no region", |r| r.as_ref())
            ),
        };
        Ok(Self {
            client: Client::new(&sdk),
            table: opts.table.clone(),
            shown,
            rt: Some(rt),
            turns: runner::Turns::default(),
            sts: aws_sdk_sts::Client::new(&sdk),
            memo: Box::default(),
        })
    }

    /// The reviewer identity of the credentials in use, from STS `GetCallerIdentity`: the
    /// role-session name of an assumed role (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`),
    /// the user name of an IAM user (`arn:aws:iam::ACCOUNT:user/NAME`), else the whole ARN.
    pub fn caller_identity(&self) -> Result<String, StoreError> {
        let sts = self.sts.clone();
        let out = self
            .block(async move { sts.get_caller_identity().send().await })?
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "{}: asking STS who the caller is: {}",
                    self.shown,
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                ))
            })?;
        let arn = out.arn().unwrap_or_default();
        Ok(identity_from_arn(arn))
    }

    /// The calls this handle has sent to DynamoDB, by operation (`query`, `get_item`,
    /// `transact_write_items`, ...; every attempt counts, throttled ones included): how the
    /// tests measure what a store call costs in round trips.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.memo
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect()
    }

    /// Counts one call whose output type is `output` (`aws_sdk_dynamodb::operation::NAME::...`).
    fn count_call(&self, output: &'static str) {
        let op = output
            .split("::operation::")
            .nth(1)
            .and_then(|rest| rest.split("::").next())
            .unwrap_or(output);
        *self
            .memo
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(op)
            .or_insert(0) += 1;
    }

    /// Where this store is, for messages: the table and the endpoint or region.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// How many DynamoDB calls this handle has made, all operations (retries included).
    pub fn calls_total(&self) -> u64 {
        self.calls().values().sum()
    }

    /// Creates the table, its queue index and TTL; idempotent (an existing table's keys and index
    /// are checked, and a mismatch is an error naming what differs).
    pub fn init(opts: &DynamoOptions) -> Result<InitOutcome, StoreError> {
        let store = Self::client_only(opts)?;
        let (client, table) = (store.client.clone(), store.table.clone());
        let described = store.call("describing the table", || {
            client.describe_table().table_name(&table).send()
        });
        match described {
            Ok(out) => {
                let t = out.table();
                let keys: Vec<String> = t
                    .map(|t| {
                        t.key_schema()
                            .iter()
                            .map(|k| format!("{}:{}", k.attribute_name(), k.key_type().as_str()))
                            .collect()
                    })
                    .unwrap_or_default();
                if keys != ["pk:HASH", "sk:RANGE"] {
                    return Err(StoreError::Unavailable(format!(
                        "{}: the table exists with keys {keys:?}, not pk (HASH) and sk (RANGE): \
                         choose another table name",
                        store.shown
                    )));
                }
                let index_ok = t.is_some_and(|t| {
                    t.global_secondary_indexes().iter().any(|g| {
                        g.index_name() == Some(QUEUE_INDEX)
                            && g.key_schema()
                                .iter()
                                .map(KeySchemaElement::attribute_name)
                                .eq(["qpk", "qsk"])
                    })
                });
                if !index_ok {
                    return Err(StoreError::Unavailable(format!(
                        "{}: the table exists but has no index {QUEUE_INDEX:?} on (qpk, qsk)",
                        store.shown
                    )));
                }
                return Ok(InitOutcome::Exists);
            }
            Err(StoreError::Unavailable(m)) if m.contains("ResourceNotFoundException") => {}
            Err(e) => return Err(e),
        }
        let build = |e: aws_sdk_dynamodb::error::BuildError| {
            StoreError::Unavailable(format!("dynamodb: building the table definition: {e}"))
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let ks = |name: &str, kt: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kt)
                .build()
        };
        let defs = vec![
            attr("pk").map_err(build)?,
            attr("sk").map_err(build)?,
            attr("qpk").map_err(build)?,
            attr("qsk").map_err(build)?,
        ];
        let keys = vec![
            ks("pk", KeyType::Hash).map_err(build)?,
            ks("sk", KeyType::Range).map_err(build)?,
        ];
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(QUEUE_INDEX)
            .key_schema(ks("qpk", KeyType::Hash).map_err(build)?)
            .key_schema(ks("qsk", KeyType::Range).map_err(build)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .non_key_attributes("row")
                    .non_key_attributes("status")
                    .non_key_attributes("approvals")
                    .build(),
            )
            .build()
            .map_err(build)?;
        store.call("creating the table", || {
            client
                .create_table()
                .table_name(&table)
                .set_attribute_definitions(Some(defs.clone()))
                .set_key_schema(Some(keys.clone()))
                .global_secondary_indexes(gsi.clone())
                .billing_mode(BillingMode::PayPerRequest)
                .send()
        })?;
        for _ in 0..120 {
            let out = store.call("waiting for the table", || {
                client.describe_table().table_name(&table).send()
            })?;
            let active = out
                .table()
                .and_then(|t| t.table_status())
                .map(aws_sdk_dynamodb::types::TableStatus::as_str)
                == Some("ACTIVE");
            if active {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(build)?;
        store.call("enabling TTL", || {
            client
                .update_time_to_live()
                .table_name(&table)
                .time_to_live_specification(ttl.clone())
                .send()
        })?;
        Ok(InitOutcome::Created)
    }

    /// Runs `fut` on the private runtime and waits for it on this thread.
    fn block<F>(&self, fut: F) -> Result<F::Output, StoreError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let Some(rt) = &self.rt else {
            return Err(StoreError::Unavailable(format!(
                "{}: the store is shut down",
                self.shown
            )));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| StoreError::Unavailable(format!("{}: the call was abandoned", self.shown)))
    }

    /// One SDK call with bounded, jittered backoff on throttling; every other failure (and
    /// throttling that outlasts the retries) becomes `Unavailable` naming the table and endpoint.
    fn call<T, E, R, F>(&self, doing: &str, mk: impl Fn() -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, SdkError<E, R>>> + Send + 'static,
        T: Send + 'static,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + 'static,
    {
        match self.call_raw(doing, mk)? {
            Ok(v) => Ok(v),
            Err(Fail::Canceled(reasons)) => Err(StoreError::Unavailable(format!(
                "{}: {doing}: cancelled ({})",
                self.shown,
                codes(&reasons).join(", ")
            ))),
            Err(Fail::Throttled(m) | Fail::Other(m)) => Err(StoreError::Unavailable(m)),
        }
    }

    fn call_raw<T, E, R, F>(
        &self,
        doing: &str,
        mk: impl Fn() -> F,
    ) -> Result<Result<T, Fail>, StoreError>
    where
        F: Future<Output = Result<T, SdkError<E, R>>> + Send + 'static,
        T: Send + 'static,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + 'static,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.count_call(std::any::type_name::<T>());
            let fail = match self.block(mk())? {
                Ok(v) => return Ok(Ok(v)),
                Err(e) => self.classify(doing, &e),
            };
            match fail {
                Fail::Throttled(m) if attempt < THROTTLE_ATTEMPTS => {
                    tracing::warn!(store = %self.shown, doing, attempt, "throttled: {m}");
                    // Full jitter over an exponential ceiling: 50 ms, 100 ms, ... capped at 1.6 s.
                    let ceiling = 50_u64 << attempt.min(5);
                    std::thread::sleep(Duration::from_millis(fastrand::u64(ceiling / 2..=ceiling)));
                }
                Fail::Throttled(m) => {
                    return Ok(Err(Fail::Throttled(format!(
                        "{}: {doing}: throttled by DynamoDB and still throttled after \
                         {THROTTLE_ATTEMPTS} attempts with backoff ({m}); nothing was written \
                         by the failed call, try again",
                        self.shown
                    ))));
                }
                other => return Ok(Err(other)),
            }
        }
    }

    fn classify<E, R>(&self, doing: &str, e: &SdkError<E, R>) -> Fail
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        match e {
            SdkError::ServiceError(se) => {
                let err = se.err();
                let code = err.code().unwrap_or("unknown");
                let message = err.message().unwrap_or("");
                if matches!(
                    code,
                    "ProvisionedThroughputExceededException"
                        | "ThrottlingException"
                        | "RequestLimitExceeded"
                ) {
                    return Fail::Throttled(format!("{code}: {message}"));
                }
                if code == "ConditionalCheckFailedException" {
                    return Fail::Canceled(vec![Reason::code("ConditionalCheckFailed")]);
                }
                if code == "TransactionConflictException" {
                    return Fail::Canceled(vec![Reason::code("TransactionConflict")]);
                }
                if let Some(tx) =
                    (err as &dyn std::error::Error).downcast_ref::<TransactWriteItemsError>()
                    && let TransactWriteItemsError::TransactionCanceledException(c) = tx
                {
                    let reasons: Vec<Reason> = c
                        .cancellation_reasons()
                        .iter()
                        .map(|r| Reason {
                            code: r.code().unwrap_or("None").to_owned(),
                            item: r.item().filter(|i| !i.is_empty()).cloned(),
                        })
                        .collect();
                    if reasons.iter().any(|r| {
                        r.code == "ThrottlingError" || r.code == "ProvisionedThroughputExceeded"
                    }) {
                        return Fail::Throttled(format!("{code}: {message}"));
                    }
                    return Fail::Canceled(reasons);
                }
                if code == "TransactionCanceledException" {
                    return Fail::Canceled(vec![Reason::code(message)]);
                }
                Fail::Other(format!("{}: {doing}: {code}: {message}", self.shown))
            }
            SdkError::TimeoutError(_) => Fail::Other(format!(
                "{}: {doing}: the call timed out: the store is slow or unreachable; nothing was \
                 confirmed written",
                self.shown
            )),
            SdkError::DispatchFailure(d) => Fail::Other(format!(
                "{}: {doing}: cannot reach the endpoint ({}): is the store running?",
                self.shown,
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
                    .to_string()
                    .replace('\n', " ")
                    .chars()
                    .take(300)
                    .collect::<String>()
                    + if d.is_timeout() { " (timeout)" } else { "" }
            )),
            _ => Fail::Other(format!(
                "{}: {doing}: {}",
                self.shown,
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )),
        }
    }

    /// Every item of a partition (optionally with an sk prefix), strongly consistent, all pages.
    fn query_partition(
        &self,
        doing: &str,
        pk: &str,
        sk_prefix: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let (client, table) = (self.client.clone(), self.table.clone());
            let (pk, prefix, from) = (pk.to_owned(), sk_prefix.map(str::to_owned), start.clone());
            let page = self.call(doing, move || {
                let mut q = client
                    .query()
                    .table_name(&table)
                    .consistent_read(true)
                    .expression_attribute_values(":pk", s(&pk))
                    .set_exclusive_start_key(from.clone());
                q = match &prefix {
                    Some(p) => q
                        .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                        .expression_attribute_values(":p", s(p)),
                    None => q.key_condition_expression("pk = :pk"),
                };
                q.send()
            })?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Reads a request's partition (the request item and any body parts): ONE Query. What it
    /// finds is remembered for a later `decide`.
    fn load(&self, id: &ApprovalId) -> Result<Option<Loaded>, StoreError> {
        let items =
            self.query_partition(&format!("reading request {id}"), &req_pk(id.as_str()), None)?;
        let mut request_item = None;
        let mut parts: BTreeMap<String, String> = BTreeMap::new();
        let what = format!("request {id}");
        for item in items {
            let sk = get_s(&item, "sk").unwrap_or_default().to_owned();
            if sk == "R" {
                request_item = Some(item);
            } else if let Some(rest) = sk.strip_prefix("B#") {
                let data = get_s(&item, "data")
                    .ok_or_else(|| corrupt(&what, "a body part has no data"))?;
                parts.insert(rest.to_owned(), data.to_owned());
            }
        }
        let Some(item) = request_item else {
            self.forget(id.as_str());
            return Ok(None);
        };
        #[allow(clippy::single_match_else)]
        let body = match get_s(&item, "body") {
            Some(b) => b.to_owned(),
            None => {
                let want = get_n(&item, "chunks").unwrap_or(0);
                if i64::try_from(parts.len()).unwrap_or(-1) != want {
                    return Err(corrupt(
                        &what,
                        &format!("its body has {want} parts but {} are stored", parts.len()),
                    ));
                }
                parts.into_values().collect()
            }
        };
        let request: ApprovalRequest = serde_json::from_str(&body)
            .map_err(|e| corrupt(&what, &format!("its body does not parse: {e}")))?;
        let state = item_state(&item, &what)?;
        let loaded = Loaded {
            body_len: body.len(),
            body_hash: sha256_hex(body.as_bytes()),
            stored_body_hash: get_s(&item, "body_hash").unwrap_or_default().to_owned(),
            request,
            status: state.status,
            version: state.version,
            decisions: state.decisions,
            link: state.link,
        };
        self.remember(known_from(&loaded));
        Ok(Some(loaded))
    }

    /// What this handle last knew of request `id`, if anything.
    fn known_of(&self, id: &str) -> Option<Known> {
        self.memo
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .get(id)
            .cloned()
    }

    fn remember(&self, known: Known) {
        let mut memo = self
            .memo
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let id = known.request.id.as_str().to_owned();
        if let Some(old) = memo.map.remove(&id) {
            memo.bytes -= old.bytes;
        }
        if memo.map.len() >= KNOWN_REQUESTS || memo.bytes + known.bytes > KNOWN_BYTES {
            // Bounded: forgetting only costs a later decide on a forgotten request one read.
            memo.map.clear();
            memo.bytes = 0;
        }
        memo.bytes += known.bytes;
        memo.map.insert(id, known);
    }

    fn forget(&self, id: &str) {
        let mut memo = self
            .memo
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = memo.map.remove(id) {
            memo.bytes -= old.bytes;
        }
    }

    /// Reads the audit head (strongly consistent): ONE GetItem.
    fn head(&self) -> Result<Head, StoreError> {
        let (client, table) = (self.client.clone(), self.table.clone());
        let out = self.call("reading the audit head", move || {
            client
                .get_item()
                .table_name(&table)
                .set_key(Some(key("AUDIT", "HEAD")))
                .consistent_read(true)
                .send()
        })?;
        let head = out.item().map_or_else(Head::genesis, head_of);
        self.learn_head(&head, true);
        Ok(head)
    }

    /// The audit head as this handle last knew it, read once if it never knew it. Writes are
    /// conditioned on it, so a stale head costs a failed write that returns the current one.
    fn head_hint(&self) -> Result<Head, StoreError> {
        let known = self
            .memo
            .head_known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match known {
            Some(h) => Ok(h),
            None => self.head(),
        }
    }

    /// Keeps `head` as the last known; `current` when it is the head as it is now (a consistent
    /// read, a write's answer), else only when it is newer than what is known.
    fn learn_head(&self, head: &Head, current: bool) {
        let mut known = self
            .memo
            .head_known
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current || known.as_ref().is_none_or(|k| head.seq > k.seq) {
            *known = Some(head.clone());
        }
    }

    /// The audit entry put and the head update for appending `entry` after `head`; `counters`
    /// are `(attribute, delta)` totals kept on the head for `counts`.
    fn audit_items(
        &self,
        head: &Head,
        entry: &NewEntry<'_>,
        counters: &[(String, i64)],
    ) -> Result<(Vec<TransactWriteItem>, Head), StoreError> {
        let seq = head.seq + 1;
        let payload = canonical_json(entry.payload);
        let hash = entry_hash(
            &head.hash,
            seq,
            entry.at_ms,
            entry.actor,
            entry.kind,
            entry.request,
            &payload,
        );
        let mut item = key("AUDIT", format!("E#{seq:012}"));
        item.insert("seq".into(), n(seq));
        item.insert("at_ms".into(), n(entry.at_ms));
        item.insert("actor".into(), s(entry.actor));
        item.insert("kind".into(), s(entry.kind));
        item.insert("request".into(), s(entry.request));
        item.insert("payload".into(), s(payload));
        item.insert("prev_hash".into(), s(&head.hash));
        item.insert("hash".into(), s(&hash));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| self.build_err(&e))?;
        let mut expr = "SET seq = :seq, #h = :hash".to_owned();
        let mut names = HashMap::from([("#h".to_owned(), "hash".to_owned())]);
        let mut values: Item =
            HashMap::from([(":seq".to_owned(), n(seq)), (":hash".to_owned(), s(&hash))]);
        let mut adds = Vec::new();
        for (i, (attr, delta)) in counters.iter().enumerate() {
            names.insert(format!("#c{i}"), attr.clone());
            values.insert(format!(":c{i}"), n(delta));
            adds.push(format!("#c{i} :c{i}"));
        }
        if !adds.is_empty() {
            expr.push_str(" ADD ");
            expr.push_str(&adds.join(", "));
        }
        let condition = if head.seq == 0 {
            "attribute_not_exists(seq)".to_owned()
        } else {
            values.insert(":expected".into(), n(head.seq));
            "seq = :expected".to_owned()
        };
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key("AUDIT", "HEAD")))
            .update_expression(expr)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            // A stale head fails the write, which answers with the head as it is now.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| self.build_err(&e))?;
        Ok((
            vec![
                TransactWriteItem::builder().put(put).build(),
                TransactWriteItem::builder().update(update).build(),
            ],
            Head { seq, hash },
        ))
    }

    fn build_err(&self, e: &aws_sdk_dynamodb::error::BuildError) -> StoreError {
        StoreError::Unavailable(format!("{}: building a request: {e}", self.shown))
    }

    /// Sends one transaction; `Ok(Err(reasons))` when its conditions failed.
    fn transact(
        &self,
        doing: &str,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Vec<String>>, StoreError> {
        Ok(self.transact_full(doing, items)?.map_err(|r| codes(&r)))
    }

    /// Sends one transaction; `Ok(Err(reasons))` when its conditions failed, each reason with
    /// the item as it is now where the write asked for it (`ReturnValuesOnConditionCheckFailure`).
    fn transact_full(
        &self,
        doing: &str,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Vec<Reason>>, StoreError> {
        let client = self.client.clone();
        match self.call_raw(doing, move || {
            client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
        })? {
            Ok(_) => Ok(Ok(())),
            Err(Fail::Canceled(reasons)) => Ok(Err(reasons)),
            Err(Fail::Throttled(m) | Fail::Other(m)) => Err(StoreError::Unavailable(m)),
        }
    }

    fn pause_after_race(attempt: u32) {
        let ceiling = 2 + u64::from(attempt.min(6)) * 4;
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..=ceiling)));
    }

    fn submit_one(
        &self,
        request: &ApprovalRequest,
        actor: &str,
        link: Option<&RunnerLink>,
    ) -> Result<(), StoreError> {
        let id = request.id.as_str();
        let value = serde_json::to_value(request)
            .map_err(|e| StoreError::Corrupt(format!("request {id}: cannot serialise it: {e}")))?;
        let body = canonical_json(&value);
        let body_hash = sha256_hex(body.as_bytes());
        let parts = split_body(&body);
        if parts.len() > MAX_BODY_PARTS {
            return Err(StoreError::Unavailable(format!(
                "{}: request {id} is {} bytes; the DynamoDB store keeps at most {} bytes per \
                 request (a submit is one transaction, and transactions carry at most 4 MB): \
                 nothing was stored",
                self.shown,
                body.len(),
                BODY_PART * MAX_BODY_PARTS
            )));
        }
        let row = QueueRow::of(request, Status::Pending, 0);
        let row_json = serde_json::to_string(&row)
            .map_err(|e| StoreError::Corrupt(format!("request {id}: queue row: {e}")))?;
        let (raised_ms, expires_ms) = (to_ms(request.raised_at), to_ms(request.expires_at));
        let at_ms = to_ms(Utc::now());
        let payload = json!({
            "request": id,
            "bodyHash": body_hash,
            "status": Status::Pending.as_str(),
        });
        let link_json = link
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("request {id}: runner link: {e}")))?;
        let mut head = self.head_hint()?;
        let mut blind = 0;
        for attempt in 0..RACE_ATTEMPTS {
            let mut item = key(req_pk(id), "R");
            item.insert("id".into(), s(id));
            if parts.len() == 1 {
                item.insert("body".into(), s(&body));
            } else {
                item.insert("chunks".into(), n(parts.len()));
            }
            item.insert("body_hash".into(), s(&body_hash));
            item.insert("status".into(), s(Status::Pending.as_str()));
            item.insert("version".into(), n(0));
            item.insert("approvals".into(), n(0));
            item.insert("row".into(), s(&row_json));
            item.insert("raised_ms".into(), n(raised_ms));
            item.insert("expires_ms".into(), n(expires_ms));
            item.insert("qpk".into(), s("OPEN"));
            item.insert("qsk".into(), s(queue_sk(expires_ms, raised_ms, id)));
            if let Some(l) = &link_json {
                item.insert("link".into(), s(l));
            }
            let mut items = vec![
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(item))
                            .condition_expression("attribute_not_exists(pk)")
                            .build()
                            .map_err(|e| self.build_err(&e))?,
                    )
                    .build(),
            ];
            let mut ids = key("IDS", id);
            ids.insert("at_ms".into(), n(at_ms));
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(ids))
                            .build()
                            .map_err(|e| self.build_err(&e))?,
                    )
                    .build(),
            );
            if parts.len() > 1 {
                for (i, part) in parts.iter().enumerate() {
                    let mut p = key(req_pk(id), format!("B#{:04}", i + 1));
                    p.insert("data".into(), s(*part));
                    items.push(
                        TransactWriteItem::builder()
                            .put(
                                Put::builder()
                                    .table_name(&self.table)
                                    .set_item(Some(p))
                                    .build()
                                    .map_err(|e| self.build_err(&e))?,
                            )
                            .build(),
                    );
                }
            }
            let (audit, after) = self.audit_items(
                &head,
                &NewEntry {
                    at_ms,
                    actor,
                    kind: "submitted",
                    request: id,
                    payload: &payload,
                },
                &[("n_req".into(), 1), ("st_pending".into(), 1)],
            )?;
            let head_at = items.len() + 1;
            items.extend(audit);
            if let Some(l) = link {
                // The invocation that returned control names its request (the metrics read it).
                items.push(self.put_item_tx(metrics::raised_link(&l.invocation, id), false)?);
            }
            match self.transact_full(&format!("submitting request {id}"), items)? {
                Ok(()) => {
                    self.learn_head(&after, true);
                    self.remember(Known {
                        bytes: body.len(),
                        request: Arc::new(request.clone()),
                        status: Status::Pending,
                        version: 0,
                        decisions: Vec::new(),
                        link: link.cloned(),
                    });
                    return Ok(());
                }
                Err(reasons) => {
                    if reasons.first().is_some_and(Reason::failed) {
                        return Err(StoreError::Duplicate(request.id.clone()));
                    }
                    if let Some(now) = reasons.get(head_at).and_then(|r| r.item.as_ref()) {
                        // The head moved: the failed write said where it is now.
                        head = head_of(now);
                        self.learn_head(&head, true);
                    } else {
                        // A conflict naming no item: wait, and after a few read the head again.
                        blind += 1;
                        if blind % BLIND_RETRIES == 0 {
                            head = self.head()?;
                        }
                        Self::pause_after_race(attempt);
                    }
                }
            }
        }
        Err(self.contention(&format!("submitting request {id}")))
    }

    fn contention(&self, doing: &str) -> StoreError {
        StoreError::Unavailable(format!(
            "{}: {doing}: gave up after {RACE_ATTEMPTS} attempts lost to concurrent writers on \
             the audit log; nothing was written, try again",
            self.shown
        ))
    }

    fn exists(&self, id: &str) -> Result<bool, StoreError> {
        let (client, table, id) = (self.client.clone(), self.table.clone(), id.to_owned());
        let out = self.call("looking up a request", move || {
            client
                .get_item()
                .table_name(&table)
                .set_key(Some(key(req_pk(&id), "R")))
                .consistent_read(true)
                .projection_expression("pk")
                .send()
        })?;
        Ok(out.item().is_some())
    }

    /// The items of one decision's transaction, in order: the request's conditional update
    /// (at 0), the audit entry and the audit head (at `DECISION_HEAD_AT`), the request's
    /// settled metrics fact when the decision makes it final, and the resume's outbox item when
    /// it makes a runner-raised request final.
    fn decision_items(
        &self,
        known: &Known,
        head: &Head,
        plan: &decision::Plan,
        ask: &DecisionAsk,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<(Vec<TransactWriteItem>, Head), StoreError> {
        let id = known.request.id.as_str();
        let next_seq = known.decisions.iter().map(|(s, _)| *s).max().unwrap_or(0) + 1;
        let approvals = distinct_approvers(
            known
                .decisions
                .iter()
                .map(|(_, d)| d)
                .chain(&plan.decisions),
        );
        let mut rows = Vec::new();
        let mut appended = Vec::new();
        for (offset, d) in plan.decisions.iter().enumerate() {
            let seq = next_seq + offset as i64;
            appended.push(AttributeValue::M(HashMap::from([
                ("seq".to_owned(), n(seq)),
                (
                    "d".to_owned(),
                    s(serde_json::to_string(d).map_err(|e| corrupt(id, &e.to_string()))?),
                ),
            ])));
            rows.push(decision_json(seq, d));
        }
        let mut values: Item = HashMap::from([
            (":after".to_owned(), s(plan.status_after.as_str())),
            (":v".to_owned(), n(known.version)),
            (":v1".to_owned(), n(known.version + 1)),
            (":apps".to_owned(), n(approvals)),
            (":rev".to_owned(), s(&ask.reviewer)),
            (":new".to_owned(), AttributeValue::L(appended)),
            (":nil".to_owned(), AttributeValue::L(Vec::new())),
            (":pending".to_owned(), s(Status::Pending.as_str())),
            (":partial".to_owned(), s(Status::PartiallyDecided.as_str())),
        ]);
        let mut names = HashMap::from([("#st".to_owned(), "status".to_owned())]);
        // Exactly the state the plan was made on: its version (every decision and expiry moves
        // it) and an open status.
        let mut condition = "version = :v AND #st IN (:pending, :partial)".to_owned();
        let mut adds = Vec::new();
        for d in plan
            .decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Confirm)
        {
            let attr = format!("#ap{}", d.input_index);
            names.insert(attr.clone(), format!("ap{}", d.input_index));
            // The two-person rule inside the write: this reviewer is not already an approver.
            condition = format!("{condition} AND NOT contains({attr}, :rev)");
            adds.push(format!("{attr} :revset"));
        }
        if !adds.is_empty() {
            values.insert(
                ":revset".into(),
                AttributeValue::Ss(vec![ask.reviewer.clone()]),
            );
        }
        let mut expr = "SET #st = :after, version = :v1, approvals = :apps, \
                        decs = list_append(if_not_exists(decs, :nil), :new)"
            .to_owned();
        if plan.status_after.is_final() {
            expr.push_str(" REMOVE qpk, qsk");
        }
        if !adds.is_empty() {
            expr.push_str(" ADD ");
            expr.push_str(&adds.join(", "));
        }
        let mut items = vec![
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(req_pk(id), "R")))
                        .update_expression(expr)
                        .condition_expression(condition)
                        .set_expression_attribute_names(Some(names))
                        .set_expression_attribute_values(Some(values))
                        // A stale state fails the write, which answers with the request as it is
                        // now: the next plan (or the refusal naming who decided) comes from it.
                        .return_values_on_condition_check_failure(
                            ReturnValuesOnConditionCheckFailure::AllOld,
                        )
                        .build()
                        .map_err(|e| self.build_err(&e))?,
                )
                .build(),
        ];
        let payload = json!({
            "request": id,
            "decisions": rows,
            "status": plan.status_after.as_str(),
            "approvals": approvals,
        });
        let confirms = plan
            .decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Confirm)
            .count() as i64;
        let total = plan.decisions.len() as i64;
        let mut counters = vec![
            ("n_dec".to_owned(), total),
            ("n_conf".to_owned(), confirms),
            ("n_deny".to_owned(), total - confirms),
        ];
        if plan.status_after != known.status {
            counters.push((status_counter(known.status), -1));
            counters.push((status_counter(plan.status_after), 1));
        }
        let (audit, head_after) = self.audit_items(
            head,
            &NewEntry {
                at_ms: to_ms(now),
                actor: &ask.reviewer,
                kind: "decided",
                request: id,
                payload: &payload,
            },
            &counters,
        )?;
        items.extend(audit);
        if plan.status_after.is_final() {
            // The request's metrics fact, settled by the same write (see `metrics`).
            let all = known
                .decisions
                .iter()
                .map(|(_, d)| d)
                .chain(&plan.decisions);
            let item = metrics::settled_item(&known.request, plan.status_after, all, to_ms(now))?;
            items.push(self.put_item_tx(item, false)?);
        }
        if let Some(link) = &known.link
            && resumes_after(plan.status_after)
        {
            let all: Vec<Decision> = known
                .decisions
                .iter()
                .map(|(_, d)| d.clone())
                .chain(plan.decisions.iter().cloned())
                .collect();
            let Some(resume) = ResumePlan::from_decisions(&known.request, &all, policy) else {
                return Err(StoreError::Corrupt(format!(
                    "request {id} is {} but not every input is decided",
                    plan.status_after
                )));
            };
            // The resume is queued by the decision's own transaction, at most once.
            let item = runner::outbox_item(&known.request, link, &resume, to_ms(now))?;
            items.push(self.put_item_tx(item, true)?);
        }
        Ok((items, head_after))
    }

    /// The open requests' index entries with `qsk` in `[from, to)`.
    #[allow(clippy::needless_pass_by_value)]
    fn query_queue(
        &self,
        from: Option<String>,
        to: Option<String>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let (client, table) = (self.client.clone(), self.table.clone());
            let (from, to, after) = (from.clone(), to.clone(), start.clone());
            let page = self.call("reading the pending queue", move || {
                let mut q = client
                    .query()
                    .table_name(&table)
                    .index_name(QUEUE_INDEX)
                    .expression_attribute_values(":open", s("OPEN"))
                    .set_exclusive_start_key(after.clone());
                q = match (&from, &to) {
                    (Some(f), None) => q
                        .key_condition_expression("qpk = :open AND qsk >= :f")
                        .expression_attribute_values(":f", s(f)),
                    (None, Some(t)) => q
                        .key_condition_expression("qpk = :open AND qsk < :t")
                        .expression_attribute_values(":t", s(t)),
                    _ => q.key_condition_expression("qpk = :open"),
                };
                q.send()
            })?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}

/// The reviewer name an STS caller ARN stands for (see `DynamoStore::caller_identity`).
pub fn identity_from_arn(arn: &str) -> String {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or("");
    let parts: Vec<&str> = resource.split('/').collect();
    match parts.as_slice() {
        ["assumed-role", _role, session, ..] if !session.is_empty() => (*session).to_owned(),
        ["user", .., name] if !name.is_empty() => (*name).to_owned(),
        _ => arn.to_owned(),
    }
}

fn distinct_approvers<'a>(decisions: impl Iterator<Item = &'a Decision>) -> usize {
    let mut v: Vec<&str> = decisions
        .filter(|d| d.verdict == Verdict::Confirm)
        .map(|d| d.reviewer.as_str())
        .collect();
    v.sort_unstable();
    v.dedup();
    v.len()
}

fn status_counter(status: Status) -> String {
    format!("st_{}", status.as_str())
}

impl ApprovalStore for DynamoStore {
    fn submit(&self, request: &ApprovalRequest, actor: &str) -> Result<(), StoreError> {
        self.submit_one(request, actor, None)
    }

    fn resolve(&self, id_or_prefix: &str) -> Result<ApprovalId, StoreError> {
        if id_or_prefix.is_empty() {
            return Err(StoreError::NotFound(String::new()));
        }
        if self.exists(id_or_prefix)? {
            return Ok(ApprovalId(id_or_prefix.to_owned()));
        }
        let (client, table, prefix) = (
            self.client.clone(),
            self.table.clone(),
            id_or_prefix.to_owned(),
        );
        let first = self.call("looking up an id prefix", move || {
            client
                .query()
                .table_name(&table)
                .key_condition_expression("pk = :ids AND begins_with(sk, :p)")
                .expression_attribute_values(":ids", s("IDS"))
                .expression_attribute_values(":p", s(&prefix))
                .limit(2)
                .send()
        })?;
        let ids: Vec<String> = first
            .items()
            .iter()
            .filter_map(|i| get_s(i, "sk").map(str::to_owned))
            .collect();
        match ids.as_slice() {
            [] => Err(StoreError::NotFound(id_or_prefix.to_owned())),
            [one] => Ok(ApprovalId(one.clone())),
            _ => {
                let (client, table, prefix) = (
                    self.client.clone(),
                    self.table.clone(),
                    id_or_prefix.to_owned(),
                );
                let count = self.call("counting an id prefix", move || {
                    client
                        .query()
                        .table_name(&table)
                        .key_condition_expression("pk = :ids AND begins_with(sk, :p)")
                        .expression_attribute_values(":ids", s("IDS"))
                        .expression_attribute_values(":p", s(&prefix))
                        .select(Select::Count)
                        .send()
                })?;
                Err(StoreError::Ambiguous {
                    prefix: id_or_prefix.to_owned(),
                    count: usize::try_from(count.count()).unwrap_or(2),
                })
            }
        }
    }

    fn get(
        &self,
        id: &ApprovalId,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<StoredRequest, StoreError> {
        let loaded = self
            .load(id)?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let decisions: Vec<Decision> = loaded.decisions.into_iter().map(|(_, d)| d).collect();
        let status = if loaded.status.is_final() {
            loaded.status
        } else {
            Status::derive(&loaded.request, &decisions, policy, now)
        };
        Ok(StoredRequest {
            request: loaded.request,
            decisions,
            status,
        })
    }

    fn open_queue(&self, now: DateTime<Utc>) -> Result<Vec<QueueRow>, StoreError> {
        // The only read path of the queue: a Query on the sparse index, never a Scan.
        let items = self.query_queue(Some(format!("{:013}", to_ms(now) + 1)), None)?;
        items
            .iter()
            .map(|item| {
                let mut row: QueueRow =
                    serde_json::from_str(get_s(item, "row").unwrap_or_default())
                        .map_err(|e| corrupt("queue row", &e.to_string()))?;
                if let Some(st) = get_s(item, "status").and_then(Status::parse) {
                    row.status = st;
                }
                row.approvals = usize::try_from(get_n(item, "approvals").unwrap_or(0)).unwrap_or(0);
                Ok(row)
            })
            .collect()
    }

    /// One conditional `TransactWriteItems` and no read, when this handle knows the request
    /// (it read it with `get`, as the console and the CLI do before a reviewer decides, or
    /// submitted or decided it) and the audit head (from any earlier write or read). The write
    /// is conditioned on exactly that state; when it is stale the write fails and its
    /// cancellation reasons carry the request item and the head as they are now
    /// (`ReturnValuesOnConditionCheckFailure = ALL_OLD`): the decision is planned again from
    /// those, or refused naming who decided first. A request this handle never read costs one
    /// Query first; so does the first audit write of a handle that never saw the head (one
    /// GetItem).
    fn decide(
        &self,
        ask: &DecisionAsk,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<DecisionOutcome, StoreError> {
        let now = truncate_ms(now);
        let id = ask.request.as_str();
        let doing = format!("recording the decision on {id}");
        let mut known = match self.known_of(id) {
            Some(k) => k,
            // Never read by this handle: the one read a decision may need.
            None => known_from(
                &self
                    .load(&ask.request)?
                    .ok_or_else(|| StoreError::NotFound(id.to_owned()))?,
            ),
        };
        let mut head = self.head_hint()?;
        let mut blind = 0;
        for attempt in 0..RACE_ATTEMPTS {
            // State only moves forward (decisions are appended, final is final, bodies never
            // change), so a refusal planned on what this handle knew stands even when it is stale.
            if known.status.is_final() {
                return Err(Refusal::for_final(
                    &known.request,
                    known.status,
                    known.decisions.iter().map(|(_, d)| d),
                )
                .into());
            }
            let decisions: Vec<Decision> = known.decisions.iter().map(|(_, d)| d.clone()).collect();
            let plan = decision::plan(&known.request, &decisions, policy, ask, now)?;
            let (items, head_after) =
                self.decision_items(&known, &head, &plan, ask, policy, now)?;
            match self.transact_full(&doing, items)? {
                Ok(()) => {
                    self.learn_head(&head_after, true);
                    let next_seq = known.decisions.iter().map(|(s, _)| *s).max().unwrap_or(0) + 1;
                    let mut after = known;
                    after.version += 1;
                    after.status = plan.status_after;
                    after.decisions.extend(
                        plan.decisions
                            .iter()
                            .enumerate()
                            .map(|(i, d)| (next_seq + i as i64, d.clone())),
                    );
                    self.remember(after);
                    return Ok(DecisionOutcome {
                        decisions: plan.decisions,
                        status: plan.status_after,
                        audit_seq: u64::try_from(head_after.seq).unwrap_or(0),
                    });
                }
                Err(reasons) => {
                    // Someone else wrote first (this request, or anything on the audit head):
                    // the failed write says what is there now.
                    let mut news = false;
                    if let Some(r) = reasons.first().filter(|r| r.failed()) {
                        let Some(item) = &r.item else {
                            self.forget(id);
                            return Err(StoreError::NotFound(id.to_owned()));
                        };
                        let state = item_state(item, &format!("request {id}"))?;
                        known.status = state.status;
                        known.version = state.version;
                        known.decisions = state.decisions;
                        known.link = state.link;
                        self.remember(known.clone());
                        news = true;
                    }
                    if let Some(item) = reasons.get(DECISION_HEAD_AT).and_then(|r| r.item.as_ref())
                    {
                        head = head_of(item);
                        self.learn_head(&head, true);
                        news = true;
                    }
                    if !news {
                        // A conflict with a concurrent transaction (it names no item): wait, and
                        // after a few read the state again.
                        blind += 1;
                        if blind % BLIND_RETRIES == 0 {
                            known = known_from(
                                &self
                                    .load(&ask.request)?
                                    .ok_or_else(|| StoreError::NotFound(id.to_owned()))?,
                            );
                            head = self.head()?;
                        }
                        Self::pause_after_race(attempt);
                    }
                }
            }
        }
        Err(self.contention(&doing))
    }

    fn expire_due(&self, now: DateTime<Utc>, actor: &str) -> Result<usize, StoreError> {
        let now_ms = to_ms(now);
        let due = self.query_queue(None, Some(format!("{:013}", now_ms + 1)))?;
        let mut expired = 0;
        for item in due {
            let Some(id) = get_s(&item, "qsk").and_then(|k| k.splitn(3, '#').nth(2)) else {
                continue;
            };
            let id = ApprovalId(id.to_owned());
            for attempt in 0..RACE_ATTEMPTS {
                let Some(loaded) = self.load(&id)? else { break };
                if !loaded.status.is_open()
                    || loaded.status.check_transition(Status::Expired).is_err()
                {
                    break;
                }
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(req_pk(id.as_str()), "R")))
                    .update_expression("SET #st = :exp, version = :v1 REMOVE qpk, qsk")
                    .condition_expression("version = :v")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":exp", s(Status::Expired.as_str()))
                    .expression_attribute_values(":v", n(loaded.version))
                    .expression_attribute_values(":v1", n(loaded.version + 1))
                    .build()
                    .map_err(|e| self.build_err(&e))?;
                let payload = json!({
                    "request": id.as_str(),
                    "status": Status::Expired.as_str(),
                    "from": loaded.status.as_str(),
                    "expiresAtMs": to_ms(loaded.request.expires_at),
                });
                let head = self.head_hint()?;
                let (audit, after) = self.audit_items(
                    &head,
                    &NewEntry {
                        at_ms: now_ms,
                        actor,
                        kind: "expired",
                        request: id.as_str(),
                        payload: &payload,
                    },
                    &[
                        (status_counter(loaded.status), -1),
                        (status_counter(Status::Expired), 1),
                    ],
                )?;
                let mut items = vec![TransactWriteItem::builder().update(update).build()];
                items.extend(audit);
                let settled = metrics::settled_item(
                    &loaded.request,
                    Status::Expired,
                    loaded.decisions.iter().map(|(_, d)| d),
                    now_ms,
                )?;
                items.push(self.put_item_tx(settled, false)?);
                match self.transact_full(&format!("expiring request {id}"), items)? {
                    Ok(()) => {
                        self.learn_head(&after, true);
                        self.forget(id.as_str());
                        expired += 1;
                        break;
                    }
                    Err(reasons) => {
                        // The head's answer (when it moved) is kept for the next attempt; the
                        // request is read again either way.
                        if let Some(item) = reasons.get(2).and_then(|r| r.item.as_ref()) {
                            self.learn_head(&head_of(item), true);
                        }
                        Self::pause_after_race(attempt);
                    }
                }
            }
        }
        Ok(expired)
    }

    fn counts(&self) -> Result<StoreCounts, StoreError> {
        let (client, table) = (self.client.clone(), self.table.clone());
        let out = self.call("reading the totals", move || {
            client
                .get_item()
                .table_name(&table)
                .set_key(Some(key("AUDIT", "HEAD")))
                .send()
        })?;
        let empty = Item::new();
        let head = out.item().unwrap_or(&empty);
        if out.item().is_some() {
            // A hint for the next audit write (it may lag: this read is not consistent).
            self.learn_head(&head_of(head), false);
        }
        let num = |name: &str| u64::try_from(get_n(head, name).unwrap_or(0)).unwrap_or(0);
        let open = self.open_queue(Utc::now())?;
        let mut counts = StoreCounts {
            requests: num("n_req"),
            by_status: Status::ALL
                .into_iter()
                .map(|s| (s, num(&status_counter(s))))
                .collect(),
            by_tier_open: RiskTier::ALL
                .into_iter()
                .map(|t| (t, open.iter().filter(|r| r.tier == t).count() as u64))
                .collect(),
            decisions: num("n_dec"),
            confirms: num("n_conf"),
            denies: num("n_deny"),
            audit_entries: num("seq"),
            ..StoreCounts::default()
        };
        self.trace_counts(&mut counts)?;
        Ok(counts)
    }

    fn audit_verify(&self) -> Result<AuditReport, StoreError> {
        verify(self)
    }

    fn audit_each(
        &self,
        each: &mut dyn FnMut(AuditEntry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut start: Option<Item> = None;
        loop {
            let (client, table, after) = (self.client.clone(), self.table.clone(), start.clone());
            let page = self.call("reading the audit log", move || {
                client
                    .query()
                    .table_name(&table)
                    .consistent_read(true)
                    .key_condition_expression("pk = :a AND begins_with(sk, :e)")
                    .expression_attribute_values(":a", s("AUDIT"))
                    .expression_attribute_values(":e", s("E#"))
                    .set_exclusive_start_key(after.clone())
                    .limit(512)
                    .send()
            })?;
            for item in page.items() {
                each(audit_entry(item)?)?;
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(()),
            }
        }
    }
}

fn audit_entry(item: &Item) -> Result<AuditEntry, StoreError> {
    let seq = get_n(item, "seq").ok_or_else(|| corrupt("audit entry", "no seq"))?;
    let at_ms = get_n(item, "at_ms").ok_or_else(|| corrupt("audit entry", "no at_ms"))?;
    let text = |name: &str| get_s(item, name).unwrap_or_default().to_owned();
    Ok(AuditEntry {
        seq: u64::try_from(seq).map_err(|_| corrupt("audit entry", "negative seq"))?,
        at: DateTime::from_timestamp_millis(at_ms)
            .ok_or_else(|| corrupt("audit entry", "bad time"))?,
        actor: text("actor"),
        kind: text("kind"),
        request: ApprovalId(text("request")),
        payload: text("payload"),
        prev_hash: text("prev_hash"),
        hash: text("hash"),
    })
}

/// What the log says about one request.
#[derive(Default)]
struct Logged {
    body_hash: Option<String>,
    status: Option<(String, i64)>,
    decisions: Vec<(i64, Value)>,
}

/// The chain on its own, then every request and decision against the log, then the head.
fn verify(store: &DynamoStore) -> Result<AuditReport, StoreError> {
    let mut problems = Vec::new();
    let mut entries = 0_u64;
    let mut expected = 1_i64;
    let mut prev = GENESIS.to_owned();
    let mut log: BTreeMap<String, Logged> = BTreeMap::new();
    store.audit_each(&mut |e| {
        entries += 1;
        let seq = e.seq as i64;
        let name = format!("audit entry {seq} (request {})", e.request);
        if seq != expected {
            problems.push(format!(
                "{name}: follows entry {}: entries were deleted or reordered",
                expected - 1
            ));
        } else if e.prev_hash != prev {
            problems.push(format!(
                "{name}: its prev_hash is not the hash of entry {}: the chain is broken there",
                seq - 1
            ));
        }
        let recomputed = entry_hash(
            &e.prev_hash,
            seq,
            to_ms(e.at),
            &e.actor,
            &e.kind,
            e.request.as_str(),
            &e.payload,
        );
        if recomputed != e.hash {
            problems.push(format!(
                "{name}: its hash does not recompute: the entry was edited after it was written"
            ));
        }
        prev.clone_from(&e.hash);
        expected = seq + 1;
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&e.payload) else {
            problems.push(format!("{name}: its payload is not a JSON object"));
            return Ok(());
        };
        let entry = log.entry(e.request.as_str().to_owned()).or_default();
        if let Some(st) = fields.get("status").and_then(Value::as_str) {
            entry.status = Some((st.to_owned(), seq));
        }
        match e.kind.as_str() {
            "submitted" => {
                entry.body_hash = fields
                    .get("bodyHash")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            "decided" => {
                for d in fields
                    .get("decisions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    entry.decisions.push((seq, d.clone()));
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    // The head must point at the last entry.
    let head = store.head()?;
    if head.seq != expected - 1 || (head.seq > 0 && head.hash != prev) {
        problems.push(format!(
            "audit head says seq {} but the log ends at entry {}: entries were deleted or the \
             head was edited",
            head.seq,
            expected - 1
        ));
    }
    // Every request in the id index against the log.
    let ids = store.query_partition("audit check: listing requests", "IDS", None)?;
    let outbox: BTreeMap<String, Item> = store
        .query_partition("audit check: reading the outbox", runner::OUTBOX, None)?
        .into_iter()
        .filter_map(|item| get_s(&item, "sk").map(str::to_owned).map(|id| (id, item)))
        .collect();
    // Each request's status and whether the runner raised it, for the outbox check after.
    let mut resumable: BTreeMap<String, (Status, bool)> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for item in &ids {
        let Some(id) = get_s(item, "sk") else {
            continue;
        };
        seen.insert(id.to_owned());
        let name = format!("request {id}");
        let Some(logged) = log.get(id) else {
            problems.push(format!(
                "{name}: is in the table but the audit log never submitted it"
            ));
            continue;
        };
        let loaded = match store.load(&ApprovalId(id.to_owned())) {
            Ok(Some(l)) => l,
            Ok(None) => {
                problems.push(format!(
                    "{name}: the log submitted it but its item is gone: it was deleted"
                ));
                continue;
            }
            Err(StoreError::Corrupt(m)) => {
                problems.push(m);
                continue;
            }
            Err(e) => return Err(e),
        };
        resumable.insert(id.to_owned(), (loaded.status, loaded.link.is_some()));
        if loaded.body_hash != loaded.stored_body_hash
            || Some(&loaded.body_hash) != logged.body_hash.as_ref()
        {
            problems.push(format!(
                "{name}: its body does not hash to what the log recorded: it was edited"
            ));
        }
        if let Some((st, seq)) = &logged.status
            && st != loaded.status.as_str()
        {
            problems.push(format!(
                "{name}: its status is {} but audit entry {seq} set it to {st}",
                loaded.status.as_str()
            ));
        }
        let stored: Vec<Value> = loaded
            .decisions
            .iter()
            .map(|(seq, d)| decision_json(*seq, d))
            .collect();
        let wanted: Vec<&Value> = logged.decisions.iter().map(|(_, v)| v).collect();
        if stored.len() != wanted.len() || stored.iter().zip(&wanted).any(|(a, b)| a != *b) {
            problems.push(format!(
                "{name}: its {} decision(s) differ from the {} the log recorded: they were edited, \
                 added or deleted",
                stored.len(),
                wanted.len()
            ));
        }
    }
    for (id, logged) in &log {
        if logged.body_hash.is_some() && !seen.contains(id) {
            problems.push(format!("request {id}: the log submitted it but it is no longer in the table: it was deleted"));
        }
    }
    check_outbox(&resumable, &outbox, &mut problems);
    Ok(AuditReport { entries, problems })
}

/// The outbox against the requests (as SQLite checks it): a resume exists exactly for the
/// runner-raised requests that ended approved, rejected or mixed, never for expired or open
/// ones nor for requests the runner did not raise. One item per request by its key, so "more
/// than one" cannot be stored.
fn check_outbox(
    requests: &BTreeMap<String, (Status, bool)>,
    outbox: &BTreeMap<String, Item>,
    problems: &mut Vec<String>,
) {
    for id in outbox.keys() {
        match requests.get(id) {
            None => problems.push(format!(
                "request {id}: has an outbox row but its status is missing: only approved, \
                 rejected or mixed requests are resumed"
            )),
            Some((status, _)) if !resumes_after(*status) => problems.push(format!(
                "request {id}: has an outbox row but its status is {}: only approved, rejected \
                 or mixed requests are resumed",
                status.as_str()
            )),
            Some((_, false)) => problems.push(format!(
                "request {id}: has an outbox row but the runner did not raise it"
            )),
            Some(_) => {}
        }
    }
    for (id, (status, raised)) in requests {
        if *raised && resumes_after(*status) && !outbox.contains_key(id) {
            problems.push(format!(
                "request {id}: is {} and the runner raised it, but it has no outbox row: its \
                 resume was lost",
                status.as_str()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::identity_from_arn;

    #[test]
    fn identities_from_caller_arns() {
        assert_eq!(
            identity_from_arn("arn:aws:sts::123456789012:assumed-role/Reviewers/alice@example.com"),
            "alice@example.com"
        );
        assert_eq!(
            identity_from_arn("arn:aws:iam::123456789012:user/ops/bob"),
            "bob"
        );
        assert_eq!(
            identity_from_arn("arn:aws:iam::123456789012:root"),
            "arn:aws:iam::123456789012:root"
        );
    }
}
