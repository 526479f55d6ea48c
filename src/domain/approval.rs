//! Approval requests: one Bedrock `returnControl` payload with the context it was raised in.
//! Owns the shapes only; validation lives in `validate`, risk in `policy`, status in `status`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::policy::Assessment;

/// The id of an approval request: the `invocationId` Bedrock gave the return of control.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApprovalId(pub String);

impl ApprovalId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the application must answer an invocation input (Bedrock's `actionInvocationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionInvocationType {
    /// The application executes the action and returns its result.
    Result,
    /// Bedrock runs the Lambda after a CONFIRM, skips it after a DENY.
    UserConfirmation,
    /// The reviewer confirms, then the application executes and returns the result.
    UserConfirmationAndResult,
}

impl ActionInvocationType {
    pub const ALL: [Self; 3] = [
        Self::Result,
        Self::UserConfirmation,
        Self::UserConfirmationAndResult,
    ];

    pub fn as_wire(self) -> &'static str {
        match self {
            Self::Result => "RESULT",
            Self::UserConfirmation => "USER_CONFIRMATION",
            Self::UserConfirmationAndResult => "USER_CONFIRMATION_AND_RESULT",
        }
    }

    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_wire() == s)
    }
}

/// One `{name, type, value}` parameter. Values are always strings on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// What the action is: a function of an action group, or an operation of an OpenAPI schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "lowercase")]
pub enum ActionTarget {
    Function {
        function: String,
    },
    Api {
        #[serde(rename = "apiPath")]
        api_path: String,
        #[serde(rename = "httpMethod")]
        http_method: String,
        /// `requestBody` exactly as Bedrock sent it (`{"content": {"<media>": {"properties": [...]}}}`).
        #[serde(rename = "requestBody", skip_serializing_if = "Option::is_none")]
        request_body: Option<serde_json::Value>,
    },
}

/// One invocation input of a return of control: the thing a reviewer confirms or denies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationInput {
    #[serde(rename = "actionGroup")]
    pub action_group: String,
    pub target: ActionTarget,
    pub parameters: Vec<Parameter>,
    #[serde(rename = "actionInvocationType")]
    pub invocation_type: ActionInvocationType,
    #[serde(rename = "agentId", skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(rename = "collaboratorName", skip_serializing_if = "Option::is_none")]
    pub collaborator_name: Option<String>,
}

impl InvocationInput {
    /// `group.function` or `group METHOD /path`: how the action is named on screen.
    pub fn action_label(&self) -> String {
        match &self.target {
            ActionTarget::Function { function } => format!("{}.{function}", self.action_group),
            ActionTarget::Api {
                api_path,
                http_method,
                ..
            } => format!("{} {http_method} {api_path}", self.action_group),
        }
    }

    /// The function name, or the apiPath: what policy rules match against.
    pub fn function(&self) -> Option<&str> {
        match &self.target {
            ActionTarget::Function { function } => Some(function),
            ActionTarget::Api { .. } => None,
        }
    }

    pub fn api_path(&self) -> Option<&str> {
        match &self.target {
            ActionTarget::Api { api_path, .. } => Some(api_path),
            ActionTarget::Function { .. } => None,
        }
    }

    /// The HTTP method of an API-form input.
    pub fn http_method(&self) -> Option<&str> {
        match &self.target {
            ActionTarget::Api { http_method, .. } => Some(http_method),
            ActionTarget::Function { .. } => None,
        }
    }

    pub fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// Properties inside the request body of an API-form input, flattened as parameters, so
    /// policy predicates and the detail view see them the same way as function parameters.
    pub fn body_properties(&self) -> Vec<Parameter> {
        let ActionTarget::Api {
            request_body: Some(body),
            ..
        } = &self.target
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(content) = body.get("content").and_then(|c| c.as_object()) {
            for media in content.values() {
                if let Some(props) = media.get("properties").and_then(|p| p.as_array()) {
                    for p in props {
                        let text = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or_default();
                        out.push(Parameter {
                            name: text("name").to_owned(),
                            kind: text("type").to_owned(),
                            value: text("value").to_owned(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Parameters and request-body properties together, in wire order.
    pub fn all_parameters(&self) -> Vec<Parameter> {
        let mut all = self.parameters.clone();
        all.extend(self.body_properties());
        all
    }
}

/// A pending (or decided) return of control, with everything a reviewer needs to judge it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub id: ApprovalId,
    pub agent_id: String,
    pub agent_alias_id: String,
    pub agent_version: Option<String>,
    pub session_id: String,
    pub session_attributes: BTreeMap<String, String>,
    pub rationale: Option<String>,
    pub raised_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub inputs: Vec<InvocationInput>,
    /// One assessment per input, from the policy at submit time.
    pub assessments: Vec<Assessment>,
}

impl ApprovalRequest {
    /// The request's tier: the highest of its inputs'.
    pub fn tier(&self) -> super::policy::RiskTier {
        self.assessments
            .iter()
            .map(|a| a.tier)
            .max()
            .unwrap_or(super::policy::RiskTier::Low)
    }

    /// The tier of input `index`; an input without an assessment counts as critical.
    pub fn input_tier(&self, index: usize) -> super::policy::RiskTier {
        self.assessments
            .get(index)
            .map_or(super::policy::RiskTier::Critical, |a| a.tier)
    }

    /// The assessment that set the request's tier (first of the highest).
    pub fn lead_assessment(&self) -> Option<&Assessment> {
        let tier = self.tier();
        self.assessments.iter().find(|a| a.tier == tier)
    }

    /// Total size in bytes of session attribute names and values.
    pub fn session_attributes_size(&self) -> usize {
        self.session_attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }

    /// The hash that binds a decision on input `index` to the exact arguments shown.
    pub fn input_hash(&self, index: usize) -> Option<String> {
        self.inputs
            .get(index)
            .map(|input| super::canonical::input_hash(&self.id, index, input))
    }
}
