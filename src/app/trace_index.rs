//! The traces pane's in-memory index: sessions → invocations → steps, compact enough for a
//! million steps. Strings (agents, aliases, sessions, request ids) are interned once; steps are
//! columns (struct of arrays) of small integers, about 30 bytes a step; step bodies (prompts,
//! model output, raw JSON) stay in the store and are read when a step is opened. Filled
//! incrementally from `TraceStore::trace_index` pages. Pure data: no IO.

use std::collections::HashMap;

use crate::domain::step_kind::StepKinds;
use crate::store::run::{IndexCursor, IndexPage, InvocationRecord, Outcome};

/// No value in a `u32` column.
pub const NONE: u32 = u32::MAX;

/// Strings kept once, named by a `u32`.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    strings: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = u32::try_from(self.strings.len()).unwrap_or(NONE);
        self.strings.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    pub fn name(&self, id: u32) -> &str {
        self.strings.get(id as usize).map_or("", |s| s.as_ref())
    }

    fn heap_bytes(&self) -> usize {
        let text: usize = self.strings.iter().map(|s| s.len()).sum();
        // Each string is held twice (by position and in the map), plus the map's buckets.
        2 * text
            + self.strings.capacity() * size_of::<Box<str>>()
            + self.ids.capacity() * (size_of::<(Box<str>, u32)>() + 1)
    }
}

/// One agent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    pub agent: u32,
    pub alias: u32,
    pub session: u32,
    pub first_ms: i64,
    pub last_ms: i64,
    /// Its invocations, oldest first (positions in `TraceIndex::invocations`).
    pub invocations: Vec<u32>,
}

/// One invocation (InvokeAgent call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationEntry {
    pub request: u32,
    pub session: u32,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub outcome: Outcome,
    pub latency_ms: Option<i64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// The return-of-control invocationId this call answered (interned), for resumes.
    pub resumes: Option<u32>,
    /// Its steps by position: `steps[n - 1]` is step n (a position in the step columns).
    pub steps: Vec<u32>,
    /// The latest step end, in ms after the first step's start (the waterfall's width).
    pub span_ms: u32,
    /// The first step's start, ns since the epoch: the waterfall's origin.
    pub origin_ns: Option<i64>,
}

/// The steps, as columns: position `i` of each is step `i`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepColumns {
    pub invocation: Vec<u32>,
    pub number: Vec<u32>,
    pub kinds: Vec<u16>,
    pub depth: Vec<u8>,
    /// `NONE` when no duration is known.
    pub duration_ms: Vec<u32>,
    /// Start in ms after the invocation's origin; `NONE` when unknown.
    pub start_ms: Vec<u32>,
    pub tokens_in: Vec<u32>,
    pub tokens_out: Vec<u32>,
}

impl StepColumns {
    pub fn len(&self) -> usize {
        self.invocation.len()
    }

    pub fn is_empty(&self) -> bool {
        self.invocation.is_empty()
    }

    fn heap_bytes(&self) -> usize {
        self.invocation.capacity() * 4
            + self.number.capacity() * 4
            + self.kinds.capacity() * 2
            + self.depth.capacity()
            + self.duration_ms.capacity() * 4
            + self.start_ms.capacity() * 4
            + self.tokens_in.capacity() * 4
            + self.tokens_out.capacity() * 4
    }
}

/// What a session is doing, from its latest invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Running,
    WaitingForHuman,
    Finished,
    Failed,
}

impl SessionState {
    pub fn word(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::WaitingForHuman => "waiting",
            Self::Finished => "finished",
            Self::Failed => "failed",
        }
    }
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(NONE - 1)
}

/// The index.
#[derive(Debug, Clone, Default)]
pub struct TraceIndex {
    pub cursor: IndexCursor,
    pub names: Interner,
    pub sessions: Vec<SessionEntry>,
    session_of: HashMap<(u32, u32, u32), u32>,
    pub invocations: Vec<InvocationEntry>,
    invocation_of: HashMap<u32, u32>,
    pub steps: StepColumns,
    /// Sessions, most recently active first.
    pub recent: Vec<u32>,
    /// Pages applied (changes seen); a view compares it to notice growth.
    pub generation: u64,
}

impl TraceIndex {
    /// The request ids of invocations still running, for the next page's refresh.
    pub fn running(&self) -> Vec<String> {
        self.invocations
            .iter()
            .filter(|i| i.outcome == Outcome::Running)
            .map(|i| self.names.name(i.request).to_owned())
            .collect()
    }

    /// Folds one page in. Returns whether anything changed.
    pub fn apply(&mut self, page: &IndexPage) -> bool {
        self.cursor = page.cursor;
        if page.invocations.is_empty() && page.steps.is_empty() {
            return false;
        }
        let mut changed = !page.steps.is_empty();
        for inv in &page.invocations {
            changed |= self.upsert_invocation(inv);
        }
        if !changed {
            return false;
        }
        for s in &page.steps {
            let Some(inv) = self
                .names
                .get(&s.request_id)
                .and_then(|r| self.invocation_of.get(&r).copied())
            else {
                continue;
            };
            self.upsert_step(inv, s);
        }
        let sessions = &self.sessions;
        self.recent = (0..u32::try_from(sessions.len()).unwrap_or(NONE)).collect();
        self.recent.sort_by(|a, b| {
            let (x, y) = (&sessions[*a as usize], &sessions[*b as usize]);
            y.last_ms.cmp(&x.last_ms).then(a.cmp(b))
        });
        self.generation += 1;
        true
    }

    /// Adds or updates an invocation; returns whether anything changed.
    fn upsert_invocation(&mut self, r: &InvocationRecord) -> bool {
        let started = r.start.started_at.timestamp_millis();
        let ended = r.ended_at.map(|t| t.timestamp_millis());
        let request = self.names.intern(&r.start.request_id);
        let idx = if let Some(i) = self.invocation_of.get(&request) {
            *i
        } else {
            let key = (
                self.names.intern(&r.start.agent_id),
                self.names.intern(&r.start.agent_alias_id),
                self.names.intern(&r.start.session_id),
            );
            let session = if let Some(s) = self.session_of.get(&key) {
                *s
            } else {
                let s = u32::try_from(self.sessions.len()).unwrap_or(NONE);
                self.sessions.push(SessionEntry {
                    agent: key.0,
                    alias: key.1,
                    session: key.2,
                    first_ms: started,
                    last_ms: started,
                    invocations: Vec::new(),
                });
                self.session_of.insert(key, s);
                s
            };
            let i = u32::try_from(self.invocations.len()).unwrap_or(NONE);
            let resumes = r.start.resumes.as_deref().map(|s| self.names.intern(s));
            self.invocations.push(InvocationEntry {
                request,
                session,
                started_ms: started,
                ended_ms: None,
                outcome: Outcome::Running,
                latency_ms: None,
                input_tokens: 0,
                output_tokens: 0,
                resumes,
                steps: Vec::new(),
                span_ms: 0,
                origin_ns: None,
            });
            self.invocation_of.insert(request, i);
            let s = &mut self.sessions[session as usize];
            s.invocations.push(i);
            s.first_ms = s.first_ms.min(started);
            i
        };
        let inv = &mut self.invocations[idx as usize];
        let before = (
            inv.ended_ms,
            inv.outcome,
            inv.latency_ms,
            inv.input_tokens,
            inv.output_tokens,
        );
        let after = (
            ended,
            r.outcome,
            r.latency_ms,
            r.input_tokens,
            r.output_tokens,
        );
        if before == after {
            return false;
        }
        inv.ended_ms = ended;
        inv.outcome = r.outcome;
        inv.latency_ms = r.latency_ms;
        inv.input_tokens = r.input_tokens;
        inv.output_tokens = r.output_tokens;
        let s = &mut self.sessions[inv.session as usize];
        s.last_ms = s.last_ms.max(ended.unwrap_or(started)).max(started);
        true
    }

    fn upsert_step(&mut self, inv_idx: u32, s: &crate::store::run::IndexedStep) {
        let Ok(n) = usize::try_from(s.step) else {
            return;
        };
        if n == 0 {
            return;
        }
        let inv = &mut self.invocations[inv_idx as usize];
        if inv.origin_ns.is_none() {
            inv.origin_ns = s.start_ns;
        }
        let start_ms = match (s.start_ns, inv.origin_ns) {
            (Some(t), Some(o)) => clamp_u32((t - o) / 1_000_000),
            _ => NONE,
        };
        let duration = s.figures.duration_ms.map_or(NONE, clamp_u32);
        if start_ms != NONE {
            let end = u64::from(start_ms) + u64::from(if duration == NONE { 0 } else { duration });
            inv.span_ms = inv.span_ms.max(u32::try_from(end).unwrap_or(NONE - 1));
        } else if duration != NONE {
            inv.span_ms = inv.span_ms.max(duration);
        }
        let cols = &mut self.steps;
        let pos = if let Some(p) = inv.steps.get(n - 1).copied().filter(|p| *p != NONE) {
            p as usize
        } else {
            let p = cols.len();
            cols.invocation.push(inv_idx);
            cols.number.push(u32::try_from(n).unwrap_or(NONE));
            cols.kinds.push(0);
            cols.depth.push(0);
            cols.duration_ms.push(NONE);
            cols.start_ms.push(NONE);
            cols.tokens_in.push(0);
            cols.tokens_out.push(0);
            if inv.steps.len() < n {
                inv.steps.resize(n, NONE);
            }
            inv.steps[n - 1] = u32::try_from(p).unwrap_or(NONE);
            p
        };
        cols.kinds[pos] = s.kinds.0;
        cols.depth[pos] = s.depth;
        cols.duration_ms[pos] = duration;
        cols.start_ms[pos] = start_ms;
        cols.tokens_in[pos] = clamp_u32(s.figures.input_tokens);
        cols.tokens_out[pos] = clamp_u32(s.figures.output_tokens);
    }

    pub fn session_state(&self, s: &SessionEntry) -> SessionState {
        match s
            .invocations
            .last()
            .map(|i| self.invocations[*i as usize].outcome)
        {
            Some(Outcome::Running) | None => SessionState::Running,
            Some(Outcome::WaitingForHuman) => SessionState::WaitingForHuman,
            Some(Outcome::Finished) => SessionState::Finished,
            Some(Outcome::Failed | Outcome::Exception) => SessionState::Failed,
        }
    }

    /// Steps, tokens in, tokens out and summed latency of a session (O(its invocations)).
    pub fn session_totals(&self, s: &SessionEntry) -> (u64, i64, i64, i64) {
        s.invocations.iter().fold((0, 0, 0, 0), |acc, i| {
            let inv = &self.invocations[*i as usize];
            (
                acc.0 + inv.steps.len() as u64,
                acc.1 + inv.input_tokens,
                acc.2 + inv.output_tokens,
                acc.3 + inv.latency_ms.unwrap_or(0),
            )
        })
    }

    pub fn invocation_by_request(&self, request_id: &str) -> Option<u32> {
        self.names
            .get(request_id)
            .and_then(|r| self.invocation_of.get(&r).copied())
    }

    pub fn step_kinds(&self, pos: usize) -> StepKinds {
        StepKinds(self.steps.kinds.get(pos).copied().unwrap_or(0))
    }

    /// The position of step `n` (1-based) of an invocation.
    pub fn step_pos(&self, inv: u32, n: u64) -> Option<usize> {
        let n = usize::try_from(n).ok()?.checked_sub(1)?;
        self.invocations
            .get(inv as usize)?
            .steps
            .get(n)
            .copied()
            .filter(|p| *p != NONE)
            .map(|p| p as usize)
    }

    /// The most recently started invocation.
    pub fn latest_invocation(&self) -> Option<u32> {
        self.invocations
            .iter()
            .enumerate()
            .max_by_key(|(i, inv)| (inv.started_ms, *i))
            .and_then(|(i, _)| u32::try_from(i).ok())
    }

    /// Heap bytes the index holds (capacities, not lengths: what it really costs).
    pub fn heap_bytes(&self) -> usize {
        let sessions: usize = self
            .sessions
            .iter()
            .map(|s| s.invocations.capacity() * 4)
            .sum::<usize>()
            + self.sessions.capacity() * size_of::<SessionEntry>()
            + self.session_of.capacity() * (size_of::<((u32, u32, u32), u32)>() + 1);
        let invocations: usize = self
            .invocations
            .iter()
            .map(|i| i.steps.capacity() * 4)
            .sum::<usize>()
            + self.invocations.capacity() * size_of::<InvocationEntry>()
            + self.invocation_of.capacity() * (size_of::<(u32, u32)>() + 1);
        self.names.heap_bytes()
            + sessions
            + invocations
            + self.steps.heap_bytes()
            + self.recent.capacity() * 4
    }
}

/// Which steps to show across all sessions: every condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepFilter {
    pub agent: Option<String>,
    pub alias: Option<String>,
    pub session: Option<String>,
    pub kinds: StepKinds,
    pub failed: bool,
    pub waiting: bool,
    /// Free text, searched in the store (full text of every event).
    pub text: String,
}

impl StepFilter {
    /// Reads `agent:X alias:Y session:Z kind:K failed waiting free text`. Unknown kinds are an
    /// error naming the kinds there are.
    pub fn parse(line: &str) -> Result<Self, String> {
        let mut f = Self::default();
        let mut words = Vec::new();
        for w in line.split_whitespace() {
            if let Some(v) = w.strip_prefix("agent:") {
                f.agent = Some(v.to_owned());
            } else if let Some(v) = w.strip_prefix("alias:") {
                f.alias = Some(v.to_owned());
            } else if let Some(v) = w.strip_prefix("session:") {
                f.session = Some(v.to_owned());
            } else if let Some(v) = w.strip_prefix("kind:") {
                for k in v.split(',').filter(|k| !k.is_empty()) {
                    let kind = StepKinds::parse(k).ok_or_else(|| {
                        let names: Vec<&str> = StepKinds::NAMED.iter().map(|(_, n)| *n).collect();
                        format!("unknown step kind {k:?}; kinds are {}", names.join(", "))
                    })?;
                    f.kinds = f.kinds.with(kind);
                }
            } else if w == "failed" {
                f.failed = true;
            } else if w == "waiting" {
                f.waiting = true;
            } else {
                words.push(w);
            }
        }
        f.text = words.join(" ");
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the invocation-level conditions hold (agent, alias, session, waiting).
    fn invocation_matches(&self, index: &TraceIndex, inv: &InvocationEntry) -> bool {
        let s = &index.sessions[inv.session as usize];
        let has = |want: &Option<String>, id: u32| {
            want.as_deref()
                .is_none_or(|w| index.names.name(id).contains(w))
        };
        has(&self.agent, s.agent)
            && has(&self.alias, s.alias)
            && has(&self.session, s.session)
            && (!self.waiting || inv.outcome == Outcome::WaitingForHuman)
    }

    /// Whether one step passes the step-level conditions (kinds; failed: a failure trace, or
    /// the last step of an invocation that failed or raised an exception).
    fn step_matches(&self, index: &TraceIndex, inv: &InvocationEntry, pos: u32) -> bool {
        let kinds = index.step_kinds(pos as usize);
        let kind_ok = self.kinds.0 == 0 || kinds.0 & self.kinds.0 != 0;
        let failed_ok = !self.failed
            || kinds.contains(StepKinds::FAILURE)
            || (matches!(inv.outcome, Outcome::Failed | Outcome::Exception)
                && inv.steps.last() == Some(&pos));
        kind_ok && failed_ok
    }

    /// The positions of the steps that pass, in invocation then step order. `hits` are the
    /// steps the free text found (positions), when there is free text.
    pub fn apply(&self, index: &TraceIndex, hits: Option<&[u32]>) -> Vec<u32> {
        if let Some(hits) = hits {
            return hits
                .iter()
                .copied()
                .filter(|pos| {
                    index
                        .steps
                        .invocation
                        .get(*pos as usize)
                        .map(|i| &index.invocations[*i as usize])
                        .is_some_and(|inv| {
                            self.invocation_matches(index, inv)
                                && self.step_matches(index, inv, *pos)
                        })
                })
                .collect();
        }
        let mut out = Vec::new();
        for inv in &index.invocations {
            if !self.invocation_matches(index, inv) {
                continue;
            }
            out.extend(
                inv.steps
                    .iter()
                    .copied()
                    .filter(|p| *p != NONE && self.step_matches(index, inv, *p)),
            );
        }
        out
    }
}
