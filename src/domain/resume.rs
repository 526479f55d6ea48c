//! Resuming an agent after a return of control: the plan (each input with its final verdict) and
//! the `returnControlInvocationResults` built from it, one result per input, per the input's
//! `actionInvocationType`. Pure: the action itself runs behind the `Executor` port.
//!
//! | actionInvocationType          | confirmed                                   | denied                                                   |
//! |-------------------------------|---------------------------------------------|----------------------------------------------------------|
//! | USER_CONFIRMATION             | `confirmationState: CONFIRM`                | `confirmationState: DENY`                                |
//! | USER_CONFIRMATION_AND_RESULT  | `CONFIRM` + the executor's `responseBody`   | `DENY` + a short body quoting the reviewer's reason      |
//! | RESULT                        | the executor's `responseBody`               | `responseState: REPROMPT` + a body quoting the reason    |
//!
//! A denied RESULT input answers `REPROMPT`, not `FAILURE`: Bedrock turns `FAILURE` into a
//! `dependencyFailedException` that ends the user's turn with an error, whereas `REPROMPT` hands
//! the body to the model, which can then tell the user the reviewer refused and why (the body
//! says not to retry). An executor that fails on an approved action is answered the same way
//! (`REPROMPT` with the error; HTTP 500 in the API form), so agentdeck never fails the turn.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::approval::{ActionInvocationType, ActionTarget, ApprovalRequest, InvocationInput};
use super::decision::{Decision, Verdict};
use super::policy::Policy;
use super::status::{InputState, input_states};

/// The most characters of a reviewer's reason quoted back to the agent.
pub const MAX_QUOTED_REASON: usize = 500;

/// The media type of API-form bodies; function results use `TEXT`.
pub const API_MEDIA_TYPE: &str = "application/json";

/// One input with the verdict it ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedInput {
    pub input: InvocationInput,
    pub verdict: Verdict,
    /// The reason of the decision that made the input final (the last confirm, or the deny).
    pub reason: Option<String>,
    pub reviewers: Vec<String>,
}

/// Everything needed to resume one return of control, as the outbox stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePlan {
    pub invocation_id: String,
    pub agent_id: String,
    pub agent_alias_id: String,
    pub session_id: String,
    pub session_attributes: BTreeMap<String, String>,
    pub inputs: Vec<DecidedInput>,
}

impl ResumePlan {
    /// The plan for a request whose every input is final; None while any input is open.
    pub fn from_decisions(
        request: &ApprovalRequest,
        decisions: &[Decision],
        policy: &Policy,
    ) -> Option<Self> {
        let mut inputs = Vec::with_capacity(request.inputs.len());
        let states = input_states(request, decisions, policy);
        for (i, (input, state)) in request.inputs.iter().zip(states).enumerate() {
            let (verdict, reviewers) = match state {
                InputState::Confirmed { by, .. } => (Verdict::Confirm, by),
                InputState::Denied { by, .. } => (Verdict::Deny, vec![by]),
                InputState::Pending | InputState::Approving { .. } => return None,
            };
            let reason = decisions
                .iter()
                .filter(|d| d.input_index == i && d.verdict == verdict)
                .max_by_key(|d| d.decided_at)
                .and_then(|d| d.reason.clone());
            inputs.push(DecidedInput {
                input: input.clone(),
                verdict,
                reason,
                reviewers,
            });
        }
        Some(Self {
            invocation_id: request.id.0.clone(),
            agent_id: request.agent_id.clone(),
            agent_alias_id: request.agent_alias_id.clone(),
            session_id: request.session_id.clone(),
            session_attributes: request.session_attributes.clone(),
            inputs,
        })
    }
}

/// `confirmationState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConfirmationState {
    Confirm,
    Deny,
}

impl ConfirmationState {
    pub fn as_wire(self) -> &'static str {
        match self {
            Self::Confirm => "CONFIRM",
            Self::Deny => "DENY",
        }
    }
}

/// `responseState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResponseState {
    Failure,
    Reprompt,
}

impl ResponseState {
    pub fn as_wire(self) -> &'static str {
        match self {
            Self::Failure => "FAILURE",
            Self::Reprompt => "REPROMPT",
        }
    }
}

/// Function or API form of a result: it names the same action as the input it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultTarget {
    Function {
        function: String,
    },
    Api {
        api_path: String,
        http_method: String,
        http_status_code: Option<i32>,
    },
}

/// One `returnControlInvocationResults` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationResult {
    pub action_group: String,
    pub target: ResultTarget,
    pub confirmation_state: Option<ConfirmationState>,
    pub response_state: Option<ResponseState>,
    /// `(media type, body)`: `TEXT` for functions, `application/json` for APIs.
    pub body: Option<(String, String)>,
    /// Passed through from the input, so a supervisor routes the result to its collaborator.
    pub agent_id: Option<String>,
}

impl InvocationResult {
    /// The member as JSON in the wire's shape (`{"functionResult": {...}}` / `{"apiResult": ...}`).
    pub fn to_wire(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("actionGroup".into(), json!(self.action_group));
        if let Some(c) = self.confirmation_state {
            m.insert("confirmationState".into(), json!(c.as_wire()));
        }
        if let Some(r) = self.response_state {
            m.insert("responseState".into(), json!(r.as_wire()));
        }
        if let Some((media, body)) = &self.body {
            m.insert("responseBody".into(), json!({ media: { "body": body } }));
        }
        if let Some(a) = &self.agent_id {
            m.insert("agentId".into(), json!(a));
        }
        match &self.target {
            ResultTarget::Function { function } => {
                m.insert("function".into(), json!(function));
                json!({ "functionResult": m })
            }
            ResultTarget::Api {
                api_path,
                http_method,
                http_status_code,
            } => {
                m.insert("apiPath".into(), json!(api_path));
                m.insert("httpMethod".into(), json!(http_method));
                if let Some(s) = http_status_code {
                    m.insert("httpStatusCode".into(), json!(s));
                }
                json!({ "apiResult": m })
            }
        }
    }
}

/// What the executor is asked to run: one approved input, with where it came from.
#[derive(Debug, Clone, Copy)]
pub struct ExecutionCall<'a> {
    pub invocation_id: &'a str,
    pub input_index: usize,
    pub agent_id: &'a str,
    pub session_id: &'a str,
    pub input: &'a InvocationInput,
    pub reason: Option<&'a str>,
}

impl ExecutionCall<'_> {
    /// The call as the JSON a command executor reads on stdin. `invocationId` + `inputIndex`
    /// identify the call, so an executor can make itself idempotent.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "invocationId": self.invocation_id,
            "inputIndex": self.input_index,
            "agentId": self.agent_id,
            "sessionId": self.session_id,
            "actionGroup": self.input.action_group,
            "actionInvocationType": self.input.invocation_type.as_wire(),
            "parameters": self.input.parameters,
            "reviewerReason": self.reason,
        });
        match &self.input.target {
            ActionTarget::Function { function } => v["function"] = json!(function),
            ActionTarget::Api {
                api_path,
                http_method,
                request_body,
            } => {
                v["apiPath"] = json!(api_path);
                v["httpMethod"] = json!(http_method);
                v["requestBody"] = request_body.clone().unwrap_or(Value::Null);
            }
        }
        v
    }
}

/// Runs an approved action and returns its response body (or why it failed).
pub trait Executor: Send + Sync {
    fn execute(&self, call: &ExecutionCall<'_>) -> Result<String, String>;
}

fn quote(reason: Option<&str>) -> String {
    let r = reason.map(str::trim).filter(|r| !r.is_empty());
    match r {
        Some(r) => {
            let mut q: String = r.chars().take(MAX_QUOTED_REASON).collect();
            if r.chars().nth(MAX_QUOTED_REASON).is_some() {
                q.push('…');
            }
            format!("{q:?}")
        }
        None => "(no reason given)".to_owned(),
    }
}

/// The body that tells the agent a reviewer refused the action.
pub fn rejection_text(reason: Option<&str>) -> String {
    format!(
        "A human reviewer rejected this action, so it was not run. Reason: {}. Do not retry it; \
         tell the user it was rejected and why.",
        quote(reason)
    )
}

fn execution_failure_text(error: &str) -> String {
    format!(
        "The action was approved but failed when it was run: {}. Tell the user it did not \
         happen.",
        quote(Some(error))
    )
}

/// A body in the form's media type: `TEXT` as is; API bodies as JSON (text that is not JSON is
/// wrapped as a JSON string).
fn body_for(input: &InvocationInput, text: String, as_message: bool) -> (String, String) {
    match input.target {
        ActionTarget::Function { .. } => ("TEXT".to_owned(), text),
        ActionTarget::Api { .. } => {
            let body = if !as_message && serde_json::from_str::<Value>(&text).is_ok() {
                text
            } else {
                json!({ "message": text }).to_string()
            };
            (API_MEDIA_TYPE.to_owned(), body)
        }
    }
}

/// Builds one result per input, in input order, running the executor for approved inputs
/// whose type asks the application for the result.
pub fn build_results(plan: &ResumePlan, executor: &dyn Executor) -> Vec<InvocationResult> {
    use ActionInvocationType as T;
    plan.inputs
        .iter()
        .enumerate()
        .map(|(index, d)| {
            let input = &d.input;
            let execute = || {
                executor.execute(&ExecutionCall {
                    invocation_id: &plan.invocation_id,
                    input_index: index,
                    agent_id: &plan.agent_id,
                    session_id: &plan.session_id,
                    input,
                    reason: d.reason.as_deref(),
                })
            };
            let (confirmation, response, body, status) = match (input.invocation_type, d.verdict) {
                (T::UserConfirmation, Verdict::Confirm) => {
                    (Some(ConfirmationState::Confirm), None, None, None)
                }
                (T::UserConfirmation, Verdict::Deny) => {
                    (Some(ConfirmationState::Deny), None, None, None)
                }
                (T::UserConfirmationAndResult | T::Result, Verdict::Confirm) => {
                    let confirmation = (input.invocation_type == T::UserConfirmationAndResult)
                        .then_some(ConfirmationState::Confirm);
                    match execute() {
                        Ok(out) => (
                            confirmation,
                            None,
                            Some(body_for(input, out, false)),
                            Some(200),
                        ),
                        Err(e) => (
                            confirmation,
                            Some(ResponseState::Reprompt),
                            Some(body_for(input, execution_failure_text(&e), true)),
                            Some(500),
                        ),
                    }
                }
                (T::UserConfirmationAndResult, Verdict::Deny) => (
                    Some(ConfirmationState::Deny),
                    None,
                    Some(body_for(input, rejection_text(d.reason.as_deref()), true)),
                    Some(403),
                ),
                (T::Result, Verdict::Deny) => (
                    None,
                    Some(ResponseState::Reprompt),
                    Some(body_for(input, rejection_text(d.reason.as_deref()), true)),
                    Some(403),
                ),
            };
            let target = match &input.target {
                ActionTarget::Function { function } => ResultTarget::Function {
                    function: function.clone(),
                },
                ActionTarget::Api {
                    api_path,
                    http_method,
                    ..
                } => ResultTarget::Api {
                    api_path: api_path.clone(),
                    http_method: http_method.clone(),
                    http_status_code: status,
                },
            };
            InvocationResult {
                action_group: input.action_group.clone(),
                target,
                confirmation_state: confirmation,
                response_state: response,
                body,
                agent_id: input.agent_id.clone(),
            }
        })
        .collect()
}

/// The results as the wire's `returnControlInvocationResults` array.
pub fn results_to_wire(results: &[InvocationResult]) -> Value {
    Value::Array(results.iter().map(InvocationResult::to_wire).collect())
}
