//! S3's own bucket notification API, answered by the proxy for any backend
//! (as MinIO answers it for itself): `PUT /bucket?notification`
//! (PutBucketNotificationConfiguration) and `GET /bucket?notification`
//! (GetBucketNotificationConfiguration).
//!
//! - Every configured sink has an ARN, `arn:s3tap:sqs::1:<sink name>`
//!   ([`sink_arn`]), logged at startup and listed at `GET /admin/sinks` on
//!   the admin listener. The same ARN names the sink in a
//!   `QueueConfiguration` (`<Queue>`), a `TopicConfiguration` (`<Topic>`)
//!   and a `CloudFunctionConfiguration` (`<CloudFunction>`): s3tap's sinks
//!   are neither queues nor topics, and all three kinds mean "send these
//!   events there". An ARN no sink has is refused as S3 refuses a
//!   destination it cannot use (`InvalidArgument`, "Unable to validate the
//!   following destination configurations"). `EventBridgeConfiguration` is
//!   refused (`InvalidArgument`).
//! - Each configuration becomes one rule: its `Event`s (S3's `s3:` names,
//!   and whatever else `[[rules]]` accept: `b2:`, `s3tap:`), its
//!   `Filter/S3Key/FilterRule` prefix and suffix, `buckets = [<bucket>]`,
//!   successful requests only, its `Id` as the rule's name (S3's
//!   `configurationId`; one is generated when missing).
//! - Two configurations that could both match one event (overlapping event
//!   types, prefixes and suffixes) are refused, as S3 refuses them.
//! - A PUT replaces all of the bucket's API-made rules; an empty
//!   `<NotificationConfiguration/>` removes them. A GET returns only the
//!   API-made ones: `[[rules]]` from the TOML file keep routing beside them
//!   and are not shown (they may span buckets and are the operator's, not
//!   the bucket owner's).
//! - They are stored in `<spool dir>/bucket-notifications.json`
//!   ([`store`]), so they survive a restart.
//! - Only clients with `manage_notifications = true` in `[[clients]]` may
//!   read or change them (the key the embedded store generates may too);
//!   others get `AccessDenied`. The bucket's existence is not checked: nothing of these
//!   requests reaches the upstream.
//! - Other methods on `?notification` get `MethodNotAllowed`, also without
//!   reaching the upstream.
//!
//! The layer sits between the verifier and the re-signer: every request is
//! verified like any other, and what it answers is never forwarded.

pub(super) mod document;
mod future;
mod layer;
mod service;
pub(super) mod store;

pub(super) use layer::BucketNotificationsLayer;
pub(super) use service::BucketNotifications;
pub(super) use store::NotificationStore;

/// What precedes the sink's name in its ARN.
const ARN_PREFIX: &str = "arn:s3tap:sqs::1:";

/// The ARN of the sink named `sink`: `arn:s3tap:sqs::1:<sink>`.
pub(super) fn sink_arn(sink: &str) -> String {
    format!("{ARN_PREFIX}{sink}")
}

/// The sink name an s3tap ARN names, whatever sink it is.
pub(super) fn sink_for_arn(arn: &str) -> Option<&str> {
    arn.strip_prefix(ARN_PREFIX).filter(|name| !name.is_empty())
}

/// The JSON of `GET /admin/sinks`: each sink's name and ARN, in
/// configuration order.
pub(super) fn sinks_json<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let sinks: Vec<serde_json::Value> = names
        .into_iter()
        .map(|name| serde_json::json!({ "name": name, "arn": sink_arn(name) }))
        .collect();
    serde_json::json!({ "sinks": sinks }).to_string()
}

/// The proxy's wiring: opens the store in the spool directory, installs its
/// rules into the emitter, logs each sink's ARN, and returns the layer (with
/// the clients allowed to manage notifications) and the `/admin/sinks`
/// JSON.
pub(crate) fn start(
    settings: &super::notify::NotifySettings,
    default_spool_dir: std::path::PathBuf,
    api_rules: crate::notify::SharedRules,
    clients: &[super::config::ClientKey],
    verify: &super::config::VerifySettings,
    virtual_host_suffix: Option<&str>,
) -> Result<(BucketNotificationsLayer, String), super::error::StartError> {
    let names: Vec<&str> = settings.sinks().map(|(name, _)| name).collect();
    let dir = settings.spool_dir_or(default_spool_dir);
    let store =
        NotificationStore::open(&dir, names.iter().map(|name| (*name).to_owned()), api_rules)
            .map_err(super::error::StartError::new)?;
    for name in &names {
        tracing::info!(sink = name, arn = %sink_arn(name), "sink ARN for bucket notification configurations");
    }
    let mut layer = BucketNotificationsLayer::new(std::sync::Arc::new(store)).check_payload_hash(
        verify.payload_hashing == crate::verify::PayloadHashing::DeferToUpstream,
    );
    for client in clients.iter().filter(|c| c.manage_notifications) {
        layer = layer.manager(client.access_key_id.clone());
    }
    if let Some(suffix) = virtual_host_suffix {
        layer = layer.virtual_host_suffix(suffix);
    }
    Ok((layer, sinks_json(names)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_sinks_both_ways() {
        assert_eq!(sink_arn("hook"), "arn:s3tap:sqs::1:hook");
        assert_eq!(sink_for_arn("arn:s3tap:sqs::1:hook"), Some("hook"));
        assert_eq!(sink_for_arn("arn:s3tap:sqs::1:"), None);
        assert_eq!(sink_for_arn("arn:aws:sqs:us-east-1:1:hook"), None);
        assert_eq!(
            sinks_json(["a", "b"]),
            r#"{"sinks":[{"arn":"arn:s3tap:sqs::1:a","name":"a"},{"arn":"arn:s3tap:sqs::1:b","name":"b"}]}"#
        );
    }
}
