//! The approval policy: rules that give each invocation input a risk tier and a control reason,
//! and the requirements each tier puts on a decision. Pure: parsed from config, evaluated on data.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use super::approval::InvocationInput;

/// How dangerous an action is. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskTier {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskTier {
    pub const ALL: [Self; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    pub fn word(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// A symbol that carries the tier without colour.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Low => "·",
            Self::Medium => "▲",
            Self::High => "▲▲",
            Self::Critical => "▲▲▲",
        }
    }

    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn from_rank(rank: u8) -> Option<Self> {
        Self::ALL.get(usize::from(rank)).copied()
    }
}

impl fmt::Display for RiskTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl FromStr for RiskTier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.word() == s)
            .ok_or_else(|| {
                format!("unknown risk tier {s:?} (expected low, medium, high or critical)")
            })
    }
}

/// Why a human must look at this action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlReason {
    ApprovalRequired,
    ComplianceCheck,
    BudgetExceeded,
    HighRiskAction,
    HumanPreference,
}

impl ControlReason {
    pub const ALL: [Self; 5] = [
        Self::ApprovalRequired,
        Self::ComplianceCheck,
        Self::BudgetExceeded,
        Self::HighRiskAction,
        Self::HumanPreference,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApprovalRequired => "approval-required",
            Self::ComplianceCheck => "compliance-check",
            Self::BudgetExceeded => "budget-exceeded",
            Self::HighRiskAction => "high-risk-action",
            Self::HumanPreference => "human-preference",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for ControlReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison on one parameter, e.g. `amount > 1000` or `account matches prod-*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    pub param: String,
    pub op: Op,
    pub operand: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
    Matches,
    Contains,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Matches => "matches",
            Self::Contains => "contains",
        }
    }

    fn is_numeric(self) -> bool {
        matches!(self, Self::Gt | Self::Ge | Self::Lt | Self::Le)
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.param, self.op.as_str(), self.operand)
    }
}

impl FromStr for Predicate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Longest operators first so `>=` is not read as `>`.
        const OPS: [(&str, Op); 8] = [
            (" matches ", Op::Matches),
            (" contains ", Op::Contains),
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        let s = s.trim();
        for (token, op) in OPS {
            if let Some((lhs, rhs)) = s.split_once(token) {
                let param = lhs.trim();
                let operand = rhs.trim().trim_matches('"');
                if param.is_empty() || param.contains(char::is_whitespace) {
                    return Err(format!(
                        "predicate {s:?}: expected a parameter name before {:?}",
                        op.as_str()
                    ));
                }
                if operand.is_empty() {
                    return Err(format!(
                        "predicate {s:?}: missing a value after {:?}",
                        op.as_str()
                    ));
                }
                if op.is_numeric() && parse_number(operand).is_none() {
                    return Err(format!("predicate {s:?}: {operand:?} is not a number"));
                }
                return Ok(Self {
                    param: param.to_owned(),
                    op,
                    operand: operand.to_owned(),
                });
            }
        }
        Err(format!(
            "predicate {s:?}: expected `NAME OP VALUE` with OP one of > >= < <= == != matches contains"
        ))
    }
}

/// Parses a number as a human would read it: `1000`, `1,000.50`, `1e6`, `-3`, `$1,000`.
/// Returns None when the text is not unambiguously a number.
fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    let t = t.strip_prefix('$').unwrap_or(t);
    let cleaned: String = t.chars().filter(|c| *c != ',' && *c != '_').collect();
    let n: f64 = cleaned.parse().ok()?;
    n.is_finite().then_some(n)
}

/// The outcome of checking one predicate against an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Holds,
    Fails,
    /// The parameter's value could not be read as a number: treated as holding (fail closed),
    /// so an agent cannot dodge `amount > 1000` by writing `one million`.
    Unreadable,
}

impl Predicate {
    fn check(&self, input: &InvocationInput) -> Check {
        let params = input.all_parameters();
        let Some(param) = params.iter().find(|p| p.name == self.param) else {
            return Check::Fails;
        };
        let value = param.value.as_str();
        let numeric = |cmp: fn(f64, f64) -> bool| {
            let operand = parse_number(&self.operand).unwrap_or(f64::NAN);
            match parse_number(value) {
                Some(v) if cmp(v, operand) => Check::Holds,
                Some(_) => Check::Fails,
                None => Check::Unreadable,
            }
        };
        let boolean = |b: bool| if b { Check::Holds } else { Check::Fails };
        match self.op {
            Op::Gt => numeric(|a, b| a > b),
            Op::Ge => numeric(|a, b| a >= b),
            Op::Lt => numeric(|a, b| a < b),
            Op::Le => numeric(|a, b| a <= b),
            Op::Eq => boolean(value == self.operand),
            Op::Ne => boolean(value != self.operand),
            Op::Matches => boolean(WildMatch::new(&self.operand).matches(value)),
            Op::Contains => boolean(value.contains(&self.operand)),
        }
    }
}

/// One rule of the policy, as written in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// Glob on the action group name (`*` and `?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_group: Option<String>,
    /// Glob on the function name (function form only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Glob on the API path (API form only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_path: Option<String>,
    /// Glob on the HTTP method (API form only), e.g. `DELETE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    /// Predicates on parameters; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<String>,
    pub tier: RiskTier,
    pub reason: ControlReason,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub spec: RuleSpec,
    predicates: Vec<Predicate>,
}

impl Rule {
    pub fn compile(spec: RuleSpec) -> Result<Self, String> {
        if spec.name.trim().is_empty() {
            return Err("a policy rule needs a non-empty `name`".to_owned());
        }
        let predicates = spec
            .when
            .iter()
            .map(|w| w.parse::<Predicate>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("rule {:?}: {e}", spec.name))?;
        Ok(Self { spec, predicates })
    }

    fn evaluate(&self, input: &InvocationInput) -> Option<Vec<String>> {
        let glob = |pattern: &Option<String>, value: Option<&str>| match (pattern, value) {
            (None, _) => true,
            (Some(p), Some(v)) => WildMatch::new(p).matches(v),
            (Some(_), None) => false,
        };
        if !glob(&self.spec.action_group, Some(&input.action_group))
            || !glob(&self.spec.function, input.function())
            || !glob(&self.spec.api_path, input.api_path())
            || !glob(&self.spec.http_method, input.http_method())
        {
            return None;
        }
        let mut notes = Vec::new();
        for p in &self.predicates {
            match p.check(input) {
                Check::Holds => {}
                Check::Fails => return None,
                Check::Unreadable => notes.push(format!(
                    "`{p}`: the value of {} is not a number, so the rule applies (fail closed)",
                    p.param
                )),
            }
        }
        Some(notes)
    }
}

/// How a decision on a tier must be confirmed in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confirmation {
    /// One key press decides.
    None,
    /// The decision key must be pressed a second time.
    SecondPress,
    /// The reviewer types a word (the function name, or the last segment of the API path).
    TypedWord,
}

/// What a tier demands of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRequirements {
    /// An approval must carry a reason (a rejection always must).
    pub reason_required: bool,
    /// Distinct reviewers who must approve before the input counts as confirmed.
    pub approvers: u8,
    pub confirmation: Confirmation,
}

impl TierRequirements {
    pub fn default_for(tier: RiskTier) -> Self {
        match tier {
            RiskTier::Low | RiskTier::Medium => Self {
                reason_required: false,
                approvers: 1,
                confirmation: Confirmation::None,
            },
            RiskTier::High => Self {
                reason_required: false,
                approvers: 1,
                confirmation: Confirmation::SecondPress,
            },
            RiskTier::Critical => Self {
                reason_required: true,
                approvers: 2,
                confirmation: Confirmation::TypedWord,
            },
        }
    }
}

/// What the policy concluded for one invocation input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    pub tier: RiskTier,
    pub reason: ControlReason,
    /// The rule that set the tier; None when the default applied.
    pub rule: Option<String>,
    /// The rule's conditions as written, for the detail view.
    pub rule_text: Option<String>,
    /// Anything the reviewer should know about how the rule matched (e.g. fail-closed numbers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The whole policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub default_tier: RiskTier,
    pub default_reason: ControlReason,
    pub tiers: [TierRequirements; 4],
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default_tier: RiskTier::Medium,
            default_reason: ControlReason::ApprovalRequired,
            tiers: RiskTier::ALL.map(TierRequirements::default_for),
        }
    }
}

impl Policy {
    pub fn requirements(&self, tier: RiskTier) -> TierRequirements {
        self.tiers[usize::from(tier.rank())]
    }

    /// Every matching rule is considered; the highest tier wins, the first written on ties.
    pub fn assess(&self, input: &InvocationInput) -> Assessment {
        let mut best: Option<(&Rule, Vec<String>)> = None;
        for rule in &self.rules {
            if let Some(notes) = rule.evaluate(input) {
                let better = best
                    .as_ref()
                    .is_none_or(|(b, _)| rule.spec.tier > b.spec.tier);
                if better {
                    best = Some((rule, notes));
                }
            }
        }
        match best {
            Some((rule, notes)) => Assessment {
                tier: rule.spec.tier,
                reason: rule.spec.reason,
                rule: Some(rule.spec.name.clone()),
                rule_text: Some(describe(&rule.spec)),
                notes,
            },
            None => Assessment {
                tier: self.default_tier,
                reason: self.default_reason,
                rule: None,
                rule_text: None,
                notes: Vec::new(),
            },
        }
    }
}

fn describe(spec: &RuleSpec) -> String {
    let mut parts = Vec::new();
    if let Some(g) = &spec.action_group {
        parts.push(format!("actionGroup ~ {g}"));
    }
    if let Some(f) = &spec.function {
        parts.push(format!("function ~ {f}"));
    }
    if let Some(m) = &spec.http_method {
        parts.push(format!("httpMethod ~ {m}"));
    }
    if let Some(p) = &spec.api_path {
        parts.push(format!("apiPath ~ {p}"));
    }
    parts.extend(spec.when.iter().cloned());
    if parts.is_empty() {
        "every action".to_owned()
    } else {
        parts.join(" and ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::domain::approval::{ActionInvocationType, ActionTarget, Parameter};

    fn input(group: &str, function: &str, params: &[(&str, &str)]) -> InvocationInput {
        InvocationInput {
            action_group: group.to_owned(),
            target: ActionTarget::Function {
                function: function.to_owned(),
            },
            parameters: params
                .iter()
                .map(|(n, v)| Parameter {
                    name: (*n).to_owned(),
                    kind: "string".to_owned(),
                    value: (*v).to_owned(),
                })
                .collect(),
            invocation_type: ActionInvocationType::UserConfirmation,
            agent_id: None,
            collaborator_name: None,
        }
    }

    fn policy(rules: &[(&str, Option<&str>, &[&str], RiskTier)]) -> Policy {
        Policy {
            rules: rules
                .iter()
                .map(|(name, group, when, tier)| {
                    Rule::compile(RuleSpec {
                        name: (*name).to_owned(),
                        action_group: group.map(str::to_owned),
                        function: None,
                        api_path: None,
                        http_method: None,
                        when: when.iter().map(|s| (*s).to_owned()).collect(),
                        tier: *tier,
                        reason: ControlReason::BudgetExceeded,
                    })
                    .unwrap()
                })
                .collect(),
            ..Policy::default()
        }
    }

    #[test]
    fn predicates_parse_and_reject_nonsense() {
        let p: Predicate = "amount > 1000".parse().unwrap();
        assert_eq!(
            (p.param.as_str(), p.op, p.operand.as_str()),
            ("amount", Op::Gt, "1000")
        );
        let p: Predicate = "account matches prod-*".parse().unwrap();
        assert_eq!(p.op, Op::Matches);
        let p: Predicate = "amount >= 5".parse().unwrap();
        assert_eq!(p.op, Op::Ge);
        assert!(
            "amount > lots"
                .parse::<Predicate>()
                .unwrap_err()
                .contains("not a number")
        );
        assert!("> 5".parse::<Predicate>().is_err());
        assert!("amount".parse::<Predicate>().is_err());
        assert!("amount >".parse::<Predicate>().is_err());
    }

    #[test]
    fn highest_tier_wins_and_default_applies() {
        let pol = policy(&[
            ("big", None, &["amount > 1000"], RiskTier::High),
            (
                "prod",
                Some("pay*"),
                &["account matches prod-*"],
                RiskTier::Critical,
            ),
        ]);
        let a = pol.assess(&input(
            "payments",
            "transfer",
            &[("amount", "5000"), ("account", "prod-7")],
        ));
        assert_eq!(
            (a.tier, a.rule.as_deref()),
            (RiskTier::Critical, Some("prod"))
        );
        let a = pol.assess(&input(
            "payments",
            "transfer",
            &[("amount", "5000"), ("account", "dev-7")],
        ));
        assert_eq!((a.tier, a.rule.as_deref()), (RiskTier::High, Some("big")));
        let a = pol.assess(&input("payments", "transfer", &[("amount", "10")]));
        assert_eq!((a.tier, a.rule), (RiskTier::Medium, None));
    }

    #[test]
    fn numbers_read_as_humans_write_them_and_unreadable_fails_closed() {
        let pol = policy(&[("big", None, &["amount > 1000"], RiskTier::High)]);
        for v in ["1,500", "$2000", "1e4", "1000.01"] {
            assert_eq!(
                pol.assess(&input("p", "t", &[("amount", v)])).tier,
                RiskTier::High,
                "{v}"
            );
        }
        assert_eq!(
            pol.assess(&input("p", "t", &[("amount", "999")])).tier,
            RiskTier::Medium
        );
        let a = pol.assess(&input("p", "t", &[("amount", "one million")]));
        assert_eq!(a.tier, RiskTier::High);
        assert!(a.notes[0].contains("fail closed"));
    }

    #[test]
    fn body_properties_count_as_parameters() {
        let pol = policy(&[("big", None, &["amount > 1000"], RiskTier::High)]);
        let mut i = input("p", "t", &[]);
        i.target = ActionTarget::Api {
            api_path: "/transfers".to_owned(),
            http_method: "POST".to_owned(),
            request_body: Some(
                serde_json::json!({"content": {"application/json": {"properties": [
                {"name": "amount", "type": "number", "value": "5000"}]}}}),
            ),
        };
        assert_eq!(pol.assess(&i).tier, RiskTier::High);
    }
}
