//! Configuration: embedded defaults < config file < environment < command line. Unknown keys are
//! errors that name the file and the key. Owns loading and merging; knows nothing of the UI loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::policy::{
    Confirmation, ControlReason, Policy, RiskTier, Rule, RuleSpec, TierRequirements,
};

const DEFAULTS: &str = include_str!("default.toml");

/// Bedrock's bounds for an agent's `idleSessionTTLInSeconds`.
pub const TTL_RANGE: std::ops::RangeInclusive<u32> = 60..=5400;

#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    pub source_name: String,
    pub message: String,
}

fn cfg_err(source_name: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        source_name: source_name.to_owned(),
        message: message.into(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    reason_required: Option<bool>,
    approvers: Option<u8>,
    confirmation: Option<Confirmation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    default_tier: Option<RiskTier>,
    default_reason: Option<ControlReason>,
    rules: Option<Vec<RuleSpec>>,
    #[serde(default)]
    tiers: BTreeMap<RiskTier, RawTier>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    idle_ttl_secs: Option<u32>,
}

/// `[metrics.objectives.ID]`: the value a metric must stay at or above (`min`) or at or below
/// (`max`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObjective {
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    rubber_stamp_tier: Option<RiskTier>,
    rubber_stamp_secs: Option<f64>,
    #[serde(default)]
    objectives: BTreeMap<String, RawObjective>,
}

/// `[prices."MODEL"]`: US dollars per 1,000 tokens.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input_per_1k: f64,
    output_per_1k: f64,
}

/// One config source as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    reviewer: Option<String>,
    theme: Option<String>,
    store: Option<String>,
    default_idle_ttl_secs: Option<u32>,
    #[serde(default)]
    agents: BTreeMap<String, RawAgent>,
    #[serde(default)]
    keys: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    prices: BTreeMap<String, RawPrice>,
}

/// The merged configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub reviewer: String,
    /// Whether `reviewer` was given (flag, environment or file) rather than derived from
    /// `$USER@host`; a DynamoDB store asks STS for the caller's identity only when it was not.
    pub reviewer_given: bool,
    /// A built-in theme name or a path to a theme file.
    pub theme: String,
    /// `sqlite:PATH`; None means the default file in the XDG data dir.
    pub store: Option<String>,
    pub default_idle_ttl_secs: u32,
    pub agent_ttl_secs: BTreeMap<String, u32>,
    /// `[keys]` overrides: action name -> keys.
    pub keys: BTreeMap<String, Vec<String>>,
    pub policy: Policy,
    /// `[metrics]` objectives and rubber-stamp rule, and the `[prices]` table.
    pub metrics: crate::domain::metrics::Settings,
    /// Where the user file was read from, if any.
    pub file: Option<PathBuf>,
}

/// Overrides from the command line; None leaves the lower layers in force.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub reviewer: Option<String>,
    pub theme: Option<String>,
    pub store: Option<String>,
}

impl Config {
    /// Loads defaults, then the config file (`--config`, `AGENTDECK_CONFIG`, or the XDG config
    /// dir's `agentdeck/config.toml` when it exists), then `AGENTDECK_*` env vars, then flags.
    pub fn load(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut raw = parse("(embedded defaults)", DEFAULTS)?;
        let explicit = overrides
            .config_file
            .clone()
            .or_else(|| env("AGENTDECK_CONFIG").map(PathBuf::from));
        let file = match explicit {
            Some(path) => Some(path),
            None => default_config_path().filter(|p| p.exists()),
        };
        if let Some(path) = &file {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| cfg_err(&name, format!("cannot read: {e}")))?;
            merge(&mut raw, parse(&name, &text)?);
        }
        let env_layer = RawConfig {
            reviewer: env("AGENTDECK_REVIEWER"),
            theme: env("AGENTDECK_THEME"),
            store: env("AGENTDECK_STORE"),
            ..RawConfig::default()
        };
        merge(&mut raw, env_layer);
        merge(
            &mut raw,
            RawConfig {
                reviewer: overrides.reviewer.clone(),
                theme: overrides.theme.clone(),
                store: overrides.store.clone(),
                ..RawConfig::default()
            },
        );
        let source = file
            .as_ref()
            .map_or_else(|| "(configuration)".to_owned(), |p| p.display().to_string());
        finish(raw, file, &source, env)
    }

    /// The defaults alone (tests, benches).
    pub fn defaults() -> Result<Self, ConfigError> {
        finish(
            parse("(embedded defaults)", DEFAULTS)?,
            None,
            "(embedded defaults)",
            &|_| None,
        )
    }

    /// Parses a config file's text over the defaults (tests, `agentdeck config check`).
    pub fn from_toml(source_name: &str, text: &str) -> Result<Self, ConfigError> {
        let mut raw = parse("(embedded defaults)", DEFAULTS)?;
        merge(&mut raw, parse(source_name, text)?);
        finish(raw, None, source_name, &|_| None)
    }

    pub fn ttl_secs(&self, agent_id: &str) -> u32 {
        self.agent_ttl_secs
            .get(agent_id)
            .copied()
            .unwrap_or(self.default_idle_ttl_secs)
    }
}

fn parse(source_name: &str, text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| cfg_err(source_name, e.to_string().trim_end().to_owned()))
}

fn merge(base: &mut RawConfig, over: RawConfig) {
    if over.reviewer.is_some() {
        base.reviewer = over.reviewer;
    }
    if over.theme.is_some() {
        base.theme = over.theme;
    }
    if over.store.is_some() {
        base.store = over.store;
    }
    if over.default_idle_ttl_secs.is_some() {
        base.default_idle_ttl_secs = over.default_idle_ttl_secs;
    }
    for (agent, a) in over.agents {
        base.agents.insert(agent, a);
    }
    for (action, keys) in over.keys {
        base.keys.insert(action, keys);
    }
    let m = over.metrics;
    if m.rubber_stamp_tier.is_some() {
        base.metrics.rubber_stamp_tier = m.rubber_stamp_tier;
    }
    if m.rubber_stamp_secs.is_some() {
        base.metrics.rubber_stamp_secs = m.rubber_stamp_secs;
    }
    for (id, o) in m.objectives {
        base.metrics.objectives.insert(id, o);
    }
    for (model, price) in over.prices {
        base.prices.insert(model, price);
    }
    let p = over.policy;
    if p.default_tier.is_some() {
        base.policy.default_tier = p.default_tier;
    }
    if p.default_reason.is_some() {
        base.policy.default_reason = p.default_reason;
    }
    if p.rules.is_some() {
        base.policy.rules = p.rules;
    }
    for (tier, t) in p.tiers {
        let slot = base.policy.tiers.entry(tier).or_default();
        if t.reason_required.is_some() {
            slot.reason_required = t.reason_required;
        }
        if t.approvers.is_some() {
            slot.approvers = t.approvers;
        }
        if t.confirmation.is_some() {
            slot.confirmation = t.confirmation;
        }
    }
}

fn finish(
    raw: RawConfig,
    file: Option<PathBuf>,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let ttl_ok = |what: &str, v: u32| {
        if TTL_RANGE.contains(&v) {
            Ok(v)
        } else {
            Err(cfg_err(
                source,
                format!("{what} = {v}: an agent's idle session TTL is 60..5400 seconds"),
            ))
        }
    };
    let default_idle_ttl_secs = ttl_ok(
        "default_idle_ttl_secs",
        raw.default_idle_ttl_secs.unwrap_or(600),
    )?;
    let mut agent_ttl_secs = BTreeMap::new();
    for (agent, a) in raw.agents {
        if let Some(t) = a.idle_ttl_secs {
            agent_ttl_secs.insert(
                agent.clone(),
                ttl_ok(&format!("agents.{agent}.idle_ttl_secs"), t)?,
            );
        }
    }
    let mut policy = Policy::default();
    if let Some(t) = raw.policy.default_tier {
        policy.default_tier = t;
    }
    if let Some(r) = raw.policy.default_reason {
        policy.default_reason = r;
    }
    let mut names = std::collections::BTreeSet::new();
    for spec in raw.policy.rules.unwrap_or_default() {
        if !names.insert(spec.name.clone()) {
            return Err(cfg_err(
                source,
                format!("policy rule {:?} is defined twice", spec.name),
            ));
        }
        policy
            .rules
            .push(Rule::compile(spec).map_err(|e| cfg_err(source, format!("policy: {e}")))?);
    }
    for (tier, t) in raw.policy.tiers {
        let d = TierRequirements::default_for(tier);
        let approvers = t.approvers.unwrap_or(d.approvers);
        if approvers == 0 || approvers > 5 {
            return Err(cfg_err(
                source,
                format!("policy.tiers.{tier}.approvers = {approvers}: must be 1 to 5"),
            ));
        }
        policy.tiers[usize::from(tier.rank())] = TierRequirements {
            reason_required: t.reason_required.unwrap_or(d.reason_required),
            approvers,
            confirmation: t.confirmation.unwrap_or(d.confirmation),
        };
    }
    let given = raw.reviewer.filter(|r| !r.trim().is_empty());
    let reviewer_given = given.is_some();
    let reviewer = given.unwrap_or_else(|| default_reviewer(env));
    if reviewer.chars().any(char::is_control) || reviewer.chars().count() > 128 {
        return Err(cfg_err(
            source,
            "reviewer: must be 1..128 printable characters",
        ));
    }
    let metrics = metrics_settings(raw.metrics, raw.prices, source)?;
    Ok(Config {
        metrics,
        reviewer,
        reviewer_given,
        theme: raw.theme.unwrap_or_else(|| "dark".to_owned()),
        store: raw.store,
        default_idle_ttl_secs,
        agent_ttl_secs,
        keys: raw.keys,
        policy,
        file,
    })
}

fn metrics_settings(
    m: RawMetrics,
    prices: BTreeMap<String, RawPrice>,
    source: &str,
) -> Result<crate::domain::metrics::Settings, ConfigError> {
    use crate::domain::metrics::{METRIC_IDS, Objective, Price, Settings};
    let mut objectives = BTreeMap::new();
    for (id, o) in m.objectives {
        if !METRIC_IDS.contains(&id.as_str()) {
            return Err(cfg_err(
                source,
                format!(
                    "metrics.objectives.{id}: no such metric (known: {})",
                    METRIC_IDS.join(", ")
                ),
            ));
        }
        let objective = match (o.min, o.max) {
            (Some(v), None) if v.is_finite() => Objective::AtLeast(v),
            (None, Some(v)) if v.is_finite() => Objective::AtMost(v),
            _ => {
                return Err(cfg_err(
                    source,
                    format!("metrics.objectives.{id}: give exactly one finite `min` or `max`"),
                ));
            }
        };
        objectives.insert(id, objective);
    }
    let secs = m.rubber_stamp_secs.unwrap_or(5.0);
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(cfg_err(
            source,
            format!("metrics.rubber_stamp_secs = {secs}: must be a number of seconds >= 0"),
        ));
    }
    let mut table = BTreeMap::new();
    for (model, p) in prices {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(p.input_per_1k) || !ok(p.output_per_1k) {
            return Err(cfg_err(
                source,
                format!("prices.{model:?}: prices must be finite and >= 0 dollars per 1k tokens"),
            ));
        }
        table.insert(
            model,
            Price {
                input_per_1k: p.input_per_1k,
                output_per_1k: p.output_per_1k,
            },
        );
    }
    #[allow(clippy::cast_possible_truncation)]
    let rubber_stamp_ms = (secs * 1000.0).round() as i64;
    Ok(Settings {
        objectives,
        prices: table,
        rubber_stamp_tier: Some(m.rubber_stamp_tier.unwrap_or(RiskTier::High)),
        rubber_stamp_ms,
    })
}

fn default_reviewer(env: &dyn Fn(&str) -> Option<String>) -> String {
    let user = env("USER")
        .or_else(|| env("LOGNAME"))
        .unwrap_or_else(|| "unknown".to_owned());
    let host = env("HOSTNAME")
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty());
    match host {
        Some(h) => format!("{user}@{h}"),
        None => user,
    }
}

/// `$XDG_CONFIG_HOME/agentdeck/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("agentdeck").join("config.toml"))
}

/// `$XDG_DATA_HOME/agentdeck/agentdeck.db`.
pub fn default_store_path() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("agentdeck")
        .join("agentdeck.db")
}

/// `$XDG_STATE_HOME/agentdeck/` (logs).
pub fn state_dir() -> PathBuf {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("agentdeck")
}

/// User themes live in `$XDG_CONFIG_HOME/agentdeck/themes/NAME.toml`.
pub fn user_theme_path(name: &str) -> Option<PathBuf> {
    dirs::config_dir().map(|d| {
        d.join("agentdeck")
            .join("themes")
            .join(format!("{name}.toml"))
    })
}

/// A parsed `--store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Sqlite(PathBuf),
    /// `dynamodb:TABLE`: team mode on a DynamoDB table (region and credentials from the
    /// standard AWS chain; the endpoint from `--store-endpoint` for a local server).
    Dynamo(String),
}

impl StoreSpec {
    pub fn parse(spec: Option<&str>) -> Result<Self, ConfigError> {
        match spec {
            None => Ok(Self::Sqlite(default_store_path())),
            Some(s) => match s.split_once(':') {
                Some(("sqlite", path)) if !path.is_empty() => Ok(Self::Sqlite(PathBuf::from(path))),
                Some(("dynamodb", table)) if valid_table_name(table) => {
                    Ok(Self::Dynamo(table.to_owned()))
                }
                _ => Err(cfg_err(
                    "--store",
                    format!(
                        "{s:?}: expected sqlite:PATH or dynamodb:TABLE (a table name is 3-255 \
                         of A-Z a-z 0-9 _ - .)"
                    ),
                )),
            },
        }
    }

    pub fn label(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite:{}", p.display()),
            Self::Dynamo(t) => format!("dynamodb:{t}"),
        }
    }

    /// The SQLite file, for the store kinds that have one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(p) => Some(p),
            Self::Dynamo(_) => None,
        }
    }
}

/// DynamoDB's table-name rule.
fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_carry_example_rules() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.default_idle_ttl_secs, 600);
        assert!(
            c.policy
                .rules
                .iter()
                .any(|r| r.spec.name == "large-payment")
        );
        assert_eq!(c.policy.requirements(RiskTier::Critical).approvers, 2);
    }

    #[test]
    fn unknown_keys_name_the_file_and_key() {
        let e = Config::from_toml("/tmp/x.toml", "revewer = \"a\"").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("/tmp/x.toml") && s.contains("revewer"), "{s}");
        let e = Config::from_toml("f.toml", "[policy.tiers.high]\napprovers = 0").unwrap_err();
        assert!(e.to_string().contains("approvers = 0"), "{e}");
        let e = Config::from_toml("f.toml", "[agents.A1]\nidle_ttl_secs = 10").unwrap_err();
        assert!(e.to_string().contains("agents.A1.idle_ttl_secs"), "{e}");
        let e = Config::from_toml("f.toml", "[[policy.rules]]\nname='x'\nwhen=['amount >> 5']\ntier='low'\nreason='compliance-check'").unwrap_err();
        assert!(e.to_string().contains("rule \"x\""), "{e}");
    }

    #[test]
    fn layers_merge_partially() {
        let c = Config::from_toml(
            "f.toml",
            "reviewer = \"alice\"\n[agents.AG1]\nidle_ttl_secs = 900\n[policy.tiers.critical]\napprovers = 3\n",
        )
        .unwrap();
        assert_eq!(c.reviewer, "alice");
        assert_eq!((c.ttl_secs("AG1"), c.ttl_secs("OTHER")), (900, 600));
        let crit = c.policy.requirements(RiskTier::Critical);
        assert_eq!((crit.approvers, crit.reason_required), (3, true));
        assert!(
            !c.policy.rules.is_empty(),
            "rules not replaced when the file has none"
        );
    }

    #[test]
    fn store_spec_parses() {
        assert_eq!(
            StoreSpec::parse(Some("sqlite:/tmp/a.db")).unwrap(),
            StoreSpec::Sqlite(PathBuf::from("/tmp/a.db"))
        );
        assert!(StoreSpec::parse(Some("mysql:x")).is_err());
        assert!(StoreSpec::parse(Some("sqlite:")).is_err());
        assert_eq!(
            StoreSpec::parse(Some("dynamodb:agentdeck-team")).unwrap(),
            StoreSpec::Dynamo("agentdeck-team".to_owned())
        );
        assert!(StoreSpec::parse(Some("dynamodb:a b")).is_err());
    }
}
