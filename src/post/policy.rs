//! The POST policy document: its parsing (base64 JSON with `expiration`
//! and `conditions`) and the check of a form's fields against it.

use std::fmt;

use base64::Engine as _;
use serde_json::Value;

use super::form::FormFields;
use crate::sigv4::AmzDate;

/// One condition of a policy's `conditions` list. Field names are kept in
/// lower case without the `$`: form field names are case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `{"field": "value"}` or `["eq", "$field", "value"]`.
    Eq {
        /// The field, lower case.
        field: String,
        /// The exact value.
        value: String,
    },
    /// `["starts-with", "$field", "prefix"]` (an empty prefix allows any
    /// value, but the field must be sent).
    StartsWith {
        /// The field, lower case.
        field: String,
        /// The value's required start.
        prefix: String,
    },
    /// `["content-length-range", min, max]`: the file's size in bytes.
    ContentLengthRange {
        /// Smallest allowed size.
        min: u64,
        /// Largest allowed size.
        max: u64,
    },
}

impl Condition {
    fn field(&self) -> Option<&str> {
        match self {
            Condition::Eq { field, .. } | Condition::StartsWith { field, .. } => Some(field),
            Condition::ContentLengthRange { .. } => None,
        }
    }
}

/// How a condition is written in S3's error messages.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = |text: &str| Value::String(text.to_owned()).to_string();
        match self {
            Condition::Eq { field, value } => {
                write!(
                    f,
                    "[\"eq\", {}, {}]",
                    quoted(&format!("${field}")),
                    quoted(value)
                )
            }
            Condition::StartsWith { field, prefix } => write!(
                f,
                "[\"starts-with\", {}, {}]",
                quoted(&format!("${field}")),
                quoted(prefix)
            ),
            Condition::ContentLengthRange { min, max } => {
                write!(f, "[\"content-length-range\", {min}, {max}]")
            }
        }
    }
}

/// Why a policy document could not be read (S3: `InvalidPolicyDocument`,
/// 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The `policy` field is not base64.
    #[error("Invalid Policy: Policy is not base64 encoded.")]
    NotBase64,
    /// The decoded policy is not a JSON object.
    #[error("Invalid Policy: Invalid JSON.")]
    NotJson,
    /// No `expiration` (the name is case-sensitive).
    #[error("Invalid Policy: Policy missing expiration.")]
    MissingExpiration,
    /// `expiration` is not an ISO 8601 UTC time.
    #[error("Invalid Policy: Invalid 'expiration' value: {0:?}")]
    BadExpiration(String),
    /// No `conditions` list (the name is case-sensitive).
    #[error("Invalid Policy: Policy missing conditions.")]
    MissingConditions,
    /// A condition is not one S3 knows, or its arguments are wrong.
    #[error("Invalid Policy: Invalid Simple-Condition: {0}")]
    BadCondition(String),
}

/// Why a form does not satisfy its policy (S3: `AccessDenied`, 403, "Invalid
/// according to Policy: ...").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    /// The policy's expiration has passed.
    #[error("Invalid according to Policy: Policy expired.")]
    Expired,
    /// A condition does not hold.
    #[error("Invalid according to Policy: Policy Condition failed: {0}")]
    ConditionFailed(String),
    /// A form field no condition names.
    #[error("Invalid according to Policy: Extra input fields: {0}")]
    ExtraField(String),
}

/// A parsed POST policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostPolicy {
    /// When the policy stops being valid, Unix seconds.
    pub expiration: i64,
    /// The conditions, in document order.
    pub conditions: Vec<Condition>,
}

/// Form fields a policy need not name (AWS's list; `x-ignore-*` too).
const EXEMPT_FIELDS: [&str; 3] = ["x-amz-signature", "file", "policy"];

impl PostPolicy {
    /// Decodes the base64 `policy` form field and parses it.
    pub fn from_base64(policy: &str) -> Result<PostPolicy, PolicyError> {
        let json = base64::engine::general_purpose::STANDARD
            .decode(policy.trim().as_bytes())
            .map_err(|_| PolicyError::NotBase64)?;
        PostPolicy::from_json(&json)
    }

    /// Parses a policy document (JSON).
    pub fn from_json(json: &[u8]) -> Result<PostPolicy, PolicyError> {
        let document: Value = serde_json::from_slice(json).map_err(|_| PolicyError::NotJson)?;
        let Value::Object(document) = document else {
            return Err(PolicyError::NotJson);
        };
        let expiration = match document.get("expiration") {
            Some(Value::String(text)) => {
                parse_expiration(text).ok_or_else(|| PolicyError::BadExpiration(text.clone()))?
            }
            Some(other) => return Err(PolicyError::BadExpiration(other.to_string())),
            None => return Err(PolicyError::MissingExpiration),
        };
        let Some(Value::Array(list)) = document.get("conditions") else {
            return Err(PolicyError::MissingConditions);
        };
        let mut conditions = Vec::with_capacity(list.len());
        for item in list {
            parse_condition(item, &mut conditions)?;
        }
        Ok(PostPolicy {
            expiration,
            conditions,
        })
    }

    /// The `content-length-range` the file must fit, if the policy sets one
    /// (several narrow each other).
    pub fn content_length_range(&self) -> Option<(u64, u64)> {
        self.conditions
            .iter()
            .filter_map(|condition| match condition {
                Condition::ContentLengthRange { min, max } => Some((*min, *max)),
                _ => None,
            })
            .reduce(|(a_min, a_max), (b_min, b_max)| (a_min.max(b_min), a_max.min(b_max)))
    }

    /// Checks everything but the file's size: expiration at `now` (Unix
    /// seconds), every `eq` and `starts-with` against `fields` (and the
    /// request's `bucket`), and that every field sent is named by a
    /// condition.
    pub fn check(
        &self,
        fields: &FormFields,
        bucket: &str,
        now: i64,
    ) -> Result<(), PolicyViolation> {
        if now >= self.expiration {
            return Err(PolicyViolation::Expired);
        }
        let value_of = |field: &str| -> Option<&str> {
            if field == "bucket" {
                Some(bucket)
            } else {
                fields.get(field)
            }
        };
        for condition in &self.conditions {
            let holds = match condition {
                Condition::Eq { field, value } => value_of(field) == Some(value.as_str()),
                Condition::StartsWith { field, prefix } => {
                    value_of(field).is_some_and(|v| starts_with(field, v, prefix))
                }
                Condition::ContentLengthRange { .. } => true,
            };
            if !holds {
                return Err(PolicyViolation::ConditionFailed(condition.to_string()));
            }
        }
        let named = |field: &str| self.conditions.iter().any(|c| c.field() == Some(field));
        if !named("bucket") {
            return Err(PolicyViolation::ExtraField("bucket".to_owned()));
        }
        for (name, _) in fields.iter() {
            let exempt = EXEMPT_FIELDS.contains(&name) || name.starts_with("x-ignore-");
            if !exempt && !named(name) {
                return Err(PolicyViolation::ExtraField(name.to_owned()));
            }
        }
        Ok(())
    }
}

/// `starts-with` on `Content-Type` may list several types separated by
/// commas, each of which must start with the prefix (as S3 documents).
fn starts_with(field: &str, value: &str, prefix: &str) -> bool {
    if field == "content-type" && value.contains(',') {
        value.split(',').all(|v| v.trim().starts_with(prefix))
    } else {
        value.starts_with(prefix)
    }
}

fn parse_condition(item: &Value, out: &mut Vec<Condition>) -> Result<(), PolicyError> {
    let bad = || PolicyError::BadCondition(item.to_string());
    match item {
        Value::Object(pairs) => {
            if pairs.is_empty() {
                return Err(bad());
            }
            for (field, value) in pairs {
                let Value::String(value) = value else {
                    return Err(bad());
                };
                out.push(Condition::Eq {
                    field: field.trim_start_matches('$').to_ascii_lowercase(),
                    value: value.clone(),
                });
            }
            Ok(())
        }
        Value::Array(parts) if parts.len() == 3 => {
            let Value::String(operator) = &parts[0] else {
                return Err(bad());
            };
            let operator = operator.to_ascii_lowercase();
            if operator == "content-length-range" {
                let bound = |value: &Value| match value {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                let (Some(min), Some(max)) = (bound(&parts[1]), bound(&parts[2])) else {
                    return Err(bad());
                };
                out.push(Condition::ContentLengthRange { min, max });
                return Ok(());
            }
            let (Value::String(field), Value::String(value)) = (&parts[1], &parts[2]) else {
                return Err(bad());
            };
            let Some(field) = field.strip_prefix('$') else {
                return Err(bad());
            };
            let field = field.to_ascii_lowercase();
            let value = value.clone();
            out.push(match operator.as_str() {
                "eq" => Condition::Eq { field, value },
                "starts-with" => Condition::StartsWith {
                    field,
                    prefix: value,
                },
                _ => return Err(bad()),
            });
            Ok(())
        }
        _ => Err(bad()),
    }
}

/// `2026-12-06T23:00:00Z` or `2026-12-06T23:00:00.000Z` (ISO 8601 in UTC,
/// as AWS's and boto3's policies write it) to Unix seconds.
fn parse_expiration(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let rest = &text[19..];
    let fraction_ok = match rest.strip_suffix('Z') {
        Some("") => true,
        Some(fraction) => {
            fraction.len() >= 2
                && fraction.starts_with('.')
                && fraction[1..].bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    };
    if !fraction_ok {
        return None;
    }
    let compact = format!(
        "{}{}{}T{}{}{}Z",
        &text[0..4],
        &text[5..7],
        &text[8..10],
        &text[11..13],
        &text[14..16],
        &text[17..19]
    );
    AmzDate::parse(&compact).map(|date| date.unix_seconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> FormFields {
        let mut fields = FormFields::default();
        for (name, value) in pairs {
            fields.insert(name, value.to_string());
        }
        fields
    }

    #[test]
    fn reads_expiration_in_both_forms() {
        assert_eq!(parse_expiration("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(parse_expiration("1970-01-01T00:01:00.250Z"), Some(60));
        assert_eq!(parse_expiration("1970-01-01 00:01:00Z"), None);
        assert_eq!(parse_expiration("1970-01-01T00:01:00"), None);
        assert_eq!(parse_expiration("1970-01-01T00:01:00.Z"), None);
    }

    #[test]
    fn conditions_in_every_written_form() {
        let policy = PostPolicy::from_json(
            br#"{"expiration":"2030-01-01T00:00:00Z","conditions":[
                {"bucket":"b"},["StArTs-WiTh","$Key","up/"],["eq","$Content-Type","text/plain"],
                ["content-length-range",1,"10"]]}"#,
        )
        .unwrap();
        assert_eq!(
            policy.conditions[1],
            Condition::StartsWith {
                field: "key".into(),
                prefix: "up/".into()
            }
        );
        assert_eq!(policy.content_length_range(), Some((1, 10)));
        let ok = fields(&[("key", "up/a"), ("content-type", "text/plain")]);
        assert_eq!(policy.check(&ok, "b", 0), Ok(()));
        assert_eq!(
            policy.check(
                &fields(&[("key", "other/a"), ("content-type", "text/plain")]),
                "b",
                0
            ),
            Err(PolicyViolation::ConditionFailed(
                "[\"starts-with\", \"$key\", \"up/\"]".into()
            ))
        );
        assert!(matches!(
            policy.check(&ok, "c", 0),
            Err(PolicyViolation::ConditionFailed(_))
        ));
        assert_eq!(
            policy.check(&ok, "b", 1_893_456_000),
            Err(PolicyViolation::Expired)
        );
        let extra = fields(&[
            ("key", "up/a"),
            ("content-type", "text/plain"),
            ("x-amz-meta-a", "1"),
            ("x-ignore-me", "1"),
        ]);
        assert_eq!(
            policy.check(&extra, "b", 0),
            Err(PolicyViolation::ExtraField("x-amz-meta-a".into()))
        );
    }

    #[test]
    fn malformed_policies_are_refused() {
        for (json, error) in [
            (&br#"[]"#[..], PolicyError::NotJson),
            (br#"{"conditions":[]}"#, PolicyError::MissingExpiration),
            (
                br#"{"EXPIRATION":"2030-01-01T00:00:00Z","conditions":[]}"#,
                PolicyError::MissingExpiration,
            ),
            (
                br#"{"expiration":"2030-01-01T00:00:00Z","CONDITIONS":[]}"#,
                PolicyError::MissingConditions,
            ),
        ] {
            assert_eq!(PostPolicy::from_json(json), Err(error));
        }
        for condition in [
            r#"{}"#,
            r#"["content-length-range", 0]"#,
            r#"["content-length-range", -1, 0]"#,
            r#"["eq", "key", "a"]"#,
            r#"["ends-with", "$key", "a"]"#,
            r#"{"key": 1}"#,
        ] {
            let json =
                format!(r#"{{"expiration":"2030-01-01T00:00:00Z","conditions":[{condition}]}}"#);
            assert!(
                matches!(
                    PostPolicy::from_json(json.as_bytes()),
                    Err(PolicyError::BadCondition(_))
                ),
                "{condition}"
            );
        }
        assert_eq!(PostPolicy::from_base64("%%%"), Err(PolicyError::NotBase64));
    }
}
