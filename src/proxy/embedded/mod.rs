//! The embedded store: s3s-fs serving a data directory on a private loopback
//! port, so the proxy runs on a fresh machine with no S3 account.
//!
//! The store has its own random key pair, made at each start and known only
//! to this process; the proxy signs for it with that key (`fixed` mode).
//! Clients use a separate key, taken from the environment or generated at the
//! first start and kept in `<data-dir>/client-credentials.toml` so restarts
//! keep it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::config::ClientKey;
use super::error::StartError;
use crate::credentials::Secret;

mod listing;

const CREDENTIALS_FILE: &str = "client-credentials.toml";

/// A running embedded store. Dropping it stops the store.
#[derive(Debug)]
pub struct EmbeddedStore {
    addr: SocketAddr,
    internal_key_id: String,
    internal_secret: Secret,
    stop: watch::Sender<bool>,
}

impl EmbeddedStore {
    /// Starts s3s-fs on `<data_dir>/buckets` at 127.0.0.1 on a free port.
    pub async fn start(data_dir: &Path) -> Result<EmbeddedStore, StartError> {
        let root = data_dir.join("buckets");
        std::fs::create_dir_all(&root).map_err(|e| {
            StartError::new(format!(
                "cannot create the data directory {}: {e}",
                root.display()
            ))
        })?;
        let fs = s3s_fs::FileSystem::new(&root).map_err(|e| {
            StartError::new(format!(
                "cannot open the data directory {}: {e:?}",
                root.display()
            ))
        })?;
        let internal_key_id = format!("S3TAPINTERNAL{}", random_token(7, UPPER));
        let internal_secret = Secret::new(random_token(40, MIXED));
        let service = {
            let mut builder = s3s::service::S3ServiceBuilder::new(listing::EmbeddedS3(fs));
            builder.set_auth(s3s::auth::SimpleAuth::from_single(
                internal_key_id.clone(),
                internal_secret.expose().to_owned(),
            ));
            builder.build()
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| StartError::new(format!("cannot start the embedded store: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::new(format!("cannot start the embedded store: {e}")))?;
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(_) => continue,
                    },
                    _ = stopped.changed() => break,
                };
                let connection = builder
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        });
        tracing::debug!(%addr, data_dir = %root.display(), "embedded store started");
        Ok(EmbeddedStore {
            addr,
            internal_key_id,
            internal_secret,
            stop,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The store's own key, which the proxy signs with.
    pub fn internal_key(&self) -> (String, Secret) {
        (self.internal_key_id.clone(), self.internal_secret.clone())
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The client key for the embedded store: `from_env` when given, else the
/// one saved in the data directory, else a new one saved there.
pub(super) fn client_key(
    data_dir: &Path,
    from_env: Option<&ClientKey>,
) -> Result<ClientKey, StartError> {
    if let Some(key) = from_env {
        return Ok(key.clone());
    }
    let path = data_dir.join(CREDENTIALS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_saved_key(&text).ok_or_else(|| {
            StartError::new(format!(
                "{} is not a saved client key; delete it to make a new one",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ClientKey {
                access_key_id: format!("S3TAP{}", random_token(15, UPPER)),
                secret: Secret::new(random_token(40, MIXED)),
                identity: None,
                upstream: None,
                // The store's own key, the only one it has: its holder owns
                // the store and may configure its notifications.
                manage_notifications: true,
                policy: None,
            };
            save_key(&path, &key)?;
            Ok(key)
        }
        Err(e) => Err(StartError::new(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

#[derive(serde::Deserialize)]
struct SavedKey {
    access_key_id: String,
    secret_access_key: String,
}

fn parse_saved_key(text: &str) -> Option<ClientKey> {
    let saved: SavedKey = toml::from_str(text).ok()?;
    Some(ClientKey {
        access_key_id: saved.access_key_id,
        secret: Secret::new(saved.secret_access_key),
        identity: None,
        upstream: None,
        manage_notifications: true,
        policy: None,
    })
}

fn save_key(path: &PathBuf, key: &ClientKey) -> Result<(), StartError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            StartError::new(format!(
                "cannot create the data directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    let text = format!(
        "# The client key of s3tap's embedded store, made at its first start.\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
        key.access_key_id,
        key.secret.expose()
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Only the owner may read a secret.
        options.mode(0o600);
    }
    use std::io::Write;
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| StartError::new(format!("cannot save {}: {e}", path.display())))
}

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const MIXED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `len` characters drawn uniformly from `alphabet` with the OS's CSPRNG.
fn random_token(len: usize, alphabet: &[u8]) -> String {
    let mut out = String::with_capacity(len);
    let limit = 256 - (256 % alphabet.len());
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::getrandom(&mut buf).expect("the OS random number generator works");
        for &b in &buf {
            // Rejecting the top of the range keeps every character equally likely.
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = client_key(dir.path(), None).unwrap();
        assert_eq!(first.access_key_id.len(), 20);
        assert_eq!(first.secret.expose().len(), 40);
        let again = client_key(dir.path(), None).unwrap();
        assert_eq!(first.access_key_id, again.access_key_id);
        assert_eq!(first.secret.expose(), again.secret.expose());
    }
}
