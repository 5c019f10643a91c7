//! A Frame.io custom action that asks "Import or export?" and hands the
//! chosen job to a background worker, with every request verified first.
//!
//! ```text
//! FRAMEIO_SECRET=<custom action secret> PORT=8080 cargo run --example frameio_custom_action
//! ```
//!
//! - `FRAMEIO_SECRET` (required): the signing secret Frame.io showed when the
//!   custom action was created.
//! - `PORT`: where to listen on 127.0.0.1 (default 8080; 0 picks a free
//!   port). Once ready the program prints `listening on http://ADDR`.
//!
//! Frame.io first calls the action without form data: the answer is the form.
//! When the user submits it, Frame.io calls again with `data.job` set: the job
//! is queued for the worker and the user sees "Job submitted!" at once. The
//! worker prints `worker: <job> job for <resource id>` for each job.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use s3tap::webhook::VerifyWebhookLayer;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The parts of a custom action call this action reads.
#[derive(Debug, Deserialize)]
struct ActionCall {
    #[serde(default)]
    resource: Option<Resource>,
    /// Present only when the user submitted the form.
    #[serde(default)]
    data: Option<FormData>,
}

#[derive(Debug, Deserialize)]
struct Resource {
    id: String,
}

#[derive(Debug, Deserialize)]
struct FormData {
    job: Option<String>,
}

/// What the worker is asked to do.
#[derive(Debug)]
struct Job {
    kind: JobKind,
    resource_id: String,
}

#[derive(Debug, Clone, Copy)]
enum JobKind {
    Import,
    Export,
}

fn app(secret: &str, jobs: mpsc::Sender<Job>) -> Router {
    Router::new()
        .route("/actions/import-export", post(custom_action))
        .route_layer(VerifyWebhookLayer::frameio(secret))
        .with_state(jobs)
}

fn form() -> Value {
    json!({
        "title": "Import or export?",
        "description": "Choose what to do with this asset.",
        "fields": [{
            "type": "select",
            "label": "Job",
            "name": "job",
            "options": [
                { "name": "Import", "value": "import" },
                { "name": "Export", "value": "export" }
            ]
        }]
    })
}

async fn custom_action(
    State(jobs): State<mpsc::Sender<Job>>,
    Json(call): Json<ActionCall>,
) -> (StatusCode, Json<Value>) {
    let Some(FormData { job: Some(job) }) = call.data else {
        return (StatusCode::OK, Json(form()));
    };
    let kind = match job.as_str() {
        "import" => JobKind::Import,
        "export" => JobKind::Export,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "title": "Unknown job", "description": "Pick Import or Export." })),
            )
        }
    };
    let resource_id = call
        .resource
        .map(|resource| resource.id)
        .unwrap_or_default();
    // The user is waiting on this answer; the job itself runs elsewhere.
    if jobs.try_send(Job { kind, resource_id }).is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "title": "Busy", "description": "Too many jobs are queued; try again shortly." }),
            ),
        );
    }
    (
        StatusCode::OK,
        Json(
            json!({ "title": "Job submitted!", "description": format!("Your {job} job has been queued.") }),
        ),
    )
}

async fn work(mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        let kind = match job.kind {
            JobKind::Import => "import",
            JobKind::Export => "export",
        };
        println!("worker: {kind} job for {}", job.resource_id);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("FRAMEIO_SECRET")
        .map_err(|_| "set FRAMEIO_SECRET to the custom action's secret")?;
    let port: u16 = std::env::var("PORT")
        .ok()
        .map(|port| port.parse())
        .transpose()?
        .unwrap_or(8080);

    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(work(receiver));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(&secret, sender)).await?;
    Ok(())
}
