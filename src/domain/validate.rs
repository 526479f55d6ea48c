//! Strict validation of a submitted return of control. Every error names the field (as a JSON
//! path) and the rule it broke; nothing half-valid gets through.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use super::approval::{
    ActionInvocationType, ActionTarget, ApprovalId, ApprovalRequest, InvocationInput, Parameter,
};
use super::policy::Policy;

/// The most invocation inputs one return of control carries (Bedrock's limit).
pub const MAX_INPUTS: usize = 5;

/// A submission that broke a rule: which field, and what the rule is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct SubmitError {
    pub field: String,
    pub rule: String,
}

fn err<T>(field: impl Into<String>, rule: impl Into<String>) -> Result<T, SubmitError> {
    Err(SubmitError {
        field: field.into(),
        rule: rule.into(),
    })
}

/// What validation needs from the world: the policy, the clock, and each agent's idle TTL.
pub struct SubmitContext<'a> {
    pub policy: &'a Policy,
    pub now: DateTime<Utc>,
    /// Idle session TTL in seconds for an agent id.
    pub ttl_secs: &'a dyn Fn(&str) -> u32,
}

impl std::fmt::Debug for SubmitContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitContext")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

const ENVELOPE_KEYS: [&str; 8] = [
    "agentId",
    "agentAliasId",
    "sessionId",
    "agentVersion",
    "sessionAttributes",
    "rationale",
    "eventTime",
    "returnControl",
];
const FUNCTION_KEYS: [&str; 6] = [
    "actionGroup",
    "function",
    "parameters",
    "actionInvocationType",
    "agentId",
    "collaboratorName",
];
const API_KEYS: [&str; 8] = [
    "actionGroup",
    "apiPath",
    "httpMethod",
    "parameters",
    "requestBody",
    "actionInvocationType",
    "agentId",
    "collaboratorName",
];
const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn object<'v>(value: &'v Value, field: &str) -> Result<&'v Map<String, Value>, SubmitError> {
    value
        .as_object()
        .map_or_else(|| err(field, "must be a JSON object"), Ok)
}

fn no_unknown_keys(
    map: &Map<String, Value>,
    allowed: &[&str],
    field: &str,
) -> Result<(), SubmitError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => err(
            join(field, k),
            format!("unknown field (allowed here: {})", allowed.join(", ")),
        ),
        None => Ok(()),
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn string<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<Option<&'v str>, SubmitError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => err(join(parent, key), "must be a string"),
    }
}

fn required<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<&'v str, SubmitError> {
    match string(map, key, parent)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        Some(_) => err(join(parent, key), "must not be empty"),
        None => err(join(parent, key), "is required"),
    }
}

fn id_pattern(
    value: &str,
    field: &str,
    allowed: fn(char) -> bool,
    min: usize,
    max: usize,
    pattern: &str,
) -> Result<(), SubmitError> {
    let len = value.chars().count();
    if len < min || len > max {
        return err(
            field,
            format!("must be {min} to {max} characters, got {len}"),
        );
    }
    if let Some(c) = value.chars().find(|c| !allowed(*c)) {
        return err(field, format!("must match {pattern}; {c:?} is not allowed"));
    }
    Ok(())
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn session_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

fn agent_version_ok(v: &str) -> bool {
    v == "DRAFT"
        || (!v.is_empty()
            && v.len() <= 10
            && v.chars().all(|c| c.is_ascii_digit())
            && v.chars().any(|c| c != '0'))
}

fn parameters(value: Option<&Value>, field: &str) -> Result<Vec<Parameter>, SubmitError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(items) = value.as_array() else {
        return err(field, "must be an array of {name, type, value}");
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let map = object(item, &f)?;
        no_unknown_keys(map, &["name", "type", "value"], &f)?;
        let name = required(map, "name", &f)?;
        let kind = string(map, "type", &f)?.unwrap_or("string");
        let value = match map.get("value") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => return err(join(&f, "value"), "is required"),
            Some(_) => {
                return err(
                    join(&f, "value"),
                    "must be a string (Bedrock sends every parameter value as a string)",
                );
            }
        };
        if !seen.insert(name.to_owned()) {
            return err(
                join(&f, "name"),
                format!("duplicate parameter {name:?}: two values for one name would be ambiguous"),
            );
        }
        out.push(Parameter {
            name: name.to_owned(),
            kind: kind.to_owned(),
            value,
        });
    }
    Ok(out)
}

fn request_body(value: Option<&Value>, field: &str) -> Result<Option<Value>, SubmitError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let map = object(value, field)?;
    no_unknown_keys(map, &["content"], field)?;
    let content_field = join(field, "content");
    let content = object(map.get("content").unwrap_or(&Value::Null), &content_field)?;
    for (media, body) in content {
        let mf = format!("{content_field}.{media}");
        let body = object(body, &mf)?;
        no_unknown_keys(body, &["properties"], &mf)?;
        parameters(body.get("properties"), &join(&mf, "properties"))?;
    }
    Ok(Some(value.clone()))
}

fn invocation_input(value: &Value, field: &str) -> Result<InvocationInput, SubmitError> {
    let outer = object(value, field)?;
    let forms: Vec<&String> = outer.keys().collect();
    let (form, inner_field) = match forms.as_slice() {
        [k] if *k == "functionInvocationInput" || *k == "apiInvocationInput" => {
            (k.as_str(), join(field, k))
        }
        [] => return err(field, "needs functionInvocationInput or apiInvocationInput"),
        [k] => {
            return err(
                join(field, k),
                "unknown field (expected functionInvocationInput or apiInvocationInput)",
            );
        }
        _ => {
            return err(
                field,
                "must hold exactly one of functionInvocationInput or apiInvocationInput",
            );
        }
    };
    let map = object(&outer[form], &inner_field)?;
    let is_function = form == "functionInvocationInput";
    no_unknown_keys(
        map,
        if is_function {
            &FUNCTION_KEYS
        } else {
            &API_KEYS
        },
        &inner_field,
    )?;
    let action_group = required(map, "actionGroup", &inner_field)?.to_owned();
    let target = if is_function {
        ActionTarget::Function {
            function: required(map, "function", &inner_field)?.to_owned(),
        }
    } else {
        let api_path = required(map, "apiPath", &inner_field)?;
        if !api_path.starts_with('/') {
            return err(join(&inner_field, "apiPath"), "must start with '/'");
        }
        let method = required(map, "httpMethod", &inner_field)?;
        let upper = method.to_ascii_uppercase();
        if !HTTP_METHODS.contains(&upper.as_str()) {
            return err(
                join(&inner_field, "httpMethod"),
                format!(
                    "unknown HTTP method {method:?} (expected one of {})",
                    HTTP_METHODS.join(", ")
                ),
            );
        }
        ActionTarget::Api {
            api_path: api_path.to_owned(),
            http_method: upper,
            request_body: request_body(map.get("requestBody"), &join(&inner_field, "requestBody"))?,
        }
    };
    let invocation_type = match string(map, "actionInvocationType", &inner_field)? {
        None => ActionInvocationType::Result,
        Some(s) => ActionInvocationType::from_wire(s).map_or_else(
            || {
                err(
                    join(&inner_field, "actionInvocationType"),
                    format!("unknown actionInvocationType {s:?} (expected RESULT, USER_CONFIRMATION or USER_CONFIRMATION_AND_RESULT)"),
                )
            },
            Ok,
        )?,
    };
    Ok(InvocationInput {
        action_group,
        target,
        parameters: parameters(map.get("parameters"), &join(&inner_field, "parameters"))?,
        invocation_type,
        agent_id: string(map, "agentId", &inner_field)?.map(str::to_owned),
        collaborator_name: string(map, "collaboratorName", &inner_field)?.map(str::to_owned),
    })
}

/// Validates a submission document and builds the request, with the policy applied to every input.
pub fn submission(doc: &Value, ctx: &SubmitContext<'_>) -> Result<ApprovalRequest, SubmitError> {
    let root = object(doc, "(document)")?;
    no_unknown_keys(root, &ENVELOPE_KEYS, "")?;
    let agent_id = required(root, "agentId", "")?;
    id_pattern(agent_id, "agentId", alnum, 1, 10, "^[0-9a-zA-Z]+$")?;
    let alias = required(root, "agentAliasId", "")?;
    id_pattern(alias, "agentAliasId", alnum, 1, 10, "^[0-9a-zA-Z]+$")?;
    let session = required(root, "sessionId", "")?;
    id_pattern(
        session,
        "sessionId",
        session_char,
        2,
        100,
        "^[0-9a-zA-Z._:-]+$",
    )?;
    let agent_version = string(root, "agentVersion", "")?;
    if let Some(v) = agent_version.filter(|v| !agent_version_ok(v)) {
        return err(
            "agentVersion",
            format!("must be DRAFT or a version number, got {v:?}"),
        );
    }
    let mut session_attributes = BTreeMap::new();
    if let Some(attrs) = root.get("sessionAttributes").filter(|v| !v.is_null()) {
        for (k, v) in object(attrs, "sessionAttributes")? {
            let Some(v) = v.as_str() else {
                return err(
                    format!("sessionAttributes.{k}"),
                    "must be a string (session attributes are map<string,string>)",
                );
            };
            session_attributes.insert(k.clone(), v.to_owned());
        }
    }
    let rationale = string(root, "rationale", "")?.map(str::to_owned);
    let raised_at = match string(root, "eventTime", "")? {
        None => ctx.now,
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|e| err("eventTime", format!("must be an RFC 3339 timestamp ({e})")))?,
    };
    if raised_at > ctx.now + Duration::minutes(5) {
        return err("eventTime", "is more than 5 minutes in the future");
    }
    let rc_value = root.get("returnControl").filter(|v| !v.is_null());
    let Some(rc_value) = rc_value else {
        return err("returnControl", "is required");
    };
    let rc = object(rc_value, "returnControl")?;
    no_unknown_keys(rc, &["invocationId", "invocationInputs"], "returnControl")?;
    let invocation_id = required(rc, "invocationId", "returnControl")?;
    id_pattern(
        invocation_id,
        "returnControl.invocationId",
        session_char,
        1,
        100,
        "^[0-9a-zA-Z._:-]+$",
    )?;
    let inputs_field = "returnControl.invocationInputs";
    let Some(items) = rc.get("invocationInputs").and_then(Value::as_array) else {
        return err(inputs_field, "is required and must be an array");
    };
    if items.is_empty() || items.len() > MAX_INPUTS {
        return err(
            inputs_field,
            format!(
                "must hold 1 to {MAX_INPUTS} invocation inputs, got {}",
                items.len()
            ),
        );
    }
    let inputs = items
        .iter()
        .enumerate()
        .map(|(i, v)| invocation_input(v, &format!("{inputs_field}[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let assessments = inputs.iter().map(|i| ctx.policy.assess(i)).collect();
    let ttl = (ctx.ttl_secs)(agent_id);
    Ok(ApprovalRequest {
        id: ApprovalId(invocation_id.to_owned()),
        agent_id: agent_id.to_owned(),
        agent_alias_id: alias.to_owned(),
        agent_version: agent_version.map(str::to_owned),
        session_id: session.to_owned(),
        session_attributes,
        rationale,
        raised_at,
        expires_at: raised_at + Duration::seconds(i64::from(ttl)),
        inputs,
        assessments,
    })
}
