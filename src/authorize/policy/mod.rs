//! [`Policy`]: an IAM JSON policy document (the subset s3tap supports),
//! parsed once and evaluated per request, and the named shorthands.
//!
//! The subset: `Version`, `Id`, and `Statement` (one object or a list) whose
//! statements have `Sid`, `Effect` (`Allow`/`Deny`), `Action` or
//! `NotAction` (`s3:` names, `*` and `?` wildcards, case-insensitive),
//! `Resource` (`*`, `arn:aws:s3:::bucket`, `arn:aws:s3:::bucket/key-pattern`
//! with wildcards, case-sensitive) and `Condition` with
//!
//! | operator | keys |
//! |---|---|
//! | `StringEquals`, `StringLike` | `s3:prefix`, `s3:delimiter` |
//! | `IpAddress`, `NotIpAddress` | `aws:SourceIp` (CIDR or one address) |
//! | `Bool` | `aws:SecureTransport` |
//! | `DateLessThan` | `aws:CurrentTime` (ISO 8601 UTC or epoch seconds) |
//!
//! Anything else (`Principal`, `NotResource`, other operators or keys,
//! policy variables) is an error, never silently ignored.
//!
//! Evaluation follows IAM: a statement applies when its action, resource
//! and every condition match; several values of one condition key match if
//! any does; several keys or operators must all match. A condition on a key
//! the request does not have is false, except for the negated
//! `NotIpAddress`, which is then true. Any applying `Deny` wins; otherwise
//! any applying `Allow` allows; otherwise the request is denied.

mod matching;
mod shorthand;

use std::net::IpAddr;
use std::time::SystemTime;

use serde_json::Value;

pub use shorthand::Access;

use super::error::PolicyError;
use matching::{parse_date, wildcard, Cidr};

/// A parsed policy: its statements, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// The outcome of evaluating one request against a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// An `Allow` statement applies and no `Deny` does.
    Allow,
    /// A `Deny` statement applies (it overrides any `Allow`).
    ExplicitDeny,
    /// No statement applies: denied by default.
    ImplicitDeny,
}

impl Decision {
    /// `explicit_deny`, `implicit_deny` or `allow`: a stable label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::ExplicitDeny => "explicit_deny",
            Decision::ImplicitDeny => "implicit_deny",
        }
    }
}

/// What a policy is evaluated against: one action on one resource, and the
/// condition keys the request has.
#[derive(Clone, Debug)]
pub struct RequestContext<'a> {
    action: &'a str,
    resource: &'a str,
    prefix: Option<&'a str>,
    delimiter: Option<&'a str>,
    source_ip: Option<IpAddr>,
    secure_transport: bool,
    current_time: SystemTime,
}

impl<'a> RequestContext<'a> {
    /// `action` (`s3:GetObject`) on `resource` (`arn:aws:s3:::bucket/key`)
    /// at `current_time`, over plain HTTP from an unknown address.
    pub fn new(action: &'a str, resource: &'a str, current_time: SystemTime) -> Self {
        RequestContext {
            action,
            resource,
            prefix: None,
            delimiter: None,
            source_ip: None,
            secure_transport: false,
            current_time,
        }
    }

    /// The listing's `prefix` parameter (`s3:prefix`).
    pub fn prefix(mut self, prefix: Option<&'a str>) -> Self {
        self.prefix = prefix;
        self
    }

    /// The listing's `delimiter` parameter (`s3:delimiter`).
    pub fn delimiter(mut self, delimiter: Option<&'a str>) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// The client's address (`aws:SourceIp`).
    pub fn source_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.source_ip = ip;
        self
    }

    /// Whether the request came over TLS (`aws:SecureTransport`).
    pub fn secure_transport(mut self, secure: bool) -> Self {
        self.secure_transport = secure;
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Clone, Debug, PartialEq)]
struct Statement {
    effect: Effect,
    /// `NotAction` instead of `Action`.
    not_action: bool,
    /// Lower-cased action patterns.
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringLike,
    IpAddress,
    NotIpAddress,
    Bool,
    DateLessThan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Prefix,
    Delimiter,
    SourceIp,
    SecureTransport,
    CurrentTime,
}

#[derive(Clone, Debug, PartialEq)]
enum Condition {
    String {
        like: bool,
        key: Key,
        values: Vec<String>,
    },
    Ip {
        negated: bool,
        blocks: Vec<Cidr>,
    },
    Bool(Vec<bool>),
    DateLessThan(Vec<i64>),
}

impl Policy {
    /// Parses a policy document (JSON).
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))?;
        let Value::Object(document) = value else {
            return Err(shape("a policy is a JSON object"));
        };
        let mut statements = None;
        for (name, value) in &document {
            match name.as_str() {
                "Version" => match value.as_str() {
                    Some("2012-10-17" | "2008-10-17") => {}
                    _ => return Err(PolicyError::Value(format!("Version {value}"))),
                },
                "Id" => {}
                "Statement" => {
                    statements = Some(match value {
                        Value::Array(list) => list
                            .iter()
                            .map(Statement::parse)
                            .collect::<Result<Vec<_>, _>>()?,
                        object @ Value::Object(_) => vec![Statement::parse(object)?],
                        _ => return Err(shape("Statement is an object or a list of them")),
                    })
                }
                other => return Err(PolicyError::Unsupported(format!("element {other}"))),
            }
        }
        let statements = statements.ok_or_else(|| shape("no Statement"))?;
        Ok(Policy { statements })
    }

    /// The policy of a named shorthand (`readonly`, `writeonly`,
    /// `readwrite`) on `scopes`: each `bucket` (all of it) or
    /// `bucket/prefix` (keys starting with `prefix`; a trailing `*` is
    /// optional).
    pub fn shorthand<I, T>(access: Access, scopes: I) -> Result<Policy, PolicyError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        shorthand::statements(access, scopes)
    }

    /// Both policies' statements, as one policy.
    pub fn merge(mut self, other: Policy) -> Policy {
        self.statements.extend(other.statements);
        self
    }

    /// How many statements the policy has.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    /// Whether the policy has no statement (it then denies everything).
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Evaluates one request: a `Deny` that applies wins, then an `Allow`,
    /// else [`Decision::ImplicitDeny`].
    pub fn evaluate(&self, request: &RequestContext<'_>) -> Decision {
        let mut allowed = false;
        for statement in &self.statements {
            if statement.applies(request) {
                match statement.effect {
                    Effect::Deny => return Decision::ExplicitDeny,
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

fn shape(message: &str) -> PolicyError {
    PolicyError::Shape(message.to_owned())
}

/// A string or a list of strings (`"Action": "s3:GetObject"` or `[...]`).
fn strings(value: &Value, element: &str) -> Result<Vec<String>, PolicyError> {
    let list = match value {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) if !many.is_empty() => many
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| shape(&format!("{element} holds strings")))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(shape(&format!(
                "{element} is a string or a list of strings"
            )))
        }
    };
    Ok(list)
}

impl Statement {
    fn parse(value: &Value) -> Result<Statement, PolicyError> {
        let Value::Object(fields) = value else {
            return Err(shape("a statement is an object"));
        };
        let mut effect = None;
        let mut actions = None;
        let mut resources = None;
        let mut conditions = Vec::new();
        for (name, value) in fields {
            match name.as_str() {
                "Sid" => {}
                "Effect" => {
                    effect = Some(match value.as_str() {
                        Some("Allow") => Effect::Allow,
                        Some("Deny") => Effect::Deny,
                        _ => return Err(PolicyError::Value(format!("Effect {value}"))),
                    })
                }
                "Action" | "NotAction" => {
                    if actions.is_some() {
                        return Err(shape("a statement has Action or NotAction, not both"));
                    }
                    let patterns = strings(value, name)?
                        .into_iter()
                        .map(|action| check_action(&action).map(|()| action.to_lowercase()))
                        .collect::<Result<Vec<_>, _>>()?;
                    actions = Some((name == "NotAction", patterns));
                }
                "Resource" => {
                    let list = strings(value, name)?;
                    for resource in &list {
                        check_resource(resource)?;
                    }
                    resources = Some(list);
                }
                "Condition" => conditions = parse_conditions(value)?,
                other => {
                    return Err(PolicyError::Unsupported(format!(
                        "statement element {other}"
                    )))
                }
            }
        }
        let effect = effect.ok_or_else(|| shape("a statement needs Effect"))?;
        let (not_action, actions) =
            actions.ok_or_else(|| shape("a statement needs Action or NotAction"))?;
        let resources = resources.ok_or_else(|| shape("a statement needs Resource"))?;
        Ok(Statement {
            effect,
            not_action,
            actions,
            resources,
            conditions,
        })
    }

    fn applies(&self, request: &RequestContext<'_>) -> bool {
        let action = request.action.to_lowercase();
        let named = self
            .actions
            .iter()
            .any(|pattern| wildcard(pattern, &action, false));
        named != self.not_action
            && self
                .resources
                .iter()
                .any(|pattern| wildcard(pattern, request.resource, false))
            && self.conditions.iter().all(|c| c.holds(request))
    }
}

fn check_action(action: &str) -> Result<(), PolicyError> {
    if action == "*" {
        return Ok(());
    }
    match action.split_once(':') {
        Some((service, name)) if !service.is_empty() && !name.is_empty() => Ok(()),
        _ => Err(PolicyError::Value(format!(
            "action {action:?} (expected service:Name, such as s3:GetObject)"
        ))),
    }
}

fn check_resource(resource: &str) -> Result<(), PolicyError> {
    if resource.contains("${") {
        return Err(PolicyError::Unsupported(format!(
            "policy variables in Resource {resource:?}"
        )));
    }
    if resource == "*" || resource.starts_with("arn:aws:s3:::") {
        Ok(())
    } else {
        Err(PolicyError::Value(format!(
            "Resource {resource:?} (expected \"*\" or arn:aws:s3:::bucket[/key])"
        )))
    }
}

fn parse_conditions(value: &Value) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(operators) = value else {
        return Err(shape("Condition is an object of operators"));
    };
    let mut out = Vec::new();
    for (operator, keys) in operators {
        let op = match operator.as_str() {
            "StringEquals" => Operator::StringEquals,
            "StringLike" => Operator::StringLike,
            "IpAddress" => Operator::IpAddress,
            "NotIpAddress" => Operator::NotIpAddress,
            "Bool" => Operator::Bool,
            "DateLessThan" => Operator::DateLessThan,
            other => {
                return Err(PolicyError::Unsupported(format!(
                    "condition operator {other}"
                )))
            }
        };
        let Value::Object(keys) = keys else {
            return Err(shape(&format!("{operator} is an object of condition keys")));
        };
        out.extend(
            keys.iter()
                .map(|(key, values)| parse_condition(op, key, values))
                .collect::<Result<Vec<_>, _>>()?,
        );
        if keys.is_empty() {
            return Err(shape(&format!("{operator} names no condition key")));
        }
    }
    Ok(out)
}

fn parse_condition(op: Operator, key: &str, values: &Value) -> Result<Condition, PolicyError> {
    // Condition key names are case-insensitive in IAM.
    let key_id = match key.to_ascii_lowercase().as_str() {
        "s3:prefix" => Key::Prefix,
        "s3:delimiter" => Key::Delimiter,
        "aws:sourceip" => Key::SourceIp,
        "aws:securetransport" => Key::SecureTransport,
        "aws:currenttime" => Key::CurrentTime,
        _ => return Err(PolicyError::Unsupported(format!("condition key {key}"))),
    };
    let unsupported =
        || PolicyError::Unsupported(format!("condition key {key} with operator {op:?}"));
    let condition = match op {
        Operator::StringEquals | Operator::StringLike => {
            if !matches!(key_id, Key::Prefix | Key::Delimiter) {
                return Err(unsupported());
            }
            Condition::String {
                like: op == Operator::StringLike,
                key: key_id,
                values: strings(values, key)?,
            }
        }
        Operator::IpAddress | Operator::NotIpAddress => {
            if key_id != Key::SourceIp {
                return Err(unsupported());
            }
            let blocks = strings(values, key)?
                .iter()
                .map(|text| {
                    Cidr::parse(text)
                        .ok_or_else(|| PolicyError::Value(format!("{key} address {text:?}")))
                })
                .collect::<Result<_, _>>()?;
            Condition::Ip {
                negated: op == Operator::NotIpAddress,
                blocks,
            }
        }
        Operator::Bool => {
            if key_id != Key::SecureTransport {
                return Err(unsupported());
            }
            let list: Vec<Value> = match values {
                Value::Array(list) if !list.is_empty() => list.clone(),
                one @ (Value::Bool(_) | Value::String(_)) => vec![one.clone()],
                _ => return Err(shape(&format!("{key} is a bool or a list of them"))),
            };
            Condition::Bool(
                list.iter()
                    .map(|value| match value {
                        Value::Bool(b) => Ok(*b),
                        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
                        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
                        other => Err(PolicyError::Value(format!("{key} {other}"))),
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        Operator::DateLessThan => {
            if key_id != Key::CurrentTime {
                return Err(unsupported());
            }
            let list: Vec<String> = match values {
                Value::Number(n) => vec![n.to_string()],
                other => strings(other, key)?,
            };
            Condition::DateLessThan(
                list.iter()
                    .map(|text| {
                        parse_date(text)
                            .ok_or_else(|| PolicyError::Value(format!("{key} date {text:?}")))
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
    };
    Ok(condition)
}

impl Condition {
    fn holds(&self, request: &RequestContext<'_>) -> bool {
        match self {
            Condition::String { like, key, values } => {
                let present = match key {
                    Key::Prefix => request.prefix,
                    Key::Delimiter => request.delimiter,
                    _ => None,
                };
                let Some(present) = present else {
                    return false;
                };
                values.iter().any(|value| {
                    if *like {
                        wildcard(value, present, false)
                    } else {
                        value == present
                    }
                })
            }
            Condition::Ip { negated, blocks } => match request.source_ip {
                Some(ip) => blocks.iter().any(|block| block.contains(ip)) != *negated,
                // A negated operator on a key the request lacks is true.
                None => *negated,
            },
            Condition::Bool(values) => values.contains(&request.secure_transport),
            Condition::DateLessThan(limits) => {
                let now = match request.current_time.duration_since(SystemTime::UNIX_EPOCH) {
                    Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    Err(_) => 0,
                };
                limits.iter().any(|&limit| now < limit)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        for (text, needle) in [
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Principal":"*"}}"#,
                "Principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","NotResource":"*"}}"#,
                "NotResource",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringNotLike":{"s3:prefix":"a"}}}}"#,
                "StringNotLike",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringLike":{"aws:SourceIp":"a"}}}}"#,
                "aws:SourceIp",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::${aws:username}/*"}}"#,
                "variables",
            ),
            (
                r#"{"Statement":{"Effect":"allow","Action":"*","Resource":"*"}}"#,
                "Effect",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Resource":"*"}}"#,
                "Action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"GetObject","Resource":"*"}}"#,
                "GetObject",
            ),
            (r#"{"Version":"2020-01-01","Statement":[]}"#, "Version"),
            (r#"[1]"#, "object"),
        ] {
            let error = Policy::from_json(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn not_ip_address_holds_without_an_address() {
        let policy = Policy::from_json(
            r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*",
                "Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}}"#,
        )
        .unwrap();
        let request = RequestContext::new("s3:GetObject", "arn:aws:s3:::b/k", at());
        assert_eq!(policy.evaluate(&request), Decision::ExplicitDeny);
    }
}
