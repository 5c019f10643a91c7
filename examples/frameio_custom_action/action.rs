//! The custom action's HTTP side: the form steps (what to do, where, which
//! files), the job submission answered `202 Job submitted!`, and the status
//! of a job.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::jobs::{Direction, Job, JobStore};
use crate::transfer::ObjectStore;
use crate::worker::Shared;

/// At most this many entries in one browse form.
const BROWSE_LIMIT: usize = 100;

/// What the handlers share.
pub struct App {
    /// The job table.
    pub store: JobStore,
    /// B2, browsed for imports.
    pub b2: Arc<dyn ObjectStore>,
    /// Imports may pick only below this B2 prefix (`""`: the whole bucket).
    pub import_root: String,
    /// Shared with the worker.
    pub shared: Arc<Shared>,
}

/// The parts of a custom action call this action reads. Frame.io sends the
/// same `interaction_id` with every call of one run of the action, and the
/// answers to the last form in `data`.
#[derive(Debug, Deserialize)]
pub struct ActionCall {
    #[serde(default)]
    interaction_id: Option<String>,
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default)]
    data: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct Resource {
    id: String,
}

type Answer = (StatusCode, Json<Value>);

fn message(status: StatusCode, title: &str, description: impl Into<String>) -> Answer {
    (
        status,
        Json(json!({ "title": title, "description": description.into() })),
    )
}

fn refuse(description: impl Into<String>) -> Answer {
    message(StatusCode::BAD_REQUEST, "Cannot do that", description)
}

/// The step is read off the answers themselves (`job`, then `destination`
/// or `pick`), so no state is kept between calls: every value a later step
/// needs travels in the option values of the form before it.
pub async fn custom_action(
    State(app): State<Arc<App>>,
    Json(mut call): Json<ActionCall>,
) -> Answer {
    let data = call.data.take().unwrap_or_default();
    let text = |name: &str| data.get(name).and_then(Value::as_str);
    if let Some(job) = text("job") {
        return match job {
            "export" => export_form(call.resource.as_ref()),
            "import" => browse(&app, &app.import_root.clone()).await,
            _ => refuse("Pick Import or Export."),
        };
    }
    if let Some(destination) = text("destination") {
        return submit_export(&app, &call, destination).await;
    }
    if let Some(pick) = text("pick") {
        return pick_step(&app, &call, pick).await;
    }
    if data.is_empty() {
        return (StatusCode::OK, Json(job_form()));
    }
    refuse("This form's answers are not ones this action asked for.")
}

fn job_form() -> Value {
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

fn export_form(resource: Option<&Resource>) -> Answer {
    let Some(resource) = resource.filter(|r| valid_resource_id(&r.id)) else {
        return refuse("The call names no asset to export.");
    };
    (
        StatusCode::OK,
        Json(json!({
            "title": "Export to B2",
            "description": "Where in the B2 bucket should this asset go?",
            "fields": [{
                "type": "text",
                "label": "Destination prefix",
                "name": "destination",
                "value": format!("frameio/{}/", resource.id)
            }]
        })),
    )
}

/// A select of what lies directly under `prefix` in B2: folders to open or
/// to take whole, files to take.
async fn browse(app: &App, prefix: &str) -> Answer {
    let listing = match app.b2.list(prefix, Some("/"), BROWSE_LIMIT).await {
        Ok(listing) => listing,
        Err(error) => {
            eprintln!("browse {prefix:?}: {error}");
            return message(
                StatusCode::BAD_GATEWAY,
                "B2 did not answer",
                "The bucket could not be listed; try again shortly.",
            );
        }
    };
    let mut options = Vec::new();
    if prefix != app.import_root {
        options.push(json!({ "name": "⬆ Up", "value": format!("dir:{}", parent(prefix)) }));
        options.push(json!({
            "name": format!("Everything in {prefix}"),
            "value": format!("tree:{prefix}")
        }));
    }
    for folder in &listing.folders {
        let name = &folder[prefix.len().min(folder.len())..];
        options.push(json!({ "name": format!("Open {name}"), "value": format!("dir:{folder}") }));
        options
            .push(json!({ "name": format!("All of {name}"), "value": format!("tree:{folder}") }));
    }
    for object in &listing.objects {
        let name = &object.key[prefix.len().min(object.key.len())..];
        options.push(json!({
            "name": format!("{name} ({})", human_size(object.size)),
            "value": format!("file:{}", object.key)
        }));
    }
    let shown = if prefix.is_empty() { "/" } else { prefix };
    let mut description = format!("B2: {shown}. Pick a file, a whole folder, or a folder to open.");
    if listing.truncated {
        description.push_str(&format!(
            " Only the first {BROWSE_LIMIT} entries are shown."
        ));
    }
    (
        StatusCode::OK,
        Json(json!({
            "title": "Import from B2",
            "description": description,
            "fields": [{ "type": "select", "label": "Pick", "name": "pick", "options": options }]
        })),
    )
}

async fn pick_step(app: &App, call: &ActionCall, pick: &str) -> Answer {
    let Some((kind, path)) = pick.split_once(':') else {
        return refuse("Pick one of the listed entries.");
    };
    if !path.starts_with(&app.import_root) || !valid_key(path) {
        return refuse("That entry is outside what this action may import.");
    }
    match kind {
        "dir" if path.is_empty() || path.ends_with('/') => browse(app, path).await,
        // A tree keeps its folder's own name under the asset's folder.
        "tree" if path.ends_with('/') && !path.is_empty() => {
            submit(app, call, Direction::Import, path, false, parent(path)).await
        }
        "file" if !path.ends_with('/') && !path.is_empty() => {
            let strip = match path.rfind('/') {
                Some(slash) => &path[..=slash],
                None => "",
            };
            submit(app, call, Direction::Import, path, true, strip).await
        }
        _ => refuse("Pick one of the listed entries."),
    }
}

async fn submit_export(app: &App, call: &ActionCall, destination: &str) -> Answer {
    let destination = destination.trim().trim_start_matches('/');
    if destination.is_empty() || !valid_key(destination) {
        return refuse("Give a destination such as frameio/footage/ (no '..' segments).");
    }
    let Some(resource) = call.resource.as_ref().filter(|r| valid_resource_id(&r.id)) else {
        return refuse("The call names no asset to export.");
    };
    let source = format!("{}/", resource.id);
    let mut destination = destination.to_owned();
    if !destination.ends_with('/') {
        destination.push('/');
    }
    let job = |interaction: &str| {
        Job::new(
            interaction,
            &resource.id,
            Direction::Export,
            source.clone(),
            false,
            source.clone(),
            destination.clone(),
        )
    };
    queue(app, call, job).await
}

async fn submit(
    app: &App,
    call: &ActionCall,
    direction: Direction,
    source: &str,
    single: bool,
    strip: &str,
) -> Answer {
    let Some(resource) = call.resource.as_ref().filter(|r| valid_resource_id(&r.id)) else {
        return refuse("The call names no asset folder to import into.");
    };
    let destination = format!("{}/", resource.id);
    let job = |interaction: &str| {
        Job::new(
            interaction,
            &resource.id,
            direction,
            source.to_owned(),
            single,
            strip.to_owned(),
            destination.clone(),
        )
    };
    queue(app, call, job).await
}

/// Stores the job (once per interaction) and answers at once; the worker
/// does the copying.
async fn queue(app: &App, call: &ActionCall, job: impl FnOnce(&str) -> Job) -> Answer {
    let Some(interaction) = call.interaction_id.as_deref().filter(|i| !i.is_empty()) else {
        return refuse("The call has no interaction_id.");
    };
    let job = match app.store.submit(job(interaction)).await {
        Ok(job) => job,
        Err(error) => {
            eprintln!("submit: {error}");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not submitted",
                "The job could not be stored; try again shortly.",
            );
        }
    };
    app.shared.wake.notify_one();
    let what = match job.direction {
        Direction::Import => format!("Importing {} from B2", job.source_prefix),
        Direction::Export => format!("Exporting to B2 under {}", job.destination_prefix),
    };
    message(
        StatusCode::ACCEPTED,
        "Job submitted!",
        format!("{what}. Job {}; its status: /jobs/{}", job.id, job.id),
    )
}

/// `GET /jobs/{id}`: the job as stored, with the object being copied now.
pub async fn job_status(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    match app.store.get(id).await {
        Ok(Some(job)) => {
            let mut value = serde_json::to_value(&job).unwrap_or_default();
            let current = app.shared.current.lock().unwrap().clone();
            value["current"] = match current.filter(|c| c.job == job.id) {
                Some(current) => serde_json::to_value(current).unwrap_or_default(),
                None => Value::Null,
            };
            (StatusCode::OK, Json(value))
        }
        Ok(None) => message(StatusCode::NOT_FOUND, "No such job", "Unknown job id."),
        Err(error) => {
            eprintln!("status: {error}");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The job table cannot be read.",
            )
        }
    }
}

/// `GET /jobs`: every job, oldest first.
pub async fn jobs(State(app): State<Arc<App>>) -> Answer {
    match app.store.all().await {
        Ok(jobs) => (StatusCode::OK, Json(json!(jobs))),
        Err(error) => {
            eprintln!("status: {error}");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The job table cannot be read.",
            )
        }
    }
}

/// `a/b/c/` -> `a/b/`, `a/b/c` -> `a/b/`, `a/` -> ``.
fn parent(path: &str) -> &str {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    match trimmed.rfind('/') {
        Some(slash) => &path[..=slash],
        None => "",
    }
}

/// Asset ids become a key prefix: letters, digits, `-`, `_`, `.` only.
fn valid_resource_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// No `.`/`..` segments and no control characters: a key that names the
/// same object everywhere.
fn valid_key(key: &str) -> bool {
    key.len() <= 1024
        && !key.chars().any(char::is_control)
        && !key
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
