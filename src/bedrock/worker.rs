//! The outbox worker: sends each decided return of control back to its agent exactly once.
//!
//! How exactly-once holds, step by step, for one outbox row:
//! 1. `decide` wrote the row (state `pending`) in the decision's own transaction: no decision
//!    without its resume, no resume without its decision.
//! 2. The worker leases the row (IMMEDIATE transaction; a second worker sees the lease and skips
//!    it until it expires). Every later write names the lease owner and fails if the lease was
//!    lost, so a worker that stalled past its lease cannot act on the row.
//! 3. The results are built once (the executor runs here) and kept on the row before any send;
//!    a retry sends the kept results and never runs the executor again.
//! 4. The row is marked `sent` (one more attempt) before the request leaves. A crash before this
//!    point leaves it `pending`: the next start sends it, once.
//! 5. HTTP 200 from InvokeAgent means Bedrock took the resume: the row is `acked` at once, then
//!    the continuation's stream is recorded like any turn.
//! 6. If the outcome of a send is unknown (crash or dropped connection after step 4), the next
//!    attempt sends the same invocationId again. Bedrock accepts an invocationId once, so a
//!    retry of a row that was already `sent` and gets a ValidationException or
//!    ConflictException ("already used") counts as acked: the first send went through. That
//!    error on a first attempt is a real refusal and fails the row.
//!
//! Executors are still at-least-once in one window: a crash between the executor's return and
//! step 3's write runs it again on restart. Each call carries `invocationId` + `inputIndex` so
//! an executor can make itself idempotent.

use std::time::Duration;

use aws_sdk_bedrockagentruntime::config::retry::RetryConfig;
use aws_sdk_bedrockagentruntime::types as sdk;
use chrono::Utc;

use super::runner::{
    Recorder, RunnerStore, Turn, local_request_id, record_failed_call, record_stream,
};
use super::{
    BedrockRunner, CRASH_BEFORE_RESUME_ENV, InvocationSummary, LiveEvent, RunnerError, SendState,
    SubmitSettings, classify, wire,
};
use crate::domain::approval::ApprovalId;
use crate::domain::resume::{Executor, InvocationResult, build_results};
use crate::store::{OutboxRow, OutboxState, StoreError};

/// What happened to one outbox row.
#[derive(Debug)]
pub enum ResumeOutcome {
    /// Bedrock took the resume; the continuation (if its stream could be read) is recorded.
    Acked {
        continuation: Result<InvocationSummary, String>,
    },
    /// A retry was refused as already used: an earlier send went through.
    AckedEarlier { note: String },
    /// Failed for now; due again at the time given.
    RetryLater {
        error: String,
        retry_at: chrono::DateTime<Utc>,
    },
    /// Given up for good.
    Failed { error: String },
    /// Another worker took the row over.
    LeaseLost,
}

/// Every row the worker touched, in order.
#[derive(Debug, Default)]
pub struct ResumeReport {
    pub items: Vec<(ApprovalId, ResumeOutcome)>,
}

/// Sends pending resumes from the outbox.
pub struct ResumeWorker<'a> {
    pub runner: &'a BedrockRunner,
    pub store: &'a dyn RunnerStore,
    pub executor: &'a dyn Executor,
    pub submit: &'a SubmitSettings<'a>,
    /// Lease owner name; unique per worker.
    pub owner: String,
    /// How long a leased row stays ours. It must cover building the results and the call up to
    /// Bedrock's first byte; a row whose worker died is picked up again after this.
    pub lease: Duration,
    /// Attempts before a row is failed for good.
    pub max_attempts: u32,
}

impl std::fmt::Debug for ResumeWorker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeWorker")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// A lease owner name unique to this process and call.
pub fn worker_name() -> String {
    format!("pid{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// At most this long between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Rows leased per round.
const LEASE_BATCH: usize = 8;

fn backoff(attempts: u32) -> chrono::Duration {
    let secs = 1_u64
        .checked_shl(attempts.min(16))
        .unwrap_or(u64::MAX)
        .min(MAX_BACKOFF.as_secs());
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(300))
}

impl ResumeWorker<'_> {
    /// Sends every due resume, round by round, until none is due.
    pub async fn resume_pending(
        &self,
        observer: &mut dyn FnMut(&LiveEvent<'_>),
    ) -> Result<ResumeReport, RunnerError> {
        let mut report = ResumeReport::default();
        loop {
            let rows = self
                .store
                .lease_outbox(&self.owner, Utc::now(), self.lease, LEASE_BATCH)?;
            if rows.is_empty() {
                return Ok(report);
            }
            for row in rows {
                let id = row.request.clone();
                let outcome = match self.resume_one(row, observer).await {
                    Err(RunnerError::Store(StoreError::LeaseLost(_))) => ResumeOutcome::LeaseLost,
                    other => other?,
                };
                report.items.push((id, outcome));
            }
        }
    }

    /// Sends one leased row.
    pub async fn resume_one(
        &self,
        row: OutboxRow,
        observer: &mut dyn FnMut(&LiveEvent<'_>),
    ) -> Result<ResumeOutcome, RunnerError> {
        let id = &row.request;
        let plan = &row.plan;
        let results: Vec<InvocationResult> = if let Some(r) = &row.results {
            r.clone()
        } else {
            let built = build_results(plan, self.executor);
            self.store
                .outbox_save_results(id, &self.owner, &built, Utc::now())?;
            built
        };
        let members = match results
            .iter()
            .map(wire::result_member)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(m) => m,
            Err(e) => {
                let error = e.to_string();
                self.store
                    .outbox_mark_failed(id, &self.owner, Utc::now(), &error)?;
                return Ok(ResumeOutcome::Failed { error });
            }
        };
        if std::env::var_os(CRASH_BEFORE_RESUME_ENV).is_some_and(|v| v == "1") {
            // Test hook (documented in the module above): die as a crash would, with the
            // results kept and nothing sent.
            std::process::abort();
        }
        let retry = row.state == OutboxState::Sent;
        self.store.outbox_mark_sent(id, &self.owner, Utc::now())?;
        let started_at = Utc::now();
        let state = sdk::SessionState::builder()
            .invocation_id(&plan.invocation_id)
            .set_return_control_invocation_results(Some(members))
            .build();
        // No SDK retries: a retry after a dropped connection is this outbox's decision.
        let sent = self
            .runner
            .client()
            .invoke_agent()
            .agent_id(&plan.agent_id)
            .agent_alias_id(&plan.agent_alias_id)
            .session_id(&plan.session_id)
            .session_state(state)
            .enable_trace(true)
            .customize()
            .config_override(
                aws_sdk_bedrockagentruntime::config::Builder::default()
                    .retry_config(RetryConfig::disabled()),
            )
            .send()
            .await;
        let turn = Turn {
            agent_id: &plan.agent_id,
            agent_alias_id: &plan.agent_alias_id,
            session_id: &plan.session_id,
            input_text: None,
            resumes: Some(&plan.invocation_id),
            session_attributes: &plan.session_attributes,
            started_at,
            idle_timeout: self.runner.idle_timeout(),
        };
        match sent {
            Ok(output) => {
                let continuation =
                    aws_sdk_bedrockagentruntime::operation::RequestId::request_id(&output)
                        .map(str::to_owned);
                self.store.outbox_mark_acked(
                    id,
                    &self.owner,
                    Utc::now(),
                    continuation.as_deref(),
                    None,
                )?;
                let recorded = record_stream(
                    output,
                    &turn,
                    Recorder::Direct(self.store),
                    self.submit,
                    Some(observer),
                )
                .await
                .map_err(|e| e.to_string());
                Ok(ResumeOutcome::Acked {
                    continuation: recorded,
                })
            }
            Err(e) => {
                let error = classify(&e, &plan.agent_id, &plan.agent_alias_id);
                let request_id = local_request_id(started_at);
                if let Err(store_error) =
                    record_failed_call(Recorder::Direct(self.store), &turn, &request_id, &error)
                        .await
                {
                    tracing::warn!(%store_error, "could not record the failed resume call");
                }
                self.settle_error(&row, retry, &error)
            }
        }
    }

    fn settle_error(
        &self,
        row: &OutboxRow,
        retry: bool,
        error: &RunnerError,
    ) -> Result<ResumeOutcome, RunnerError> {
        let id = &row.request;
        let now = Utc::now();
        let text = error.to_string();
        let already_used = matches!(
            error.service_code(),
            Some("ValidationException" | "ConflictException")
        ) || matches!(error, RunnerError::Validation { .. });
        if retry && already_used {
            let note = format!(
                "a retry was refused ({text}); an earlier send whose outcome was unknown went \
                 through"
            );
            self.store
                .outbox_mark_acked(id, &self.owner, now, None, Some(&note))?;
            return Ok(ResumeOutcome::AckedEarlier { note });
        }
        let attempts = row.attempts + 1;
        if error.is_retryable() && attempts < self.max_attempts {
            let retry_at = now + backoff(attempts);
            if matches!(
                error,
                RunnerError::Transport {
                    sent: SendState::NotSent,
                    ..
                }
            ) && !retry
            {
                // Nothing left: the row goes back to pending, so a later 'already used' is
                // not mistaken for an earlier success.
                self.store
                    .outbox_unsend(id, &self.owner, now, retry_at, &text)?;
            } else {
                self.store
                    .outbox_retry_later(id, &self.owner, now, retry_at, &text)?;
            }
            return Ok(ResumeOutcome::RetryLater {
                error: text,
                retry_at,
            });
        }
        if matches!(error, RunnerError::MissingCredentials { .. }) && !retry {
            // Fixable locally and nothing was sent: keep the row for the next run.
            let retry_at = now + backoff(attempts);
            self.store
                .outbox_unsend(id, &self.owner, now, retry_at, &text)?;
            return Ok(ResumeOutcome::RetryLater {
                error: text,
                retry_at,
            });
        }
        self.store.outbox_mark_failed(id, &self.owner, now, &text)?;
        Ok(ResumeOutcome::Failed { error: text })
    }
}
