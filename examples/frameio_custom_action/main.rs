//! A Frame.io custom action that imports from and exports to Backblaze B2:
//! multi-step forms, durable jobs in a redb table run by a worker task with
//! retries, objects streamed from one S3 endpoint to the other.
//!
//! ```text
//! FRAMEIO_SECRET=<custom action secret> PORT=8080 \
//! B2_ENDPOINT=https://s3.us-west-004.backblazeb2.com B2_BUCKET=archive \
//! B2_KEY_ID=... B2_APPLICATION_KEY=... \
//! FRAMEIO_STORE_ENDPOINT=... FRAMEIO_STORE_BUCKET=... \
//! FRAMEIO_STORE_KEY_ID=... FRAMEIO_STORE_SECRET_KEY=... \
//!   cargo run --example frameio_custom_action --features webhook,upstream,dispatcher
//! ```
//!
//! Settings (environment):
//! - `FRAMEIO_SECRET` (required): the signing secret Frame.io showed when the
//!   custom action was created. Every call to the action is checked against
//!   it (signature, and a timestamp within ±5 minutes) before anything runs.
//! - `PORT`: where to listen on 127.0.0.1 (default 8080; 0 picks a free
//!   port). Once ready the program prints `listening on http://ADDR`.
//! - `B2_ENDPOINT`, `B2_BUCKET`, `B2_KEY_ID`, `B2_APPLICATION_KEY`
//!   (required): B2's S3 endpoint, the bucket and an application key for it.
//! - `FRAMEIO_STORE_ENDPOINT`, `FRAMEIO_STORE_BUCKET`, `FRAMEIO_STORE_KEY_ID`,
//!   `FRAMEIO_STORE_SECRET_KEY` (required): the S3 bucket that stands for
//!   Frame.io's storage. An asset `ID` is the objects under `ID/`.
//! - `JOBS_DB`: the job table's file (default `frameio-jobs.redb`).
//! - `IMPORT_ROOT`: imports may only pick below this B2 prefix (default: the
//!   whole bucket).
//! - `MAX_BYTES_PER_SEC`: a bandwidth cap for copies (default none).
//! - `PART_SIZE`: objects bigger than this are copied as multipart uploads
//!   in parts this big (default 64 MiB; 5 MiB to 5 GiB).
//! - `MAX_ATTEMPTS`: a job that failed this many times is given up (default 10).
//!
//! The flow, one call per step (Frame.io sends the same `interaction_id` each
//! time and the last form's answers in `data`):
//! 1. no `data`: the form "Import or export?" (`job`);
//! 2. `job=export`: a form asking for the B2 destination prefix
//!    (`destination`); `job=import`: the top of the B2 bucket as a select
//!    (`pick`) of folders to open (`dir:`), folders to take whole (`tree:`)
//!    and files (`file:`); opening a folder answers the same form for it;
//! 3. `destination`, or a `tree:`/`file:` pick: the job is stored and the
//!    answer is `202` "Job submitted!" with the job id.
//!
//! The worker (a task in this process) copies the job's objects one by one,
//! each streamed from a GET into a PUT (a big one as a multipart upload,
//! each part a ranged GET streamed into an UploadPart), saves the job after
//! every object and part, and retries a failed job with exponential backoff.
//! A job cut short by a crash or a stop is taken up again at the next
//! start, from the first part not yet uploaded. `GET /jobs/{id}` answers a job's status (state,
//! attempts, objects copied, the object being copied and its bytes so far),
//! `GET /jobs` all of them; they are for the operator and carry no
//! authentication: keep the port private.

mod action;
mod jobs;
mod transfer;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use s3tap::credentials::UpstreamCredentials;
use s3tap::notify::RetryPolicy;
use s3tap::webhook::VerifyWebhookLayer;

use action::App;
use jobs::JobStore;
use transfer::{ObjectStore, S3Store};
use worker::{Shared, Worker};

fn required(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name} (see the example's documentation)"))
}

fn optional<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
    std::env::var(name)
        .ok()
        .map(|value| {
            value
                .parse()
                .map_err(|_| format!("{name} must be a number, not {value:?}"))
        })
        .transpose()
}

fn store(name: &str, prefix: &str, key: &str, secret: &str) -> Result<S3Store, String> {
    S3Store::new(
        name,
        &required(&format!("{prefix}_ENDPOINT"))?,
        &required(&format!("{prefix}_BUCKET"))?,
        UpstreamCredentials::new(required(key)?, required(secret)?),
    )
    .map_err(|e| format!("{prefix}_ENDPOINT: {e}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = required("FRAMEIO_SECRET")?;
    let port: u16 = optional("PORT")?.unwrap_or(8080);
    let b2: Arc<dyn ObjectStore> = Arc::new(store("b2", "B2", "B2_KEY_ID", "B2_APPLICATION_KEY")?);
    let frameio: Arc<dyn ObjectStore> = Arc::new(store(
        "frameio",
        "FRAMEIO_STORE",
        "FRAMEIO_STORE_KEY_ID",
        "FRAMEIO_STORE_SECRET_KEY",
    )?);
    let import_root = std::env::var("IMPORT_ROOT").unwrap_or_default();
    if !import_root.is_empty() && !import_root.ends_with('/') {
        return Err(format!("IMPORT_ROOT must end with '/', not {import_root:?}").into());
    }
    let jobs_db = std::env::var("JOBS_DB").unwrap_or_else(|_| "frameio-jobs.redb".into());
    let store = JobStore::open(jobs_db.as_ref()).map_err(|e| format!("JOBS_DB {jobs_db}: {e}"))?;
    let retry = RetryPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(300),
        max_attempts: Some(optional("MAX_ATTEMPTS")?.unwrap_or(10)),
        max_age: Some(Duration::from_secs(7 * 24 * 3600)),
        ..RetryPolicy::default()
    };
    let part_size: u64 = optional("PART_SIZE")?.unwrap_or(64 << 20);
    // S3's bounds for a part (B2's are the same): 5 MiB to 5 GiB.
    if !(5 << 20..=transfer::MAX_SINGLE_PUT).contains(&part_size) {
        return Err(format!("PART_SIZE must be from 5 MiB to 5 GiB, not {part_size}").into());
    }
    let shared = Arc::new(Shared::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    // The first line out, before the worker says anything.
    println!("listening on http://{}", listener.local_addr()?);

    tokio::spawn(
        Worker {
            store: store.clone(),
            frameio,
            b2: b2.clone(),
            retry,
            max_bytes_per_sec: optional("MAX_BYTES_PER_SEC")?,
            part_size,
            shared: shared.clone(),
        }
        .run(),
    );

    let app = Arc::new(App {
        store,
        b2,
        import_root,
        shared,
    });
    let router = Router::new()
        .route("/actions/import-export", post(action::custom_action))
        // Only Frame.io's signed calls reach the action.
        .route_layer(VerifyWebhookLayer::frameio(secret))
        .route("/jobs", get(action::jobs))
        .route("/jobs/{id}", get(action::job_status))
        .with_state(app);

    axum::serve(listener, router).await?;
    Ok(())
}
