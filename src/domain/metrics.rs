//! The metrics engine: task completion, action accuracy, latency (end to end, model, tool,
//! human), tokens and cost, and the human side of the loop, over windows of 15 m, 1 h, 24 h and
//! 7 d, filtered by agent, alias and model.
//!
//! It is fed facts (one per settled invocation, per request, per action mark) and keeps them in
//! time buckets keyed by (agent, alias, model): minute buckets for the short windows, hour
//! buckets for the long ones. Adding a fact touches one cell of each granularity, so its cost
//! does not grow with the facts held; a snapshot merges at most 168 buckets. Percentiles come
//! from HDR histograms with two significant digits (within 1%; exact below 256 ms), read by
//! nearest rank. Pure: the store adapter reads the facts, the console and the CLI both call
//! `Engine::snapshot`, so they always agree.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::policy::RiskTier;
use super::status::Status;
use super::trace::{ObservationDetail, StepEvent, TraceEvent, TraceKind};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;

/// A window the figures are computed over, ending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Window {
    #[serde(rename = "15m")]
    M15,
    #[default]
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "24h")]
    H24,
    #[serde(rename = "7d")]
    D7,
}

impl Window {
    pub const ALL: [Self; 4] = [Self::M15, Self::H1, Self::H24, Self::D7];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::M15 => "15m",
            Self::H1 => "1h",
            Self::H24 => "24h",
            Self::D7 => "7d",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.as_str() == s)
    }

    /// The width of one bucket: a minute for the short windows, an hour for the long ones.
    pub fn bucket_ms(self) -> i64 {
        match self {
            Self::M15 | Self::H1 => MINUTE_MS,
            Self::H24 | Self::D7 => HOUR_MS,
        }
    }

    /// How many buckets the window spans: the one holding `now` and those before it.
    pub fn buckets(self) -> i64 {
        match self {
            Self::M15 => 15,
            Self::H1 => 60,
            Self::H24 => 24,
            Self::D7 => 168,
        }
    }

    /// The first millisecond the window covers at `now` (the start of its oldest bucket).
    pub fn start_ms(self, now_ms: i64) -> i64 {
        floor(now_ms, self.bucket_ms()) - (self.buckets() - 1) * self.bucket_ms()
    }

    /// How far back a CloudWatch read for this window goes, in seconds: all its buckets.
    pub fn span_secs(self) -> u64 {
        u64::try_from(self.buckets() * self.bucket_ms() / 1000).unwrap_or(0)
    }

    /// The period of a CloudWatch read's trend for this window, in seconds: its bucket, so
    /// Bedrock's points line up with agentdeck's (a minute for 15m and 1h, an hour for 24h
    /// and 7d; at most 168 points).
    pub fn period_secs(self) -> u64 {
        u64::try_from(self.bucket_ms() / 1000).unwrap_or(60)
    }

    /// The next window in `ALL`, wrapping.
    #[must_use]
    pub fn next(self) -> Self {
        let i = Self::ALL.iter().position(|w| *w == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }
}

fn floor(ms: i64, width: i64) -> i64 {
    ms.div_euclid(width) * width
}

/// Model and tool time, and the model, that one trace event accounts for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTiming<'a> {
    pub model: Option<&'a str>,
    pub model_ms: i64,
    pub tool_ms: i64,
}

impl<'a> EventTiming<'a> {
    /// Model time is a model output's metadata duration; tool time is the metadata duration of
    /// an action-group, knowledge-base, code-interpreter or collaborator observation. The model
    /// is the foundation model a model input names. Only the call's own agent is timed: a
    /// collaborator's events (a caller chain past the supervisor) happen inside the
    /// supervisor's collaborator observation, which counts the collaborator's whole run as
    /// tool time, so timing them too would count that time twice.
    pub fn of(e: &'a TraceEvent) -> Self {
        let TraceKind::Step { event, .. } = &e.kind else {
            return Self::default();
        };
        let nested = e.caller_chain.len() > 1;
        let ms = |m: Option<&super::trace::Metadata>| {
            m.and_then(super::trace::Metadata::duration_ms)
                .unwrap_or(0)
                .max(0)
        };
        match event {
            StepEvent::ModelInput(m) => Self {
                model: m.foundation_model.as_deref(),
                ..Self::default()
            },
            _ if nested => Self::default(),
            StepEvent::ModelOutput(m) => Self {
                model_ms: ms(m.metadata.as_ref()),
                ..Self::default()
            },
            StepEvent::Observation(o) => match &o.detail {
                ObservationDetail::ActionGroup { metadata, .. }
                | ObservationDetail::KnowledgeBase { metadata, .. }
                | ObservationDetail::CodeInterpreter { metadata, .. }
                | ObservationDetail::AgentCollaborator { metadata, .. } => Self {
                    tool_ms: ms(metadata.as_ref()),
                    ..Self::default()
                },
                _ => Self::default(),
            },
            _ => Self::default(),
        }
    }
}

/// How one InvokeAgent call ended, as the task-completion rule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    Running,
    /// Ended with a final response (the finalResponse trace or answer text).
    Answered,
    /// Ended without an answer, with a failure trace, or with an exception.
    Failed,
    ReturnedControl,
}

/// What became of a return of control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// The request is still open, or decided and its resume not yet acknowledged.
    Waiting,
    /// Decided and resumed: the resumed call carries the task on.
    Resumed,
    /// Expired undecided, or decided and its resume failed for good.
    Abandoned,
    /// No request in the store is linked to the call.
    Unlinked,
}

/// Where a call leaves its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskEnd {
    Completed,
    NotCompleted,
    /// Still running, or waiting for a human: excluded from the rate until it settles.
    InFlight,
    /// Returned control and was resumed: the resumed call is the one that counts.
    HandedOn,
}

impl TaskEnd {
    pub fn of(call: CallEnd, handoff: Handoff) -> Self {
        match call {
            CallEnd::Running => Self::InFlight,
            CallEnd::Answered => Self::Completed,
            CallEnd::Failed => Self::NotCompleted,
            CallEnd::ReturnedControl => match handoff {
                Handoff::Waiting | Handoff::Unlinked => Self::InFlight,
                Handoff::Resumed => Self::HandedOn,
                Handoff::Abandoned => Self::NotCompleted,
            },
        }
    }
}

/// What metrics need of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationFact {
    /// The store's position for the row (incremental reads).
    pub row: i64,
    pub request_id: String,
    pub agent_id: String,
    pub agent_alias_id: String,
    pub model: Option<String>,
    /// When the call ended (its bucket); None while running.
    pub ended_ms: Option<i64>,
    pub task: TaskEnd,
    /// The call's own latency.
    pub latency_ms: i64,
    pub model_ms: i64,
    pub tool_ms: i64,
    /// For a call that returned control: from its end to the final decision.
    pub human_ms: Option<i64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// One reviewer decision on one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionFact {
    pub reviewer: String,
    pub at_ms: i64,
    pub dwell_ms: Option<i64>,
    pub confirm: bool,
}

/// What metrics need of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFact {
    pub row: i64,
    pub id: String,
    pub agent_id: String,
    pub agent_alias_id: String,
    pub action: String,
    pub tier: RiskTier,
    pub raised_ms: i64,
    pub expires_ms: i64,
    pub status: Status,
    pub decisions: Vec<DecisionFact>,
}

/// An engineer's judgement of one executed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkFact {
    pub row: i64,
    pub request_id: String,
    pub step: u64,
    pub who: String,
    pub at_ms: i64,
    pub appropriate: bool,
    pub agent_id: String,
    pub agent_alias_id: String,
    pub model: Option<String>,
}

/// Which agents, aliases and models the figures cover (None: all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Filter {
    pub agent: Option<String>,
    pub alias: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    agent: String,
    alias: String,
    /// None for the human side (requests carry no model) and for calls with no model input.
    model: Option<String>,
}

impl Filter {
    fn matches(&self, k: &Key) -> bool {
        self.agent.as_ref().is_none_or(|a| *a == k.agent)
            && self.alias.as_ref().is_none_or(|a| *a == k.alias)
            && self
                .model
                .as_ref()
                .is_none_or(|m| k.model.as_ref() == Some(m))
    }

    pub fn is_all(&self) -> bool {
        self.agent.is_none() && self.alias.is_none() && self.model.is_none()
    }
}

/// The agents, aliases and models the engine has seen, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimensions {
    pub agents: Vec<String>,
    pub aliases: Vec<String>,
    pub models: Vec<String>,
}

/// The filter value after `current`: all, then each option in turn, then all again.
pub fn cycle(current: Option<&String>, options: &[String]) -> Option<String> {
    match current {
        None => options.first().cloned(),
        Some(c) => options
            .iter()
            .position(|o| o == c)
            .and_then(|i| options.get(i + 1))
            .cloned(),
    }
}

/// Whether a higher or a lower value is better.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    AtLeast(f64),
    AtMost(f64),
}

impl Objective {
    fn breached(self, v: f64) -> bool {
        match self {
            Self::AtLeast(t) => v < t,
            Self::AtMost(t) => v > t,
        }
    }
}

/// Per-model prices in US dollars per 1,000 tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub input_per_1k: f64,
    pub output_per_1k: f64,
}

/// The configurable part: objectives by metric id, prices by model, the rubber-stamp rule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    pub objectives: BTreeMap<String, Objective>,
    pub prices: BTreeMap<String, Price>,
    /// Approvals of this tier or riskier...
    pub rubber_stamp_tier: Option<RiskTier>,
    /// ...with a dwell below this many milliseconds are flagged.
    pub rubber_stamp_ms: i64,
}

/// An HDR histogram created on first use (most cells never see a human wait).
#[derive(Debug, Clone, Default)]
struct Hist(Option<Box<Histogram<u32>>>);

impl Hist {
    fn record(&mut self, v: i64) {
        let v = u64::try_from(v.max(0)).unwrap_or(0);
        if self.0.is_none() {
            self.0 = Histogram::new(2).ok().map(Box::new);
        }
        if let Some(h) = &mut self.0 {
            // Auto-resizing: only a count past u32::MAX in one cell could fail, and then the
            // sample is dropped rather than the figure corrupted.
            let _ = h.record(v);
        }
    }

    fn add(&mut self, other: &Self) {
        let Some(o) = &other.0 else { return };
        match &mut self.0 {
            Some(h) => {
                // Both auto-resize, so adding cannot fail for range; keep the sum if it does.
                let _ = h.add(o.as_ref());
            }
            None => self.0 = Some(o.clone()),
        }
    }

    /// Nearest rank: the smallest recorded value with at least `q` of the samples at or below.
    #[allow(clippy::cast_precision_loss)]
    fn quantile(&self, q: f64) -> Option<f64> {
        let h = self.0.as_ref().filter(|h| !h.is_empty())?;
        Some(h.value_at_quantile(q) as f64)
    }
}

#[derive(Debug, Clone, Default)]
struct ReviewerCell {
    decisions: u64,
    dwell: Hist,
}

/// A fast approval of a risky request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RubberStamp {
    pub request: String,
    pub reviewer: String,
    pub tier: RiskTier,
    pub action: String,
    pub dwell_ms: i64,
    pub at_ms: i64,
}

/// Everything one key contributes to one bucket.
#[derive(Debug, Clone, Default)]
struct Cell {
    finished: u64,
    completed: u64,
    invocations: u64,
    tokens_in: u64,
    tokens_out: u64,
    e2e: Hist,
    model: Hist,
    tool: Hist,
    human: Hist,
    judged: u64,
    appropriate: u64,
    raised: u64,
    /// Requests that left the queue (final decision or expiry) in this bucket.
    settled: u64,
    expired: u64,
    to_decision: Hist,
    /// Action -> (confirms, decisions).
    actions: BTreeMap<String, (u64, u64)>,
    reviewers: BTreeMap<String, ReviewerCell>,
    rubber: Vec<RubberStamp>,
}

impl Cell {
    fn add(&mut self, o: &Self) {
        self.finished += o.finished;
        self.completed += o.completed;
        self.invocations += o.invocations;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.e2e.add(&o.e2e);
        self.model.add(&o.model);
        self.tool.add(&o.tool);
        self.human.add(&o.human);
        self.judged += o.judged;
        self.appropriate += o.appropriate;
        self.raised += o.raised;
        self.settled += o.settled;
        self.expired += o.expired;
        self.to_decision.add(&o.to_decision);
        for (a, (c, n)) in &o.actions {
            let e = self.actions.entry(a.clone()).or_default();
            e.0 += c;
            e.1 += n;
        }
        for (r, rc) in &o.reviewers {
            let e = self.reviewers.entry(r.clone()).or_default();
            e.decisions += rc.decisions;
            e.dwell.add(&rc.dwell);
        }
        self.rubber.extend(o.rubber.iter().cloned());
    }
}

type Buckets = BTreeMap<i64, HashMap<u32, Cell>>;

/// Where the engine has read up to in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub invocations: i64,
    pub requests: i64,
    pub marks: i64,
}

#[derive(Debug, Clone)]
struct OpenRequest {
    key: u32,
    expires_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct MarkSeen {
    at_ms: i64,
    key: u32,
    appropriate: bool,
}

/// The engine. Feed it facts (`add_*`), then ask for a `snapshot`.
#[derive(Debug, Default)]
pub struct Engine {
    settings: Settings,
    keys: Vec<Key>,
    key_ids: HashMap<Key, u32>,
    minutes: Buckets,
    hours: Buckets,
    /// The newest time seen; buckets too old for any window are dropped relative to it.
    horizon_ms: i64,
    cursor: Cursor,
    /// Invocations in flight and requests open, by id: re-read until they settle.
    in_flight: HashMap<String, u32>,
    open: HashMap<String, OpenRequest>,
    marks: HashMap<(String, u64, String), MarkSeen>,
    /// How far behind its cursor the store's reads may deliver facts again (0: never; see
    /// `set_overlap`), and the ids settled within that reach, so a fact delivered twice counts
    /// once.
    overlap: i64,
    settled_invocations: HashMap<String, i64>,
    settled_requests: HashMap<String, i64>,
}

/// How long each granularity is kept: the longest window it serves, plus one bucket.
const MINUTES_KEPT: i64 = 61 * MINUTE_MS;
const HOURS_KEPT: i64 = 169 * HOUR_MS;

impl Engine {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Invocations still in flight, by request id, sorted: re-read them until they settle.
    pub fn in_flight_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.in_flight.keys().cloned().collect();
        v.sort_unstable();
        v
    }

    /// Requests still open, by id, sorted: re-read them until they settle.
    pub fn open_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.open.keys().cloned().collect();
        v.sort_unstable();
        v
    }

    /// Whether the invocation is held as in flight.
    pub fn is_in_flight(&self, request_id: &str) -> bool {
        self.in_flight.contains_key(request_id)
    }

    /// Whether the request is held as open.
    pub fn is_open(&self, id: &str) -> bool {
        self.open.contains_key(id)
    }

    /// Tells the engine that the store's reads may deliver a fact again while its row is within
    /// `ms` of the cursor (a store with no row order reads a time watermark minus a settle
    /// window). Facts settled within that reach are remembered by id and counted once; 0 (a
    /// store whose rows only grow) remembers none.
    pub fn set_overlap(&mut self, ms: i64) {
        self.overlap = ms.max(0);
        self.forget_settled();
    }

    /// Drops the remembered settled ids no read can deliver again.
    pub fn forget_settled(&mut self) {
        let (ci, cr, o) = (self.cursor.invocations, self.cursor.requests, self.overlap);
        if o == 0 {
            self.settled_invocations.clear();
            self.settled_requests.clear();
            return;
        }
        self.settled_invocations.retain(|_, row| *row >= ci - o);
        self.settled_requests.retain(|_, row| *row >= cr - o);
    }

    /// How many settled ids are remembered against a second delivery.
    pub fn remembered(&self) -> usize {
        self.settled_invocations.len() + self.settled_requests.len()
    }

    fn key(&mut self, agent: &str, alias: &str, model: Option<&str>) -> u32 {
        let k = Key {
            agent: agent.to_owned(),
            alias: alias.to_owned(),
            model: model.map(str::to_owned),
        };
        if let Some(id) = self.key_ids.get(&k) {
            return *id;
        }
        let id = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
        self.keys.push(k.clone());
        self.key_ids.insert(k, id);
        id
    }

    /// Moves the horizon forward and drops buckets no window can reach any more.
    pub fn advance(&mut self, now_ms: i64) {
        if now_ms <= self.horizon_ms {
            return;
        }
        self.horizon_ms = now_ms;
        let keep_min = floor(now_ms, MINUTE_MS) - MINUTES_KEPT;
        while self
            .minutes
            .first_key_value()
            .is_some_and(|(k, _)| *k < keep_min)
        {
            self.minutes.pop_first();
        }
        let keep_hour = floor(now_ms, HOUR_MS) - HOURS_KEPT;
        while self
            .hours
            .first_key_value()
            .is_some_and(|(k, _)| *k < keep_hour)
        {
            self.hours.pop_first();
        }
    }

    /// Applies `f` to the key's cell in the minute and the hour bucket holding `at_ms`.
    fn touch(&mut self, at_ms: i64, key: u32, f: impl Fn(&mut Cell)) {
        if at_ms > self.horizon_ms {
            self.advance(at_ms);
        }
        let m = floor(at_ms, MINUTE_MS);
        if m >= floor(self.horizon_ms, MINUTE_MS) - MINUTES_KEPT {
            f(self.minutes.entry(m).or_default().entry(key).or_default());
        }
        let h = floor(at_ms, HOUR_MS);
        if h >= floor(self.horizon_ms, HOUR_MS) - HOURS_KEPT {
            f(self.hours.entry(h).or_default().entry(key).or_default());
        }
    }

    /// An invocation as read from the store: counted once it settles; until then remembered by
    /// its row so the next read looks at it again.
    pub fn add_invocation(&mut self, f: &InvocationFact) {
        self.cursor.invocations = self.cursor.invocations.max(f.row);
        if self.settled_invocations.contains_key(&f.request_id) {
            return;
        }
        let key = self.key(&f.agent_id, &f.agent_alias_id, f.model.as_deref());
        let ended = match (f.task, f.ended_ms) {
            (TaskEnd::InFlight, _) | (_, None) => {
                self.in_flight.insert(f.request_id.clone(), key);
                return;
            }
            (_, Some(at)) => at,
        };
        self.in_flight.remove(&f.request_id);
        if self.overlap > 0 && f.row >= self.cursor.invocations - self.overlap {
            self.settled_invocations.insert(f.request_id.clone(), f.row);
        }
        let human = f.human_ms.map(|h| h.max(0));
        let e2e = f.latency_ms.max(0) + human.unwrap_or(0);
        let tin = u64::try_from(f.input_tokens.max(0)).unwrap_or(0);
        let tout = u64::try_from(f.output_tokens.max(0)).unwrap_or(0);
        let task = f.task;
        let (model_ms, tool_ms) = (f.model_ms, f.tool_ms);
        self.touch(ended, key, |c| {
            c.invocations += 1;
            c.tokens_in += tin;
            c.tokens_out += tout;
            match task {
                TaskEnd::Completed => {
                    c.finished += 1;
                    c.completed += 1;
                }
                TaskEnd::NotCompleted => c.finished += 1,
                TaskEnd::InFlight | TaskEnd::HandedOn => {}
            }
            c.e2e.record(e2e);
            c.model.record(model_ms);
            c.tool.record(tool_ms);
            if let Some(h) = human {
                c.human.record(h);
            }
        });
    }

    /// A request as read from the store: raised when first seen; its decisions, time to
    /// decision and expiry counted once it is final.
    pub fn add_request(&mut self, f: &RequestFact) {
        self.cursor.requests = self.cursor.requests.max(f.row);
        if self.settled_requests.contains_key(&f.id) {
            return;
        }
        let key = self.key(&f.agent_id, &f.agent_alias_id, None);
        let known = self.open.remove(&f.id).is_some();
        if !known {
            self.touch(f.raised_ms, key, |c| c.raised += 1);
        }
        if f.status.is_open() {
            self.open.insert(
                f.id.clone(),
                OpenRequest {
                    key,
                    expires_ms: f.expires_ms,
                },
            );
            return;
        }
        if self.overlap > 0 && f.row >= self.cursor.requests - self.overlap {
            self.settled_requests.insert(f.id.clone(), f.row);
        }
        if f.status == Status::Expired {
            self.touch(f.expires_ms, key, |c| {
                c.settled += 1;
                c.expired += 1;
            });
        } else if let Some(last) = f.decisions.iter().map(|d| d.at_ms).max() {
            let wait = last - f.raised_ms;
            self.touch(last, key, |c| {
                c.settled += 1;
                c.to_decision.record(wait);
            });
        }
        // Decisions recorded before the request expired still count as judgements.
        let stamp_tier = self.settings.rubber_stamp_tier;
        let stamp_ms = self.settings.rubber_stamp_ms;
        for d in &f.decisions {
            let stamp = (d.confirm
                && stamp_tier.is_some_and(|t| f.tier >= t)
                && d.dwell_ms.is_some_and(|w| w < stamp_ms))
            .then(|| RubberStamp {
                request: f.id.clone(),
                reviewer: d.reviewer.clone(),
                tier: f.tier,
                action: f.action.clone(),
                dwell_ms: d.dwell_ms.unwrap_or(0),
                at_ms: d.at_ms,
            });
            self.touch(d.at_ms, key, |c| {
                c.judged += 1;
                c.appropriate += u64::from(d.confirm);
                let a = c.actions.entry(f.action.clone()).or_default();
                a.0 += u64::from(d.confirm);
                a.1 += 1;
                let r = c.reviewers.entry(d.reviewer.clone()).or_default();
                r.decisions += 1;
                if let Some(w) = d.dwell_ms {
                    r.dwell.record(w);
                }
                if let Some(s) = &stamp {
                    c.rubber.push(s.clone());
                }
            });
        }
    }

    /// An engineer's mark on a step. A later mark by the same person on the same step replaces
    /// the earlier one; the same mark delivered again, or an older one, changes nothing.
    pub fn add_mark(&mut self, f: &MarkFact) {
        self.cursor.marks = self.cursor.marks.max(f.row);
        let key = self.key(&f.agent_id, &f.agent_alias_id, f.model.as_deref());
        let id = (f.request_id.clone(), f.step, f.who.clone());
        if let Some(old) = self.marks.get(&id).copied() {
            if f.at_ms < old.at_ms || (f.at_ms == old.at_ms && f.appropriate == old.appropriate) {
                return;
            }
            self.touch(old.at_ms, old.key, |c| {
                c.judged = c.judged.saturating_sub(1);
                c.appropriate = c.appropriate.saturating_sub(u64::from(old.appropriate));
            });
        }
        let appropriate = f.appropriate;
        self.touch(f.at_ms, key, |c| {
            c.judged += 1;
            c.appropriate += u64::from(appropriate);
        });
        self.marks.insert(
            id,
            MarkSeen {
                at_ms: f.at_ms,
                key,
                appropriate,
            },
        );
    }

    /// The agents, aliases and models seen, for the filter keys.
    pub fn dimensions(&self) -> Dimensions {
        let mut d = Dimensions::default();
        for k in &self.keys {
            if !d.agents.contains(&k.agent) {
                d.agents.push(k.agent.clone());
            }
            if !d.aliases.contains(&k.alias) {
                d.aliases.push(k.alias.clone());
            }
            if let Some(m) = &k.model {
                if !d.models.contains(m) {
                    d.models.push(m.clone());
                }
            }
        }
        d.agents.sort();
        d.aliases.sort();
        d.models.sort();
        d
    }

    /// The (agent, alias) pairs seen, sorted: what a publish gives its own dimensions.
    pub fn agent_aliases(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .keys
            .iter()
            .map(|k| (k.agent.clone(), k.alias.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The figures over `window` ending at `now_ms`, for the keys `filter` admits.
    #[allow(clippy::many_single_char_names)]
    pub fn snapshot(&self, window: Window, filter: &Filter, now_ms: i64) -> Snapshot {
        let width = window.bucket_ms();
        let start = window.start_ms(now_ms);
        let buckets = if width == MINUTE_MS {
            &self.minutes
        } else {
            &self.hours
        };
        // Requests carry no model, so a model filter leaves the human side out.
        let admitted: Vec<bool> = self.keys.iter().map(|k| filter.matches(k)).collect();
        let n = usize::try_from(window.buckets()).unwrap_or(0);
        let mut per_bucket: Vec<Cell> = vec![Cell::default(); n];
        let mut models: Vec<ModelTokens> = vec![ModelTokens::new(); n];
        for (at, cells) in buckets.range(start..=now_ms) {
            let i = usize::try_from((at - start) / width).unwrap_or(0);
            let (Some(slot), Some(m)) = (per_bucket.get_mut(i), models.get_mut(i)) else {
                continue;
            };
            for (key, cell) in cells {
                let k = *key as usize;
                if !admitted.get(k).copied().unwrap_or(false) {
                    continue;
                }
                slot.add(cell);
                if cell.invocations > 0 {
                    let e = m.entry(self.keys[k].model.clone()).or_default();
                    e.0 += cell.invocations;
                    e.1 += cell.tokens_in;
                    e.2 += cell.tokens_out;
                }
            }
        }
        let mut total = Cell::default();
        for c in &per_bucket {
            total.add(c);
        }
        // Queue depth now, and at the end of each bucket, worked back from now.
        let mut late_expiries = vec![0u64; n];
        let mut depth_now = 0u64;
        for o in self.open.values() {
            if !admitted.get(o.key as usize).copied().unwrap_or(false) {
                continue;
            }
            if o.expires_ms > now_ms {
                depth_now += 1;
            } else if o.expires_ms >= start {
                let i = usize::try_from((floor(o.expires_ms, width) - start) / width).unwrap_or(0);
                if let Some(s) = late_expiries.get_mut(i) {
                    *s += 1;
                }
            }
        }
        let mut depth = vec![None; n];
        let mut d = i128::from(depth_now);
        for i in (0..n).rev() {
            depth[i] = Some(u64::try_from(d.max(0)).unwrap_or(0));
            let c = &per_bucket[i];
            d = d - i128::from(c.raised) + i128::from(c.settled) + i128::from(late_expiries[i]);
        }
        Figures {
            settings: &self.settings,
            per_bucket: &per_bucket,
            models: &models,
            total: &total,
            depth: &depth,
            depth_now,
        }
        .snapshot(window, filter, now_ms, self.in_flight_count(filter))
    }

    fn in_flight_count(&self, filter: &Filter) -> u64 {
        self.in_flight
            .values()
            .filter(|k| {
                self.keys
                    .get(**k as usize)
                    .is_some_and(|k| filter.matches(k))
            })
            .count() as u64
    }
}

/// Model -> (invocations, input tokens, output tokens).
type ModelTokens = BTreeMap<Option<String>, (u64, u64, u64)>;

/// What a value measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// A fraction from 0 to 1.
    Ratio,
    Milliseconds,
    Count,
    Tokens,
    Usd,
}

/// One headline figure: its value over the window (None with the reason when there is no
/// data), its objective from the config and whether the value breaches it, and its value in
/// each bucket of the window, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub id: String,
    pub label: String,
    pub unit: Unit,
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<Objective>,
    pub breached: bool,
    pub trend: Vec<Option<f64>>,
}

/// One bar of the end-to-end latency histogram: samples above the previous bound up to this one
/// (None: above the last bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBar {
    pub up_to_ms: Option<u64>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFigures {
    /// None: calls whose trace named no model.
    pub model: Option<String>,
    pub invocations: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// None when the price table has no price for the model.
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionFigures {
    pub action: String,
    pub decisions: u64,
    pub confirms: u64,
    pub approval_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewerFigures {
    pub reviewer: String,
    pub decisions: u64,
    pub median_dwell_ms: Option<f64>,
}

/// Everything the metrics pane and `agentdeck metrics --json` show, and what a publisher sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub window: Window,
    pub now_ms: i64,
    /// The start of the oldest bucket in the window.
    pub start_ms: i64,
    pub bucket_ms: i64,
    pub filter: Filter,
    pub metrics: Vec<Metric>,
    pub latency_histogram: Vec<LatencyBar>,
    pub models: Vec<ModelFigures>,
    pub actions: Vec<ActionFigures>,
    pub reviewers: Vec<ReviewerFigures>,
    pub rubber_stamps: Vec<RubberStamp>,
}

impl Snapshot {
    pub fn metric(&self, id: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.id == id)
    }
}

/// Every metric id a snapshot carries (and an objective may name).
pub const METRIC_IDS: [&str; 27] = [
    "task_completion_rate",
    "action_accuracy",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "model_time_p50",
    "model_time_p95",
    "model_time_p99",
    "tool_time_p50",
    "tool_time_p95",
    "tool_time_p99",
    "human_wait_p50",
    "human_wait_p95",
    "human_wait_p99",
    "invocations",
    "tokens_in",
    "tokens_out",
    "tokens_in_per_invocation",
    "tokens_out_per_invocation",
    "cost",
    "queue_depth",
    "in_flight",
    "time_to_decision_p50",
    "time_to_decision_p95",
    "expired_undecided",
    "approval_rate",
    "rubber_stamps",
];

/// The bounds of the latency histogram's bars, in milliseconds.
pub const LATENCY_BOUNDS: [u64; 9] = [100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000];

#[allow(clippy::cast_precision_loss)]
fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

#[allow(clippy::cast_precision_loss)]
fn count(n: u64) -> f64 {
    n as f64
}

fn cost(prices: &BTreeMap<String, Price>, m: &ModelTokens) -> Result<f64, String> {
    let mut sum = 0.0;
    let mut unpriced = Vec::new();
    for (model, (_, tin, tout)) in m {
        match model.as_ref().and_then(|name| prices.get(name)) {
            Some(p) => {
                sum +=
                    count(*tin) / 1000.0 * p.input_per_1k + count(*tout) / 1000.0 * p.output_per_1k;
            }
            None => unpriced.push(
                model
                    .clone()
                    .unwrap_or_else(|| "(model unknown)".to_owned()),
            ),
        }
    }
    if unpriced.is_empty() {
        Ok(sum)
    } else {
        Err(format!("no price for {}", unpriced.join(", ")))
    }
}

struct Figures<'a> {
    settings: &'a Settings,
    per_bucket: &'a [Cell],
    models: &'a [ModelTokens],
    total: &'a Cell,
    depth: &'a [Option<u64>],
    depth_now: u64,
}

/// A latency part: id prefix, label, its histogram, why it may be empty.
type Part = (&'static str, &'static str, fn(&Cell) -> &Hist, &'static str);

/// How to read one figure out of a cell: its value, or why there is none.
type Read<'a> = Box<dyn Fn(&Cell) -> Result<f64, &'static str> + 'a>;

fn quantile_of(
    pick: fn(&Cell) -> &Hist,
    q: f64,
    why: &'static str,
) -> impl Fn(&Cell) -> Result<f64, &'static str> {
    move |c| pick(c).quantile(q).ok_or(why)
}

impl Figures<'_> {
    fn metric(&self, id: &str, label: &str, unit: Unit, read: &Read<'_>) -> Metric {
        let (value, missing) = match read(self.total) {
            Ok(v) => (Some(v), None),
            Err(why) => (None, Some(why.to_owned())),
        };
        self.finish(
            id,
            label,
            unit,
            value,
            missing,
            self.per_bucket.iter().map(|c| read(c).ok()).collect(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        id: &str,
        label: &str,
        unit: Unit,
        value: Option<f64>,
        missing: Option<String>,
        trend: Vec<Option<f64>>,
    ) -> Metric {
        let objective = self.settings.objectives.get(id).copied();
        Metric {
            id: id.to_owned(),
            label: label.to_owned(),
            unit,
            breached: matches!((objective, value), (Some(o), Some(v)) if o.breached(v)),
            value,
            missing,
            objective,
            trend,
        }
    }

    #[allow(clippy::too_many_lines)]
    fn snapshot(&self, window: Window, filter: &Filter, now_ms: i64, in_flight: u64) -> Snapshot {
        let t = self.total;
        let mut metrics = Vec::new();
        let mut push = |id: &str, label: &str, unit: Unit, read: Read<'_>| {
            metrics.push(self.metric(id, label, unit, &read));
        };
        push(
            "task_completion_rate",
            "task completion",
            Unit::Ratio,
            Box::new(|c: &Cell| ratio(c.completed, c.finished).ok_or("no finished invocations")),
        );
        push(
            "action_accuracy",
            "action accuracy",
            Unit::Ratio,
            Box::new(|c: &Cell| ratio(c.appropriate, c.judged).ok_or("no judged actions")),
        );
        let parts: [Part; 4] = [
            (
                "latency",
                "end to end",
                |c| &c.e2e,
                "no settled invocations",
            ),
            (
                "model_time",
                "model time",
                |c| &c.model,
                "no settled invocations",
            ),
            (
                "tool_time",
                "tool time",
                |c| &c.tool,
                "no settled invocations",
            ),
            (
                "human_wait",
                "human wait",
                |c| &c.human,
                "no call waited for a decision",
            ),
        ];
        for (id, label, pick, why) in parts {
            for (p, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
                push(
                    &format!("{id}_{p}"),
                    &format!("{label} {}", p.to_uppercase()),
                    Unit::Milliseconds,
                    Box::new(quantile_of(pick, q, why)),
                );
            }
        }
        push(
            "invocations",
            "invocations settled",
            Unit::Count,
            Box::new(|c: &Cell| Ok(count(c.invocations))),
        );
        push(
            "tokens_in",
            "tokens in",
            Unit::Tokens,
            Box::new(|c: &Cell| Ok(count(c.tokens_in))),
        );
        push(
            "tokens_out",
            "tokens out",
            Unit::Tokens,
            Box::new(|c: &Cell| Ok(count(c.tokens_out))),
        );
        push(
            "tokens_in_per_invocation",
            "tokens in per invocation",
            Unit::Tokens,
            Box::new(|c: &Cell| ratio(c.tokens_in, c.invocations).ok_or("no settled invocations")),
        );
        push(
            "tokens_out_per_invocation",
            "tokens out per invocation",
            Unit::Tokens,
            Box::new(|c: &Cell| ratio(c.tokens_out, c.invocations).ok_or("no settled invocations")),
        );
        let mut window_models = ModelTokens::new();
        for m in self.models {
            for (k, (n, i, o)) in m {
                let e = window_models.entry(k.clone()).or_default();
                e.0 += n;
                e.1 += i;
                e.2 += o;
            }
        }
        let (value, missing) = if window_models.is_empty() {
            (None, Some("no settled invocations".to_owned()))
        } else {
            match cost(&self.settings.prices, &window_models) {
                Ok(v) => (Some(v), None),
                Err(why) => (None, Some(why)),
            }
        };
        let trend = self
            .models
            .iter()
            .map(|m| {
                if m.is_empty() {
                    Some(0.0)
                } else {
                    cost(&self.settings.prices, m).ok()
                }
            })
            .collect();
        let cost_metric = self.finish("cost", "cost (USD)", Unit::Usd, value, missing, trend);
        metrics.push(cost_metric);
        let depth_metric = self.finish(
            "queue_depth",
            "queue depth",
            Unit::Count,
            Some(count(self.depth_now)),
            None,
            self.depth.iter().map(|d| d.map(count)).collect(),
        );
        metrics.push(depth_metric);
        let in_flight_metric = self.finish(
            "in_flight",
            "invocations in flight",
            Unit::Count,
            Some(count(in_flight)),
            None,
            Vec::new(),
        );
        metrics.push(in_flight_metric);
        let mut push = |id: &str, label: &str, unit: Unit, read: Read<'_>| {
            metrics.push(self.metric(id, label, unit, &read));
        };
        for (p, q) in [("p50", 0.5), ("p95", 0.95)] {
            push(
                &format!("time_to_decision_{p}"),
                &format!("time to decision {}", p.to_uppercase()),
                Unit::Milliseconds,
                Box::new(quantile_of(|c| &c.to_decision, q, "no decided requests")),
            );
        }
        push(
            "expired_undecided",
            "expired undecided",
            Unit::Count,
            Box::new(|c: &Cell| Ok(count(c.expired))),
        );
        push(
            "approval_rate",
            "approval rate",
            Unit::Ratio,
            Box::new(|c: &Cell| {
                let (yes, all) = c
                    .actions
                    .values()
                    .fold((0, 0), |(y, a), (cy, ca)| (y + cy, a + ca));
                ratio(yes, all).ok_or("no decisions")
            }),
        );
        push(
            "rubber_stamps",
            "possible rubber-stamps",
            Unit::Count,
            Box::new(|c: &Cell| Ok(count(c.rubber.len() as u64))),
        );

        let mut latency_histogram = Vec::new();
        let mut low = 0u64;
        for bound in LATENCY_BOUNDS.iter().copied().map(Some).chain([None]) {
            let n = t.e2e.0.as_ref().map_or(0, |h| {
                let hi = bound.unwrap_or(u64::MAX);
                h.iter_recorded()
                    .filter(|v| {
                        let x = v.value_iterated_to();
                        (low == 0 || x > low) && x <= hi
                    })
                    .map(|v| u64::from(v.count_at_value()))
                    .sum()
            });
            latency_histogram.push(LatencyBar {
                up_to_ms: bound,
                count: n,
            });
            low = bound.unwrap_or(u64::MAX);
        }
        let models = window_models
            .iter()
            .map(|(model, (n, i, o))| ModelFigures {
                model: model.clone(),
                invocations: *n,
                input_tokens: *i,
                output_tokens: *o,
                cost_usd: model
                    .as_ref()
                    .and_then(|m| self.settings.prices.get(m))
                    .map(|p| {
                        count(*i) / 1000.0 * p.input_per_1k + count(*o) / 1000.0 * p.output_per_1k
                    }),
            })
            .collect();
        let actions = t
            .actions
            .iter()
            .map(|(a, (yes, all))| ActionFigures {
                action: a.clone(),
                decisions: *all,
                confirms: *yes,
                approval_rate: ratio(*yes, *all).unwrap_or(0.0),
            })
            .collect();
        let reviewers = t
            .reviewers
            .iter()
            .map(|(r, c)| ReviewerFigures {
                reviewer: r.clone(),
                decisions: c.decisions,
                median_dwell_ms: c.dwell.quantile(0.5),
            })
            .collect();
        let mut rubber_stamps = t.rubber.clone();
        rubber_stamps.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(a.request.cmp(&b.request)));
        Snapshot {
            window,
            now_ms,
            start_ms: window.start_ms(now_ms),
            bucket_ms: window.bucket_ms(),
            filter: filter.clone(),
            metrics,
            latency_histogram,
            models,
            actions,
            reviewers,
            rubber_stamps,
        }
    }
}
