//! An axum app with routes of its own (`/api/hello`) and S3-style routes
//! under `/s3/` that only requests signed with AWS SigV4 reach. The S3
//! handlers read who signed from [`Verified`] and keep objects in memory.
//!
//! ```text
//! cargo run --example axum_app --features proxy
//! AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=example-secret \
//!   aws --endpoint-url http://127.0.0.1:3000/s3 s3 cp file.txt s3://bucket/file.txt
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use s3tap::credentials::StaticCredentials;
use s3tap::verify::{SigV4VerifyLayer, Verified};

pub const ACCESS_KEY: &str = "AKIDEXAMPLE";
pub const SECRET: &str = "example-secret";

type Objects = Arc<Mutex<HashMap<String, Bytes>>>;

/// The whole app: plain routes beside verified S3 routes.
pub fn app() -> Router {
    let credentials = StaticCredentials::new().with_key(ACCESS_KEY, SECRET);
    // `Router::nest` would strip `/s3` from the URI before the layer saw it,
    // but clients sign the full path; so the S3 routes carry their prefix
    // and are merged, with the layer on them alone.
    let s3 = Router::new()
        .route("/s3/{bucket}/{*key}", get(get_object).put(put_object))
        .with_state(Objects::default())
        .layer(SigV4VerifyLayer::new(credentials));
    Router::new()
        .route("/api/hello", get(|| async { "hello from the app\n" }))
        .merge(s3)
}

async fn put_object(
    State(objects): State<Objects>,
    Extension(verified): Extension<Verified>,
    Path((bucket, key)): Path<(String, String)>,
    // The verified, decoded payload: aws-chunked framing is already gone.
    body: Bytes,
) -> StatusCode {
    println!(
        "{} stored {bucket}/{key} ({} bytes)",
        verified.identity,
        body.len()
    );
    objects
        .lock()
        .unwrap()
        .insert(format!("{bucket}/{key}"), body);
    StatusCode::OK
}

async fn get_object(
    State(objects): State<Objects>,
    Path((bucket, key)): Path<(String, String)>,
) -> Result<Bytes, StatusCode> {
    let objects = objects.lock().unwrap();
    objects
        .get(&format!("{bucket}/{key}"))
        .cloned()
        .ok_or(StatusCode::NOT_FOUND)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app()).await?;
    Ok(())
}
