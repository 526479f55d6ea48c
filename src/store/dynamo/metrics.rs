//! `MetricsStore` on the DynamoDB table: every read is a Query (or a GetItem by key), never a
//! Scan, and a refresh reads what is new, not the history.
//!
//! Items the metrics read (see README "Team mode"):
//! - invocation `INV#<requestId>` / `I`: on the `queue` index as `INVOCATIONS` /
//!   `<startedMs>#<requestId>`; its projected `row` carries, beside the recent-turn summary, the
//!   metrics part `m` (end, whether it answered, model, model time, tool time)
//! - link `INV#<requestId>` / `L`: the request a return of control raised (`request`), put by
//!   the submit's transaction, so a waiting call finds its request, decisions and resume
//! - settled request `REQ#<id>` / `M`: written by the transaction that makes a request final
//!   (the last decision, or the expiry), on the index as `SETTLED` / `<settledMs>#<id>`, with the
//!   whole request fact (agent, alias, action, tier, raised, expires, status, every decision)
//!   as `row`
//! - open requests: the `OPEN` queue partition (its projected `row` and `status`)
//! - marks `INV#<requestId>` / `M#<atMs>#<nonce>`: on the index as `MARKS` / `<atMs>#<nonce>`
//!   with the mark's fact (and its invocation's agent, alias and model) as `row`
//!
//! The cursor: DynamoDB has no row order, so a fact's `row` is its time on the index (start of
//! an invocation, settling of a request, time of a mark) and the engine's cursor is, per kind,
//! the newest such time delivered: a watermark. Each read takes the index entries from the
//! watermark minus `SETTLE_MS` up to now (entries stamped in the future wait for their time), so
//! an entry that lands on the index a little late (the index is eventually consistent; writers'
//! clocks differ a little) is still read; the engine remembers the ids it settled within that
//! reach and counts a fact delivered twice once. A first read starts `LOOKBACK_MS` back, as far
//! as the longest window reaches. Calls in flight and requests still open are re-read by id
//! until they settle: the open ones with one Query of the `OPEN` partition, the rest by key.
//!
//! What this does not see: an entry that lands more than `SETTLE_MS` behind the watermark (a
//! writer whose clock is that far behind, an import of old traces) is read by the next cold
//! read (`agentdeck metrics`, a console start), not by a running console; requests decided
//! and marks made before these items existed are not on the index.

use std::collections::HashSet;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::runner::{Counters, INVOCATIONS, InvDoc, OUTBOX, counters, inv_pk, ttl_value};
use super::{DynamoStore, Item, QUEUE_INDEX, TTL_ATTRIBUTE, corrupt, get_s, key, req_pk, s};
use crate::domain::approval::ApprovalRequest;
use crate::domain::decision::{Decision, Verdict};
use crate::domain::metrics::{
    CallEnd, Cursor, DecisionFact, HOUR_MS, InvocationFact, MarkFact, RequestFact, TaskEnd,
};
use crate::domain::policy::RiskTier;
use crate::domain::status::Status;
use crate::store::metrics::{FactBatch, MetricsStore, end_to_end, handoff};
use crate::store::{ActionMark, Outcome, QueueRow, RecentInvocation, StoreError};

/// The index partitions the metrics add.
pub(super) const MARKS: &str = "MARKS";
pub(super) const SETTLED: &str = "SETTLED";
const OPEN: &str = "OPEN";
/// How far behind the watermark each read starts (as the trace index's settle window).
pub const SETTLE_MS: i64 = 10_000;
/// How far back a first read goes: the 7-day window and the hour the engine keeps beyond it,
/// and an hour more.
pub const LOOKBACK_MS: i64 = 170 * HOUR_MS;

/// The metrics part of an invocation's index row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RowFacts {
    ended_ms: Option<i64>,
    /// Ended with a final response or answer text.
    answered: bool,
    model: Option<String>,
    model_ms: i64,
    tool_ms: i64,
}

impl RowFacts {
    pub(super) fn of(doc: &InvDoc, c: &Counters) -> Self {
        Self {
            ended_ms: doc.ended_ms,
            answered: doc.final_response.is_some() || c.chunks > 0,
            model: doc.model.clone(),
            model_ms: doc.model_ms,
            tool_ms: doc.tool_ms,
        }
    }
}

/// An invocation's `row` on the index: the recent-turn summary and (from this version on) the
/// metrics part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct IndexRow {
    #[serde(flatten)]
    pub(super) recent: RecentInvocation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) m: Option<RowFacts>,
}

/// A mark's fact, as its index `row`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MarkDoc {
    request_id: String,
    step: u64,
    who: String,
    at_ms: i64,
    appropriate: bool,
    agent_id: String,
    agent_alias_id: String,
    model: Option<String>,
}

impl MarkDoc {
    pub(super) fn of(m: &ActionMark, inv: &InvDoc) -> Self {
        Self {
            request_id: m.request_id.clone(),
            step: m.step,
            who: m.who.clone(),
            at_ms: m.at.timestamp_millis(),
            appropriate: m.appropriate,
            agent_id: inv.agent_id.clone(),
            agent_alias_id: inv.agent_alias_id.clone(),
            model: inv.model.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DecisionDoc {
    reviewer: String,
    at_ms: i64,
    dwell_ms: Option<i64>,
    confirm: bool,
}

impl DecisionDoc {
    fn of(d: &Decision) -> Self {
        Self {
            reviewer: d.reviewer.clone(),
            at_ms: d.decided_at.timestamp_millis(),
            dwell_ms: d.dwell_ms.map(|w| i64::try_from(w).unwrap_or(i64::MAX)),
            confirm: d.verdict == Verdict::Confirm,
        }
    }

    fn fact(&self) -> DecisionFact {
        DecisionFact {
            reviewer: self.reviewer.clone(),
            at_ms: self.at_ms,
            dwell_ms: self.dwell_ms,
            confirm: self.confirm,
        }
    }
}

/// A settled request's fact, as the `row` of its `M` item.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SettledDoc {
    id: String,
    agent_id: String,
    agent_alias_id: String,
    action: String,
    tier: RiskTier,
    raised_ms: i64,
    expires_ms: i64,
    status: Status,
    settled_ms: i64,
    decisions: Vec<DecisionDoc>,
}

impl SettledDoc {
    fn fact(&self) -> RequestFact {
        RequestFact {
            row: self.settled_ms,
            id: self.id.clone(),
            agent_id: self.agent_id.clone(),
            agent_alias_id: self.agent_alias_id.clone(),
            action: self.action.clone(),
            tier: self.tier,
            raised_ms: self.raised_ms,
            expires_ms: self.expires_ms,
            status: self.status,
            decisions: self.decisions.iter().map(DecisionDoc::fact).collect(),
        }
    }
}

/// The `M` item the transaction that makes `request` final (`status`) puts beside it.
pub(super) fn settled_item<'a>(
    request: &ApprovalRequest,
    status: Status,
    decisions: impl Iterator<Item = &'a Decision>,
    settled_ms: i64,
) -> Result<Item, StoreError> {
    let id = request.id.as_str();
    let row = QueueRow::of(request, status, 0);
    let doc = SettledDoc {
        id: id.to_owned(),
        agent_id: row.agent_id,
        agent_alias_id: row.agent_alias_id,
        action: row.action,
        tier: row.tier,
        raised_ms: request.raised_at.timestamp_millis(),
        expires_ms: request.expires_at.timestamp_millis(),
        status,
        settled_ms,
        decisions: decisions.map(DecisionDoc::of).collect(),
    };
    let json = serde_json::to_string(&doc)
        .map_err(|e| StoreError::Corrupt(format!("request {id}: its metrics fact: {e}")))?;
    let mut item = key(req_pk(id), "M");
    item.insert("row".into(), s(json));
    item.insert("qpk".into(), s(SETTLED));
    item.insert("qsk".into(), s(format!("{settled_ms:013}#{id}")));
    Ok(item)
}

/// The `L` item naming the request a return of control raised.
pub(super) fn raised_link(invocation: &str, request_id: &str) -> Item {
    let mut item = key(inv_pk(invocation), "L");
    item.insert("request".into(), s(request_id));
    item.insert(TTL_ATTRIBUTE.into(), ttl_value(Utc::now()));
    item
}

/// What a return of control raised: its request's status, its resume's outbox state and its
/// last decision's time (all None when no request is linked).
type Raised = (Option<String>, Option<String>, Option<i64>);

/// What an invocation's fact is made of, from its index row or its item.
struct Turn {
    request_id: String,
    agent_id: String,
    agent_alias_id: String,
    started_ms: i64,
    outcome: String,
    latency_ms: Option<i64>,
    input_tokens: i64,
    output_tokens: i64,
    m: RowFacts,
}

fn ms_key(qsk: &str) -> Option<(i64, &str)> {
    let (ms, rest) = qsk.split_once('#')?;
    Some((ms.parse().ok()?, rest))
}

fn parse<T: for<'de> Deserialize<'de>>(item: &Item, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(get_s(item, "row").unwrap_or_default())
        .map_err(|e| corrupt(what, &format!("its metrics fact does not parse: {e}")))
}

impl DynamoStore {
    /// Entries of index partition `qpk` with `qsk` in `[from, to]` (all when None), oldest
    /// first, at most `limit`; and whether more were left.
    fn index_entries(
        &self,
        doing: &str,
        qpk: &str,
        range: Option<(&str, &str)>,
        limit: Option<usize>,
    ) -> Result<(Vec<Item>, bool), StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let (client, table) = (self.client.clone(), self.table.clone());
            let (qpk, after) = (qpk.to_owned(), start);
            let range = range.map(|(a, b)| (a.to_owned(), b.to_owned()));
            // One more than asked, to know whether there are more.
            let want = limit.map(|l| i32::try_from(l + 1 - out.len().min(l)).unwrap_or(i32::MAX));
            let page = self.call(doing, move || {
                let q = client
                    .query()
                    .table_name(&table)
                    .index_name(QUEUE_INDEX)
                    .expression_attribute_values(":q", s(&qpk))
                    .set_limit(want)
                    .set_exclusive_start_key(after.clone());
                match &range {
                    Some((a, b)) => q
                        .key_condition_expression("qpk = :q AND qsk BETWEEN :a AND :b")
                        .expression_attribute_values(":a", s(a))
                        .expression_attribute_values(":b", s(b)),
                    None => q.key_condition_expression("qpk = :q"),
                }
                .send()
            })?;
            out.extend(page.items().iter().cloned());
            if let Some(l) = limit
                && out.len() > l
            {
                out.truncate(l);
                return Ok((out, true));
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok((out, false)),
            }
        }
    }

    /// A request's metrics fact and request item (its status, decisions and queue row; never
    /// its body), strongly consistent.
    fn request_items(&self, id: &str) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let (client, table, pk, after) =
                (self.client.clone(), self.table.clone(), req_pk(id), start);
            let page = self.call(&format!("reading request {id} for metrics"), move || {
                client
                    .query()
                    .table_name(&table)
                    .consistent_read(true)
                    .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
                    .projection_expression("sk, #st, #row, decs")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_names("#row", "row")
                    .expression_attribute_values(":pk", s(&pk))
                    .expression_attribute_values(":a", s("M"))
                    .expression_attribute_values(":b", s("R"))
                    .set_exclusive_start_key(after.clone())
                    .send()
            })?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// A request's fact read by id: its `M` item once settled, else its request item and
    /// decisions. None when the store no longer holds it.
    fn request_fact(&self, id: &str) -> Result<Option<RequestFact>, StoreError> {
        let what = format!("request {id}");
        let items = self.request_items(id)?;
        let sk = |i: &Item| get_s(i, "sk").unwrap_or_default().to_owned();
        if let Some(m) = items.iter().find(|i| sk(i) == "M") {
            return Ok(Some(parse::<SettledDoc>(m, &what)?.fact()));
        }
        let Some(r) = items.iter().find(|i| sk(i) == "R") else {
            return Ok(None);
        };
        let mut fact = open_fact(r, &what)?;
        // The decisions are kept on the request item (its `decs` list).
        for (_, d) in super::item_state(r, &what)?.decisions {
            fact.decisions.push(DecisionDoc::of(&d).fact());
        }
        Ok(Some(fact))
    }

    /// The request a return of control raised, its status, its resume's outbox state and its
    /// last decision's time.
    fn handoff_of(&self, request_id: &str) -> Result<Raised, StoreError> {
        let Some(link) = self.get_item("reading what a call raised", &inv_pk(request_id), "L")?
        else {
            return Ok((None, None, None));
        };
        let Some(id) = get_s(&link, "request") else {
            return Ok((None, None, None));
        };
        let Some(fact) = self.request_fact(id)? else {
            return Ok((None, None, None));
        };
        let decided = fact.decisions.iter().map(|d| d.at_ms).max();
        let outbox = if fact.status.is_final() && fact.status != Status::Expired {
            self.get_item("reading a resume for metrics", OUTBOX, id)?
                .and_then(|o| get_s(&o, "state").map(str::to_owned))
        } else {
            None
        };
        Ok((Some(fact.status.as_str().to_owned()), outbox, decided))
    }

    /// An invocation's fact from what its row or item says (looking up its request when it
    /// returned control).
    fn invocation_fact(&self, t: Turn) -> Result<InvocationFact, StoreError> {
        let what = format!("invocation {}", t.request_id);
        let outcome = Outcome::parse(&t.outcome)
            .ok_or_else(|| corrupt(&what, &format!("unknown outcome {:?}", t.outcome)))?;
        let call = match outcome {
            Outcome::Running => CallEnd::Running,
            Outcome::Finished if t.m.answered => CallEnd::Answered,
            Outcome::Finished | Outcome::Failed | Outcome::Exception => CallEnd::Failed,
            Outcome::WaitingForHuman => CallEnd::ReturnedControl,
        };
        let (status, outbox, decided) = if call == CallEnd::ReturnedControl {
            self.handoff_of(&t.request_id)?
        } else {
            (None, None, None)
        };
        let ended = t.m.ended_ms;
        let human_ms = match (call, ended, decided) {
            (CallEnd::ReturnedControl, Some(e), Some(d)) => Some((d - e).max(0)),
            _ => None,
        };
        Ok(InvocationFact {
            row: t.started_ms,
            agent_id: t.agent_id,
            agent_alias_id: t.agent_alias_id,
            model: t.m.model,
            ended_ms: ended,
            task: TaskEnd::of(call, handoff(status.as_deref(), outbox.as_deref())),
            latency_ms: end_to_end(t.started_ms, ended, t.latency_ms),
            model_ms: t.m.model_ms,
            tool_ms: t.m.tool_ms,
            human_ms,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            request_id: t.request_id,
        })
    }

    /// An invocation's fact read from its item. None when it is gone (expired by TTL).
    fn invocation_by_id(&self, request_id: &str) -> Result<Option<InvocationFact>, StoreError> {
        let Some(item) = self.invocation_item(request_id)? else {
            return Ok(None);
        };
        let what = format!("invocation {request_id}");
        let doc: InvDoc = serde_json::from_str(get_s(&item, "doc").unwrap_or_default())
            .map_err(|e| corrupt(&what, &format!("its document does not parse: {e}")))?;
        let c = counters(&item);
        let turn = Turn {
            request_id: request_id.to_owned(),
            m: RowFacts::of(&doc, &c),
            agent_id: doc.agent_id,
            agent_alias_id: doc.agent_alias_id,
            started_ms: doc.started_ms,
            outcome: doc.outcome,
            latency_ms: doc.latency_ms,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
        };
        self.invocation_fact(turn).map(Some)
    }

    /// An invocation's fact from its index entry (its item when the row predates the metrics
    /// part).
    fn invocation_from_index(&self, entry: &Item) -> Result<Option<InvocationFact>, StoreError> {
        let qsk = get_s(entry, "qsk").unwrap_or_default();
        let Some((_, request_id)) = ms_key(qsk) else {
            return Err(corrupt("the trace index", &format!("bad entry {qsk:?}")));
        };
        let row: IndexRow = parse(entry, &format!("invocation {request_id}"))?;
        let Some(m) = row.m else {
            return self.invocation_by_id(request_id);
        };
        let r = row.recent;
        let turn = Turn {
            request_id: r.request_id,
            agent_id: r.agent_id,
            agent_alias_id: r.agent_alias_id,
            started_ms: r.started_at.timestamp_millis(),
            outcome: r.outcome,
            latency_ms: r.latency_ms.map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
            input_tokens: i64::try_from(r.input_tokens).unwrap_or(i64::MAX),
            output_tokens: i64::try_from(r.output_tokens).unwrap_or(i64::MAX),
            m,
        };
        self.invocation_fact(turn).map(Some)
    }

    /// The open requests, from the `OPEN` queue partition.
    fn open_requests(&self) -> Result<Vec<RequestFact>, StoreError> {
        let (items, _) = self.index_entries("reading the open requests", OPEN, None, None)?;
        items
            .iter()
            .map(|i| open_fact(i, "an open request"))
            .collect()
    }
}

/// A request's fact from its request item (or its queue entry): its queue row and status, no
/// decisions yet. Its row is 0: open requests do not move the watermark.
fn open_fact(item: &Item, what: &str) -> Result<RequestFact, StoreError> {
    let row: QueueRow = parse(item, what)?;
    let status = get_s(item, "status").unwrap_or_default();
    let status = Status::parse(status)
        .ok_or_else(|| corrupt(what, &format!("unknown status {status:?}")))?;
    Ok(RequestFact {
        row: 0,
        id: row.id.0,
        agent_id: row.agent_id,
        agent_alias_id: row.agent_alias_id,
        action: row.action,
        tier: row.tier,
        raised_ms: row.raised_at.timestamp_millis(),
        expires_ms: row.expires_at.timestamp_millis(),
        status,
        decisions: Vec::new(),
    })
}

/// Where a read of one kind starts and ends: from the watermark less the settle window (or
/// the lookback on a first read) up to now.
fn range(watermark: i64, now_ms: i64) -> (String, String) {
    let from = if watermark <= 0 {
        now_ms - LOOKBACK_MS
    } else {
        watermark - SETTLE_MS
    };
    // `<ms>#...` sorts after `<ms>` and before `<ms + 1>`.
    (
        format!("{:013}", from.max(0)),
        format!("{:013}", now_ms + 1),
    )
}

impl MetricsStore for DynamoStore {
    fn facts_after(&self, after: Cursor, page: usize) -> Result<FactBatch, StoreError> {
        let now = Utc::now().timestamp_millis();
        let mut batch = FactBatch::default();
        // The settle window holds far fewer entries than a page (one index partition takes
        // about 1,000 writes a second), so each full page moves the watermark on.
        let (a, b) = range(after.invocations, now);
        let (entries, more_i) = self.index_entries(
            "reading invocations for metrics",
            INVOCATIONS,
            Some((&a, &b)),
            Some(page),
        )?;
        for e in &entries {
            batch.invocations.extend(self.invocation_from_index(e)?);
        }
        batch.requests = self.open_requests()?;
        let (a, b) = range(after.requests, now);
        let (entries, more_r) = self.index_entries(
            "reading settled requests for metrics",
            SETTLED,
            Some((&a, &b)),
            Some(page),
        )?;
        for e in &entries {
            let doc: SettledDoc = parse(e, "a settled request")?;
            batch.requests.push(doc.fact());
        }
        let (a, b) = range(after.marks, now);
        let (entries, more_m) = self.index_entries(
            "reading marks for metrics",
            MARKS,
            Some((&a, &b)),
            Some(page),
        )?;
        for e in &entries {
            let d: MarkDoc = parse(e, "an action mark")?;
            batch.marks.push(MarkFact {
                row: d.at_ms,
                request_id: d.request_id,
                step: d.step,
                who: d.who,
                at_ms: d.at_ms,
                appropriate: d.appropriate,
                agent_id: d.agent_id,
                agent_alias_id: d.agent_alias_id,
                model: d.model,
            });
        }
        batch.more = more_i || more_r || more_m;
        Ok(batch)
    }

    fn facts_at(
        &self,
        invocations: &[String],
        requests: &[String],
    ) -> Result<FactBatch, StoreError> {
        let mut batch = FactBatch::default();
        for id in invocations {
            batch.invocations.extend(self.invocation_by_id(id)?);
        }
        if !requests.is_empty() {
            // Those still open in one Query; the others (settled since) by key.
            let open = self.open_requests()?;
            let still: HashSet<&str> = open.iter().map(|r| r.id.as_str()).collect();
            let gone: Vec<&String> = requests
                .iter()
                .filter(|id| !still.contains(id.as_str()))
                .collect();
            for id in gone {
                batch.requests.extend(self.request_fact(id)?);
            }
            batch.requests.extend(open);
        }
        Ok(batch)
    }

    fn overlap(&self) -> i64 {
        SETTLE_MS
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_run_from_the_settle_window_or_the_lookback_to_now() {
        let now = 1_700_000_000_000;
        assert_eq!(
            range(0, now),
            (
                format!("{:013}", now - LOOKBACK_MS),
                format!("{:013}", now + 1)
            )
        );
        let (a, b) = range(now - 60_000, now);
        assert_eq!(a, format!("{:013}", now - 60_000 - SETTLE_MS));
        // An entry stamped now is read; one stamped a millisecond later waits.
        let at_now = format!("{now:013}#x");
        let later = format!("{:013}#x", now + 1);
        assert!(at_now.as_str() >= a.as_str() && at_now.as_str() <= b.as_str());
        assert!(later.as_str() > b.as_str());
    }

    #[test]
    fn index_rows_without_the_metrics_part_still_parse() {
        let old = r#"{"request_id":"r1","agent_id":"A","agent_alias_id":"B","session_id":"s",
            "started_at":"2026-01-01T00:00:00Z","outcome":"finished","latency_ms":5,"steps":1,
            "input_tokens":1,"output_tokens":2,"input_text":null,"resumes":null}"#;
        let row: IndexRow = serde_json::from_str(old).unwrap();
        assert!(row.m.is_none());
        assert_eq!(row.recent.request_id, "r1");
        // And a new row still reads as the recent-turn summary.
        let new = serde_json::to_string(&IndexRow {
            m: Some(RowFacts {
                ended_ms: Some(9),
                answered: true,
                model: Some("m".into()),
                model_ms: 3,
                tool_ms: 4,
            }),
            recent: row.recent,
        })
        .unwrap();
        let recent: RecentInvocation = serde_json::from_str(&new).unwrap();
        assert_eq!(recent.latency_ms, Some(5));
        let back: IndexRow = serde_json::from_str(&new).unwrap();
        assert_eq!(back.m.unwrap().tool_ms, 4);
    }
}
