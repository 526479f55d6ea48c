//! Scenario files (TOML): the agents the simulator serves, their aliases, action groups,
//! knowledge bases, guardrails and collaborators, and the scripts that say what an agent does for
//! a given input. Parsing and validation only; the engine runs the scripts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::error::{SimError, exception_from_name};

const BUILTIN: &[(&str, &str)] = &[
    ("builtin:payments", include_str!("scenarios/payments.toml")),
    ("builtin:ops", include_str!("scenarios/ops.toml")),
    ("builtin:policy", include_str!("scenarios/policy.toml")),
    (
        "builtin:supervisor",
        include_str!("scenarios/supervisor.toml"),
    ),
    ("builtin:common", include_str!("scenarios/common.toml")),
];

/// One parsed and checked scenario file.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where it came from: `builtin:payments` or a file path.
    pub source: String,
    pub description: String,
    /// Faults the scenario asks for, in `Faults::parse` syntax.
    pub faults: Option<String>,
    pub agents: Vec<Arc<AgentDef>>,
    /// Scripts that apply to every agent, tried before the agent's own.
    pub shared: Vec<Arc<ScriptDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    description: String,
    #[serde(default)]
    faults: Option<String>,
    #[serde(default, rename = "agent")]
    agents: Vec<AgentDef>,
    #[serde(default, rename = "script")]
    shared: Vec<ScriptDef>,
}

/// An agent and everything it can do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDef {
    pub id: String,
    pub name: String,
    pub aliases: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// `idleSessionTTLInSeconds`, 60..=5400.
    #[serde(default = "default_ttl")]
    pub idle_ttl_secs: u64,
    /// The agent version an alias other than `TSTALIASID` points to.
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default = "default_model")]
    pub foundation_model: String,
    #[serde(default)]
    pub instruction: String,
    #[serde(default)]
    pub pre_processing: bool,
    #[serde(default)]
    pub post_processing: bool,
    /// Model-call latency range in milliseconds, before seeded jitter picks a value.
    #[serde(default = "default_model_ms")]
    pub model_ms: [u64; 2],
    #[serde(default, rename = "action_group")]
    pub action_groups: Vec<ActionGroupDef>,
    #[serde(default, rename = "knowledge_base")]
    pub knowledge_bases: Vec<KnowledgeBaseDef>,
    #[serde(default)]
    pub guardrail: Option<GuardrailDef>,
    #[serde(default, rename = "collaborator")]
    pub collaborators: Vec<CollaboratorDef>,
    #[serde(default, rename = "script", deserialize_with = "arc_scripts")]
    pub scripts: Vec<Arc<ScriptDef>>,
    /// Answer when no script matches.
    #[serde(default = "default_answer")]
    pub default_answer: String,
}

fn arc_scripts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Arc<ScriptDef>>, D::Error> {
    Ok(Vec::<ScriptDef>::deserialize(d)?
        .into_iter()
        .map(Arc::new)
        .collect())
}

fn default_ttl() -> u64 {
    600
}
fn default_version() -> String {
    "1".to_owned()
}
fn default_model() -> String {
    "anthropic.claude-3-5-sonnet-20240620-v1:0".to_owned()
}
fn default_model_ms() -> [u64; 2] {
    [400, 1800]
}
fn default_answer() -> String {
    "I can help with the tasks I was configured for. Could you tell me more about what you need?"
        .to_owned()
}
fn default_true() -> bool {
    true
}
fn default_param_type() -> String {
    "string".to_owned()
}
fn default_media() -> String {
    "application/json".to_owned()
}

/// Who runs an action group's functions: the agent's Lambda, or the calling application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Executor {
    Lambda,
    ReturnControl,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionGroupDef {
    pub name: String,
    pub executor: Executor,
    #[serde(default)]
    pub description: String,
    /// Function-details form.
    #[serde(default, rename = "function")]
    pub functions: Vec<FunctionDef>,
    /// OpenAPI-schema form.
    #[serde(default, rename = "api")]
    pub apis: Vec<ApiDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `requireConfirmation: ENABLED`.
    #[serde(default)]
    pub confirmation: bool,
    #[serde(default)]
    pub params: Vec<ParamDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDef {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub description: String,
    /// `x-requireConfirmation: ENABLED`.
    #[serde(default)]
    pub confirmation: bool,
    #[serde(default)]
    pub params: Vec<ParamDef>,
    /// Request-body properties.
    #[serde(default)]
    pub body: Vec<ParamDef>,
    #[serde(default = "default_media")]
    pub media_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDef {
    pub name: String,
    #[serde(rename = "type", default = "default_param_type")]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeBaseDef {
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, rename = "document")]
    pub documents: Vec<DocumentDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentDef {
    pub uri: String,
    pub text: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailDef {
    pub id: String,
    #[serde(default = "default_version")]
    pub version: String,
    /// Input containing any of these (case-insensitive) is blocked.
    #[serde(default)]
    pub deny_words: Vec<String>,
    /// The denied topic reported in the assessment.
    #[serde(default = "default_topic")]
    pub topic: String,
    pub blocked_message: String,
}

fn default_topic() -> String {
    "Credentials".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollaboratorDef {
    /// `collaboratorName` in traces.
    pub name: String,
    pub agent: String,
    pub alias: String,
    #[serde(default)]
    pub instruction: String,
}

/// What an agent does for inputs that contain one of `keywords`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptDef {
    #[serde(default)]
    pub name: String,
    /// Any of these, case-insensitive, anywhere in the input. Empty: the agent's fallback.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// One line for the agents table; generated from the steps when absent.
    #[serde(default)]
    pub summary: Option<String>,
    /// Variables: `number(lo..hi)` and `amount(lo..hi)` (a number in the input, else seeded),
    /// `random(lo..hi)`, `pick(a|b|c)` (the option the input names, else seeded),
    /// `after(word|default)` (the word after `word` in the input), `id(PREFIX)`, or text.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

/// One thing the agent does. Text fields are templates: `{input}`, `{session.NAME}`, script vars,
/// and after a return of control `{result}`, `{action}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// A model call with its rationale (orchestration).
    Think { rationale: String },
    /// Call action-group functions or APIs. Lambda ones without confirmation run at once; the
    /// others are returned to the caller in one returnControl event.
    Action {
        #[serde(default)]
        rationale: Option<String>,
        #[serde(rename = "call")]
        calls: Vec<CallDef>,
    },
    /// Query a knowledge base; the references become citations of the answer.
    Kb {
        knowledge_base: String,
        #[serde(default)]
        query: Option<String>,
    },
    /// Run code in the code interpreter; `file` adds a files event with its output.
    Code {
        code: String,
        output: String,
        #[serde(default)]
        file: Option<String>,
    },
    /// Hand the input to a collaborator agent.
    Collaborate {
        collaborator: String,
        #[serde(default)]
        input: Option<String>,
        /// Route with the routing classifier (routingClassifierTrace) instead of orchestration.
        #[serde(default = "default_true")]
        routing: bool,
    },
    /// A failureTrace; then an exception frame (`end = "exception"`) or an answer.
    Fail {
        reason: String,
        #[serde(default = "default_fail_code")]
        code: i32,
        #[serde(default)]
        end: FailEnd,
        #[serde(default = "default_fail_exception")]
        exception: String,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        text: Option<String>,
    },
    /// A customOrchestrationTrace event.
    Custom { event: String },
    /// The final answer: model call, rationale, observation FINISH, chunk(s).
    Answer {
        text: String,
        /// When every returned action was denied.
        #[serde(default)]
        denied: Option<String>,
        #[serde(default)]
        rationale: Option<String>,
    },
}

fn default_fail_code() -> i32 {
    500
}
fn default_fail_exception() -> String {
    "dependencyFailedException".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailEnd {
    #[default]
    Exception,
    Answer,
}

/// One function or API call in an action step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallDef {
    pub action_group: String,
    #[serde(default)]
    pub function: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    /// Parameter values (templates), in the declared order of the function or API.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Request-body property values (templates), API form only.
    #[serde(default)]
    pub body: BTreeMap<String, String>,
    /// What the Lambda returns when it runs (template).
    #[serde(default)]
    pub output: Option<String>,
}

/// A call resolved against the agent's definition.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Function(&'a FunctionDef),
    Api(&'a ApiDef),
}

impl AgentDef {
    pub fn action_group(&self, name: &str) -> Option<&ActionGroupDef> {
        self.action_groups.iter().find(|g| g.name == name)
    }

    pub fn resolve(&self, call: &CallDef) -> Option<(&ActionGroupDef, Target<'_>)> {
        let group = self.action_group(&call.action_group)?;
        if let Some(f) = &call.function {
            let def = group.functions.iter().find(|d| &d.name == f)?;
            return Some((group, Target::Function(def)));
        }
        let (method, path) = (call.method.as_deref()?, call.path.as_deref()?);
        let def = group
            .apis
            .iter()
            .find(|a| a.path == path && a.method.eq_ignore_ascii_case(method))?;
        Some((group, Target::Api(def)))
    }

    pub fn version_for(&self, alias: &str) -> &str {
        if alias == "TSTALIASID" {
            "DRAFT"
        } else {
            &self.version
        }
    }
}

pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 10 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Scenario {
    /// The scenarios compiled into the binary.
    pub fn builtin() -> Result<Vec<Self>, SimError> {
        BUILTIN
            .iter()
            .map(|(name, text)| Self::parse(name, text))
            .collect()
    }

    pub fn load(path: &Path) -> Result<Self, SimError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| SimError::scenario(&name, format!("cannot read: {e}")))?;
        Self::parse(&name, &text)
    }

    pub fn parse(source: &str, text: &str) -> Result<Self, SimError> {
        let file: ScenarioFile =
            toml::from_str(text).map_err(|e| SimError::scenario(source, e.to_string()))?;
        if let Some(spec) = &file.faults {
            super::fault::Faults::parse(spec)
                .map_err(|e| SimError::scenario(source, e.to_string()))?;
        }
        for agent in &file.agents {
            check_agent(agent).map_err(|m| SimError::scenario(source, m))?;
        }
        for script in &file.shared {
            for step in &script.steps {
                if let Step::Action { .. } | Step::Kb { .. } | Step::Collaborate { .. } = step {
                    return Err(SimError::scenario(
                        source,
                        format!(
                            "shared script {:?}: action, kb and collaborate steps need an agent; put the script under [[agent.script]]",
                            script.name
                        ),
                    ));
                }
                check_step_common(step).map_err(|m| SimError::scenario(source, m))?;
            }
        }
        Ok(Self {
            source: source.to_owned(),
            description: file.description,
            faults: file.faults,
            agents: file.agents.into_iter().map(Arc::new).collect(),
            shared: file.shared.into_iter().map(Arc::new).collect(),
        })
    }
}

fn check_step_common(step: &Step) -> Result<(), String> {
    if let Step::Fail { exception, .. } = step {
        if exception_from_name(exception, "").is_none() {
            return Err(format!(
                "fail step: unknown exception {exception:?} (use the camelCase :exception-type, e.g. dependencyFailedException)"
            ));
        }
    }
    Ok(())
}

fn check_agent(agent: &AgentDef) -> Result<(), String> {
    let a = &agent.id;
    if !valid_id(a) {
        return Err(format!(
            "agent id {a:?}: must match [0-9a-zA-Z]+, at most 10 characters"
        ));
    }
    if agent.aliases.is_empty() {
        return Err(format!("agent {a}: needs at least one alias"));
    }
    if let Some(bad) = agent.aliases.iter().find(|x| !valid_id(x)) {
        return Err(format!(
            "agent {a}: alias {bad:?} must match [0-9a-zA-Z]+, at most 10 characters"
        ));
    }
    if !(60..=5400).contains(&agent.idle_ttl_secs) {
        return Err(format!(
            "agent {a}: idle_ttl_secs {} outside 60..=5400 (idleSessionTTLInSeconds)",
            agent.idle_ttl_secs
        ));
    }
    if agent.model_ms[0] > agent.model_ms[1] {
        return Err(format!("agent {a}: model_ms must be [low, high]"));
    }
    for g in &agent.action_groups {
        if g.functions.is_empty() == g.apis.is_empty() {
            return Err(format!(
                "agent {a}: action group {:?} needs either [[...function]] or [[...api]] entries, not both",
                g.name
            ));
        }
    }
    for script in &agent.scripts {
        for step in &script.steps {
            check_step_common(step)?;
            match step {
                Step::Action { calls, .. } => {
                    if calls.is_empty() || calls.len() > 5 {
                        return Err(format!(
                            "agent {a}: script {:?}: an action step has 1..=5 calls",
                            script.name
                        ));
                    }
                    for call in calls {
                        if agent.resolve(call).is_none() {
                            return Err(format!(
                                "agent {a}: script {:?}: call to {}/{} matches no function or API of the agent",
                                script.name,
                                call.action_group,
                                call.function.clone().unwrap_or_else(|| format!(
                                    "{} {}",
                                    call.method.as_deref().unwrap_or("?"),
                                    call.path.as_deref().unwrap_or("?")
                                ))
                            ));
                        }
                    }
                }
                Step::Kb { knowledge_base, .. }
                    if !agent
                        .knowledge_bases
                        .iter()
                        .any(|k| &k.id == knowledge_base) =>
                {
                    return Err(format!(
                        "agent {a}: script {:?}: unknown knowledge base {knowledge_base:?}",
                        script.name
                    ));
                }
                Step::Collaborate { collaborator, .. }
                    if !agent.collaborators.iter().any(|c| &c.name == collaborator) =>
                {
                    return Err(format!(
                        "agent {a}: script {:?}: unknown collaborator {collaborator:?}",
                        script.name
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// A one-line description of what a script does, for the agents table.
pub fn summarize(agent: &AgentDef, script: &ScriptDef) -> String {
    if let Some(s) = &script.summary {
        return s.clone();
    }
    let mut parts = Vec::new();
    for step in &script.steps {
        match step {
            Step::Think { .. } => {}
            Step::Action { calls, .. } => {
                for call in calls {
                    let Some((group, target)) = agent.resolve(call) else {
                        continue;
                    };
                    let (name, confirm) = match target {
                        Target::Function(f) => {
                            (format!("{}.{}", group.name, f.name), f.confirmation)
                        }
                        Target::Api(api) => (
                            format!("{} {} {}", group.name, api.method, api.path),
                            api.confirmation,
                        ),
                    };
                    let how = match (group.executor, confirm) {
                        (Executor::Lambda, false) => "Lambda",
                        (Executor::Lambda, true) => "RoC USER_CONFIRMATION",
                        (Executor::ReturnControl, false) => "RoC RESULT",
                        (Executor::ReturnControl, true) => "RoC USER_CONFIRMATION_AND_RESULT",
                    };
                    parts.push(format!("{name} ({how})"));
                }
            }
            Step::Kb { knowledge_base, .. } => parts.push(format!("KB {knowledge_base}")),
            Step::Code { .. } => parts.push("code interpreter".to_owned()),
            Step::Collaborate { collaborator, .. } => {
                let target = agent
                    .collaborators
                    .iter()
                    .find(|c| &c.name == collaborator)
                    .map(|c| format!(" ({}/{})", c.agent, c.alias))
                    .unwrap_or_default();
                parts.push(format!("collaborator {collaborator}{target}"));
            }
            Step::Fail { end, .. } => parts.push(match end {
                FailEnd::Exception => "failureTrace + exception frame".to_owned(),
                FailEnd::Answer => "failureTrace + answer".to_owned(),
            }),
            Step::Custom { .. } => parts.push("custom orchestration".to_owned()),
            Step::Answer { .. } => parts.push("answer".to_owned()),
        }
    }
    parts.dedup();
    parts.join(", ")
}
