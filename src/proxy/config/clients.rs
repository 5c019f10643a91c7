//! Client keys: the `[[clients]]` entries of the config file and of
//! `clients_file`, each with its merged policy. The clients file is also
//! read again at run time (`clients_reload`), so its reading lives here
//! apart from the one-time merge.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::authorize::{Access, Policy};
use crate::credentials::Secret;

use super::super::error::{invalid, ConfigError};
use super::super::schema::{read_toml, ClientSection, ClientsFileSchema};

/// One client key.
#[derive(Clone, Debug)]
pub struct ClientKey {
    /// Key id.
    pub access_key_id: String,
    /// Secret (redacted in Debug).
    pub secret: Secret,
    /// Identity name.
    pub identity: Option<String>,
    /// Mapped upstream key.
    pub upstream: Option<(String, Secret)>,
    /// May configure bucket notifications through the S3 API.
    pub manage_notifications: bool,
    /// What the client may do (`policy`, `policy_file`, `readonly`,
    /// `writeonly`, `readwrite`, merged); `None`: anything.
    pub policy: Option<Arc<Policy>>,
}

/// `clients_file`: a file of `[[clients]]` entries, read at start and
/// reloaded on SIGHUP and when it changes.
#[derive(Clone, Debug)]
pub struct ClientsFile {
    /// The file.
    pub path: PathBuf,
    /// The key ids of [`Config::clients`](super::Config::clients) that came
    /// from the file; the others (the config file's `[[clients]]`, the
    /// environment's key) stay as they are across reloads.
    pub from_file: Vec<String>,
}

impl ClientsFile {
    /// Reads and checks the whole file: its clients, or the first thing
    /// wrong with it (one line, never a secret).
    pub fn load(&self) -> Result<Vec<ClientKey>, ConfigError> {
        load_clients_file(&self.path)
    }
}

pub(super) fn load_clients_file(path: &Path) -> Result<Vec<ClientKey>, ConfigError> {
    let file: ClientsFileSchema = read_toml(path)?;
    let clients = client_keys(&format!("clients_file {}", path.display()), file.clients)?;
    check_unique(&clients)?;
    Ok(clients)
}

/// One client's policy from its `policy`, `policy_file` and shorthand
/// keys, merged; `None` when it has none of them.
fn client_policy(
    what: &str,
    json: Option<&str>,
    file: Option<&Path>,
    shorthands: [(Access, Option<&[String]>); 3],
) -> Result<Option<Arc<Policy>>, ConfigError> {
    let mut policy: Option<Policy> = None;
    let mut add = |more: Policy| {
        policy = Some(match policy.take() {
            Some(policy) => policy.merge(more),
            None => more,
        });
    };
    match (json, file) {
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "{what}: policy and policy_file: give one of them"
            )))
        }
        (Some(json), None) => {
            add(Policy::from_json(json).map_err(|e| invalid(format!("{what}: policy: {e}")))?)
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(format!(
                    "{what}: cannot read policy_file {}: {e}",
                    path.display()
                ))
            })?;
            add(Policy::from_json(&text)
                .map_err(|e| invalid(format!("{what}: policy_file {}: {e}", path.display())))?)
        }
        (None, None) => {}
    }
    for (access, scopes) in shorthands {
        if let Some(scopes) = scopes {
            add(Policy::shorthand(access, scopes)
                .map_err(|e| invalid(format!("{what}: {}: {e}", access.as_str())))?);
        }
    }
    Ok(policy.map(Arc::new))
}

/// `[[clients]]` entries (of the config file or of `clients_file`), checked.
pub(super) fn client_keys(
    file_name: &str,
    sections: Vec<ClientSection>,
) -> Result<Vec<ClientKey>, ConfigError> {
    let mut clients = Vec::new();
    for c in sections {
        if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
            return Err(invalid(format!(
                "{file_name} [[clients]]: access_key_id and secret_access_key must not be empty"
            )));
        }
        let upstream = match (c.upstream_access_key_id, c.upstream_secret_access_key) {
            (Some(id), Some(secret)) => Some((id, Secret::new(secret))),
            (None, None) => None,
            _ => {
                return Err(invalid(format!(
                    "{file_name} [[clients]] {}: upstream_access_key_id and \
                     upstream_secret_access_key go together",
                    c.access_key_id
                )))
            }
        };
        let policy = client_policy(
            &format!("{file_name} [[clients]] {}", c.access_key_id),
            c.policy.as_deref(),
            c.policy_file.as_deref(),
            [
                (Access::ReadOnly, c.readonly.as_deref()),
                (Access::WriteOnly, c.writeonly.as_deref()),
                (Access::ReadWrite, c.readwrite.as_deref()),
            ],
        )?;
        clients.push(ClientKey {
            access_key_id: c.access_key_id,
            secret: Secret::new(c.secret_access_key),
            identity: c.identity,
            upstream,
            manage_notifications: c.manage_notifications,
            policy,
        });
    }
    Ok(clients)
}

/// Each client key once: two secrets for one key id would make one of them
/// never work.
pub(in crate::proxy) fn check_unique(clients: &[ClientKey]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for c in clients {
        if !seen.insert(c.access_key_id.as_str()) {
            return Err(invalid(format!(
                "client key {} appears twice",
                c.access_key_id
            )));
        }
    }
    Ok(())
}
