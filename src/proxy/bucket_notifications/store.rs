//! Where the buckets' API-made notification configurations live: in memory
//! as routing [`Rules`] the emitter reads, and on disk as one JSON file
//! replaced atomically on every change.
//!
//! Why a file and not the spool's redb: the spool belongs to the dispatcher,
//! which holds its database open; these configurations change rarely, are
//! small, and an operator may want to read (or back up) them. Written to a
//! temporary file, fsynced, renamed over the old one and the directory
//! fsynced, a crash leaves either the old or the new document, never half.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::document::TargetConfig;
use crate::notify::{Rule, Rules, SharedRules, StatusFilter};

/// The file's name in the spool directory.
pub(crate) const FILE_NAME: &str = "bucket-notifications.json";

/// The file's content: a version, then each bucket's configurations.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: u32,
    buckets: BTreeMap<String, Vec<TargetConfig>>,
}

const VERSION: u32 = 1;

/// The configurations of every bucket, persisted.
#[derive(Debug)]
pub(crate) struct NotificationStore {
    path: PathBuf,
    sinks: HashSet<String>,
    /// What GETs read: never held across file I/O.
    buckets: RwLock<BTreeMap<String, Vec<TargetConfig>>>,
    /// Held by one PUT at a time, across its write of the file, so that
    /// concurrent PUTs cannot lose each other's buckets.
    writer: Mutex<()>,
    /// The rules made through the S3 API, shared with the emitter that
    /// routes every event through them too.
    rules: SharedRules,
}

impl NotificationStore {
    /// Reads `dir/bucket-notifications.json` (none yet: no configurations)
    /// and installs its rules into `rules`. `sinks` are the configured sink
    /// names: a configuration naming a sink that is gone is kept in the file
    /// but routes nothing, with a warning.
    pub(crate) fn open(
        dir: &Path,
        sinks: impl IntoIterator<Item = String>,
        rules: SharedRules,
    ) -> Result<NotificationStore, String> {
        let path = dir.join(FILE_NAME);
        let document = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Document>(&bytes).map_err(|e| {
                format!(
                    "{} is not a bucket notification document: {e}",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Document {
                version: VERSION,
                ..Document::default()
            },
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if document.version != VERSION {
            return Err(format!(
                "{}: version {} is not one this s3tap reads ({VERSION})",
                path.display(),
                document.version
            ));
        }
        let store = NotificationStore {
            path,
            sinks: sinks.into_iter().collect(),
            buckets: RwLock::new(document.buckets),
            writer: Mutex::new(()),
            rules,
        };
        let buckets = store.read();
        for (bucket, configs) in buckets.iter() {
            for config in configs.iter().filter(|c| !store.sinks.contains(&c.sink)) {
                tracing::warn!(
                    "bucket {bucket}: notification configuration {} names sink {:?}, which is not configured; it routes nothing",
                    config.id,
                    config.sink
                );
            }
        }
        store.rules.replace(store.to_rules(&buckets));
        drop(buckets);
        Ok(store)
    }

    /// Whether a sink of this name is configured.
    pub(crate) fn has_sink(&self, name: &str) -> bool {
        self.sinks.contains(name)
    }

    /// A bucket's configurations, as last stored.
    pub(crate) fn get(&self, bucket: &str) -> Vec<TargetConfig> {
        self.read().get(bucket).cloned().unwrap_or_default()
    }

    /// Replaces a bucket's configurations (none: removes them), writes the
    /// file and then switches routing over. Blocking file I/O: call it off
    /// the async workers. On a write error nothing changes.
    pub(crate) fn put(&self, bucket: &str, configs: Vec<TargetConfig>) -> std::io::Result<()> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = self.read().clone();
        if configs.is_empty() {
            next.remove(bucket);
        } else {
            next.insert(bucket.to_owned(), configs);
        }
        let document = Document {
            version: VERSION,
            buckets: next,
        };
        write_atomically(&self.path, &serde_json::to_vec_pretty(&document)?)?;
        self.rules.replace(self.to_rules(&document.buckets));
        *self.buckets.write().unwrap_or_else(|p| p.into_inner()) = document.buckets;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Vec<TargetConfig>>> {
        self.buckets.read().unwrap_or_else(|p| p.into_inner())
    }

    /// One rule per configuration: its events and key filters, for its
    /// bucket only, successful requests only (what S3 notifies).
    fn to_rules(&self, buckets: &BTreeMap<String, Vec<TargetConfig>>) -> Rules {
        Rules::new(
            buckets
                .iter()
                .flat_map(|(bucket, configs)| configs.iter().map(move |c| (bucket, c)))
                .filter(|(_, config)| self.sinks.contains(&config.sink))
                .map(|(bucket, config)| Rule {
                    name: config.id.clone(),
                    event_types: config.events.clone(),
                    prefix: config.prefix.clone(),
                    suffix: config.suffix.clone(),
                    statuses: StatusFilter::SuccessOnly,
                    sinks: vec![config.sink.clone()],
                    // S3 bucket names hold no `*` or `?`: as a glob the
                    // name matches itself only.
                    buckets: vec![bucket.clone()],
                    clients: Vec::new(),
                })
                .collect(),
        )
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new
/// content: temporary file, fsync, rename, fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // The rename is durable once the directory entry is.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Event, S3Operation};
    use crate::proxy::bucket_notifications::document::TargetKind;

    fn config(id: &str, sink: &str) -> TargetConfig {
        TargetConfig {
            id: id.into(),
            kind: TargetKind::Queue,
            sink: sink.into(),
            events: vec!["s3:ObjectCreated:*".into()],
            prefix: Some("in/".into()),
            suffix: None,
        }
    }

    fn put_event(bucket: &str, key: &str) -> Event {
        let mut event = Event::new(S3Operation::PutObject, "PUT", 200, "http://up/");
        event.bucket = Some(bucket.into());
        event.key = Some(key.into());
        event
    }

    #[test]
    fn configurations_survive_reopening_and_route_only_their_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let sinks = || ["hook".to_owned()];
        let rules = SharedRules::default();
        let store = NotificationStore::open(dir.path(), sinks(), rules.clone()).unwrap();
        assert!(store.get("a").is_empty());
        store.put("a", vec![config("up", "hook")]).unwrap();
        let routed = rules.read().route(&put_event("a", "in/x")).len();
        assert_eq!(routed, 1);
        assert!(rules.read().route(&put_event("b", "in/x")).is_empty());
        assert!(rules.read().route(&put_event("a", "out/x")).is_empty());
        assert!(!dir.path().join("bucket-notifications.json.tmp").exists());

        let rules = SharedRules::default();
        let again = NotificationStore::open(dir.path(), sinks(), rules.clone()).unwrap();
        assert_eq!(again.get("a"), [config("up", "hook")]);
        assert_eq!(rules.read().route(&put_event("a", "in/y")).len(), 1);

        // An empty configuration removes the bucket's rules, on disk too.
        again.put("a", Vec::new()).unwrap();
        assert!(rules.read().rules.is_empty());
        let rules = SharedRules::default();
        let third = NotificationStore::open(dir.path(), sinks(), rules.clone()).unwrap();
        assert!(third.get("a").is_empty());
        assert!(rules.read().rules.is_empty());
    }

    #[test]
    fn a_configuration_of_a_removed_sink_routes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = NotificationStore::open(dir.path(), ["old".to_owned()], SharedRules::default())
            .unwrap();
        store.put("a", vec![config("up", "old")]).unwrap();
        let rules = SharedRules::default();
        let store = NotificationStore::open(dir.path(), ["new".to_owned()], rules.clone()).unwrap();
        assert_eq!(store.get("a").len(), 1, "kept in the file");
        assert!(rules.read().rules.is_empty());
    }

    #[test]
    fn a_damaged_file_stops_the_start_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let error =
            NotificationStore::open(dir.path(), ["hook".to_owned()], SharedRules::default())
                .unwrap_err();
        assert!(error.contains(FILE_NAME), "{error}");
    }
}
