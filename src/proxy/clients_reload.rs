//! The proxy's client table (keys, mapped upstream keys and policies as one
//! set) and the `clients_file` reloader that swaps it on SIGHUP and when the
//! file changes.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::config::{check_unique, ClientKey, ClientsFile};
use crate::authorize::{Policy, PolicySource};
use crate::credentials::{
    Credential, Identity, ReloadingCredentials, StaticCredentials, UpstreamCredentials,
};
use crate::resign::CredentialsSource;
use crate::verified::Verified;

/// How often the file is looked at for a change.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Who may sign, with what, and what each client may do: what the verify
/// and authorize layers read. Replaced whole by [`ClientTable::replace`].
#[derive(Clone)]
pub(crate) struct ClientTable {
    pub(crate) credentials: ReloadingCredentials,
    pub(crate) policies: ReloadingPolicies,
}

/// Each known key's policy, by access key id.
type PolicyTable = HashMap<String, Option<Arc<Policy>>>;

/// Each known key's policy (`None`: full access, as before policies
/// existed). A key not in the table gets a policy that denies everything:
/// a request verified just before its key was removed must not pass as a
/// client without a policy.
#[derive(Clone)]
pub(crate) struct ReloadingPolicies {
    current: Arc<RwLock<Arc<PolicyTable>>>,
    deny_all: Arc<Policy>,
}

impl PolicySource for ReloadingPolicies {
    fn policy(&self, client: &Verified) -> Option<Arc<Policy>> {
        let current = Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()));
        match current.get(&client.access_key_id) {
            Some(policy) => policy.clone(),
            None => Some(Arc::clone(&self.deny_all)),
        }
    }
}

impl ClientTable {
    pub(crate) fn new(clients: &[ClientKey]) -> Self {
        let deny_all = Policy::from_json(r#"{"Version":"2012-10-17","Statement":[]}"#)
            .expect("an empty policy parses");
        ClientTable {
            credentials: ReloadingCredentials::new(credentials_of(clients)),
            policies: ReloadingPolicies {
                current: Arc::new(RwLock::new(Arc::new(policies_of(clients)))),
                deny_all: Arc::new(deny_all),
            },
        }
    }

    /// Serves `clients` from now on. Policies go first: a new key is
    /// unknown to the verifier until its policy is in place, and a removed
    /// key is denied by the policy table while the verifier still knows it.
    pub(crate) fn replace(&self, clients: &[ClientKey]) {
        let policies = Arc::new(policies_of(clients));
        let old = {
            let mut current = self
                .policies
                .current
                .write()
                .unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *current, policies)
        };
        drop(old);
        self.credentials.replace(credentials_of(clients));
    }
}

fn credentials_of(clients: &[ClientKey]) -> StaticCredentials {
    let mut store = StaticCredentials::new();
    for client in clients {
        let mut credential = Credential::new(&client.access_key_id, client.secret.clone());
        if let Some(identity) = &client.identity {
            credential = credential.identity(Identity::new(identity.as_str()));
        }
        if let Some((id, secret)) = &client.upstream {
            credential = credential.upstream(UpstreamCredentials::new(id.clone(), secret.clone()));
        }
        store = store.with_credential(client.access_key_id.clone(), credential);
    }
    store
}

fn policies_of(clients: &[ClientKey]) -> PolicyTable {
    clients
        .iter()
        .map(|c| (c.access_key_id.clone(), c.policy.clone()))
        .collect()
}

/// Reloads `clients_file` into the table.
pub(crate) struct Reloader {
    file: ClientsFile,
    /// The clients that do not come from the file (config file, environment).
    fixed: Vec<ClientKey>,
    mapped: bool,
    table: ClientTable,
    /// The file as it was when the reloader was made (just after the
    /// config read it), so an edit made before the task first runs is
    /// still a change.
    seen: Option<Fingerprint>,
    /// Installed when the proxy is built, so a SIGHUP sent once it is ready
    /// reloads instead of ending the process.
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Reloader {
    pub(crate) fn new(
        file: ClientsFile,
        clients: &[ClientKey],
        credentials: &CredentialsSource,
        table: ClientTable,
    ) -> Self {
        let fixed = clients
            .iter()
            .filter(|c| !file.from_file.contains(&c.access_key_id))
            .cloned()
            .collect();
        let seen = fingerprint_now(&file.path);
        Reloader {
            file,
            fixed,
            mapped: matches!(credentials, CredentialsSource::Mapped),
            table,
            seen,
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// The whole new set, checked as at start; nothing is swapped unless all
    /// of it is valid.
    fn load(&self) -> Result<Vec<ClientKey>, String> {
        let mut clients = self.fixed.clone();
        clients.extend(self.file.load().map_err(|e| e.to_string())?);
        check_unique(&clients).map_err(|e| e.to_string())?;
        if self.mapped {
            if let Some(c) = clients.iter().find(|c| c.upstream.is_none()) {
                return Err(format!(
                    "client {}: credentials = \"mapped\" needs upstream_access_key_id and \
                     upstream_secret_access_key",
                    c.access_key_id
                ));
            }
        }
        Ok(clients)
    }

    fn reload(&self, why: &str) {
        let path = self.file.path.display();
        match self.load() {
            Ok(clients) => {
                self.table.replace(&clients);
                tracing::info!(
                    clients = clients.len(),
                    "clients_file {path} reloaded ({why}): {} clients",
                    clients.len()
                );
            }
            Err(error) => tracing::error!(
                "clients_file {path} not reloaded ({why}), the clients in use stay: {error}"
            ),
        }
    }

    /// Reloads on SIGHUP and whenever the file's modification time, length
    /// or content changes (checked every 250 ms), until dropped.
    pub(crate) async fn run(mut self) {
        #[cfg(unix)]
        let mut hangup = self.hangup.take();
        let mut seen = self.seen.take();
        let mut every = tokio::time::interval(POLL_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let signal = async {
                match hangup.as_mut() {
                    Some(hangup) => {
                        hangup.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signal = std::future::pending::<()>();
            tokio::select! {
                () = signal => {
                    seen = fingerprint(&self.file.path).await;
                    self.reload("SIGHUP");
                }
                _ = every.tick() => {
                    let now = fingerprint(&self.file.path).await;
                    if now != seen {
                        seen = now;
                        self.reload("file changed");
                    }
                }
            }
        }
    }
}

/// Modification time, length and a hash of the content (an edit within the
/// clock's resolution that keeps the length still changes the hash).
type Fingerprint = (SystemTime, u64, u64);

/// The file's [`Fingerprint`]; `None` while it cannot be read.
async fn fingerprint(path: &std::path::Path) -> Option<Fingerprint> {
    let metadata = tokio::fs::metadata(path).await.ok()?;
    let content = tokio::fs::read(path).await.ok()?;
    Some(fingerprint_of(&metadata, &content))
}

/// [`fingerprint`], blocking: once, while the proxy is being built.
fn fingerprint_now(path: &std::path::Path) -> Option<Fingerprint> {
    let metadata = std::fs::metadata(path).ok()?;
    let content = std::fs::read(path).ok()?;
    Some(fingerprint_of(&metadata, &content))
}

fn fingerprint_of(metadata: &std::fs::Metadata, content: &[u8]) -> Fingerprint {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    content.hash(&mut hasher);
    (
        metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        metadata.len(),
        hasher.finish(),
    )
}
