//! The named shorthands (`readonly`, `writeonly`, `readwrite`) and the
//! statements each stands for.

use super::{Condition, Effect, Key, Policy, PolicyError, Statement};

/// A named shorthand for a common policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// List (within the prefix) and read objects, their versions and tags.
    ReadOnly,
    /// Upload objects (single or multipart), abort uploads and list their
    /// parts, tag; list a whole bucket's uploads; no reading, listing or
    /// deleting.
    WriteOnly,
    /// Both, plus deleting objects, their versions and tags.
    ReadWrite,
}

impl Access {
    /// The TOML key naming it: `readonly`, `writeonly`, `readwrite`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Access::ReadOnly => "readonly",
            Access::WriteOnly => "writeonly",
            Access::ReadWrite => "readwrite",
        }
    }
}

const READ_OBJECT: &[&str] = &[
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectTagging",
    "s3:GetObjectAttributes",
];
const READ_BUCKET: &[&str] = &["s3:ListBucket", "s3:ListBucketVersions"];
const WRITE_OBJECT: &[&str] = &[
    "s3:PutObject",
    "s3:PutObjectTagging",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
];
const WRITE_BUCKET: &[&str] = &["s3:ListBucketMultipartUploads"];
const DELETE_OBJECT: &[&str] = &[
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
];

fn allow(actions: &[&str], resource: String, conditions: Vec<Condition>) -> Statement {
    Statement {
        effect: Effect::Allow,
        not_action: false,
        actions: actions.iter().map(|a| a.to_lowercase()).collect(),
        resources: vec![resource],
        conditions,
    }
}

pub(super) fn statements<I, T>(access: Access, scopes: I) -> Result<Policy, PolicyError>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    let mut statements = Vec::new();
    for scope in scopes {
        let scope = scope.as_ref();
        let (bucket, prefix) = scope.split_once('/').unwrap_or((scope, ""));
        if bucket.is_empty()
            || bucket.contains(['*', '?'])
            || scope.contains("${")
            || scope.chars().any(char::is_control)
        {
            return Err(PolicyError::Value(format!(
                "{} scope {scope:?} (expected \"bucket\" or \"bucket/prefix\")",
                access.as_str()
            )));
        }
        // `bucket/photos/` and `bucket/photos/*` mean the same keys.
        let pattern = match prefix.strip_suffix('*').unwrap_or(prefix) {
            "" => "*".to_owned(),
            prefix => format!("{prefix}*"),
        };
        let objects = format!("arn:aws:s3:::{bucket}/{pattern}");
        let bucket_arn = format!("arn:aws:s3:::{bucket}");
        // A listing is allowed only inside the prefix, which the request's
        // `prefix` parameter must name.
        let listing = if pattern == "*" {
            Vec::new()
        } else {
            vec![Condition::String {
                like: true,
                key: Key::Prefix,
                values: vec![pattern.clone()],
            }]
        };
        let (read, write, delete) = match access {
            Access::ReadOnly => (true, false, false),
            Access::WriteOnly => (false, true, false),
            Access::ReadWrite => (true, true, true),
        };
        if read {
            statements.push(allow(READ_OBJECT, objects.clone(), Vec::new()));
            statements.push(allow(READ_BUCKET, bucket_arn.clone(), listing));
            statements.push(allow(&["s3:GetBucketLocation"], bucket_arn.clone(), vec![]));
        }
        if write {
            statements.push(allow(WRITE_OBJECT, objects.clone(), Vec::new()));
            // Listing uploads has no prefix condition key: it would show
            // keys outside a prefix scope, so only whole buckets get it.
            if pattern == "*" {
                statements.push(allow(WRITE_BUCKET, bucket_arn.clone(), Vec::new()));
            }
        }
        if delete {
            statements.push(allow(DELETE_OBJECT, objects.clone(), Vec::new()));
        }
    }
    Ok(Policy { statements })
}
