//! The admin listener: its accept loop, `/healthz`, `/readyz` and
//! `/metrics`; `/admin/...` requests go to the admin API in
//! [`admin`](super::admin).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::admin::AdminState;
use super::metrics::ProxyMetrics;

pub(super) async fn serve_admin(
    listener: TcpListener,
    ready_target: Arc<str>,
    metrics: Arc<ProxyMetrics>,
    state: Arc<AdminState>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let ready_target = ready_target.clone();
        let metrics = metrics.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let ready_target = ready_target.clone();
                let metrics = metrics.clone();
                let state = state.clone();
                async move {
                    if request.uri().path().starts_with("/admin/") {
                        return Ok::<_, Infallible>(super::admin::handle(&state, request).await);
                    }
                    if request.uri().path() == "/metrics" {
                        let dispatcher = &state.dispatcher;
                        super::admin::record_oldest_undelivered(&metrics, dispatcher).await;
                        let text = metrics.render(&dispatcher.stats());
                        let mut response = Response::new(Full::new(Bytes::from(text)));
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("text/plain; version=0.0.4"),
                        );
                        return Ok::<_, Infallible>(response);
                    }
                    Ok::<_, Infallible>(admin_response(&request, &ready_target, &state).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn admin_response(
    request: &Request<Incoming>,
    ready_target: &str,
    state: &AdminState,
) -> Response<Full<Bytes>> {
    let (status, text) = match request.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => {
            // A TCP connect is cheap, needs no credentials, and tells whether
            // the upstream can be reached at all.
            let connect = tokio::net::TcpStream::connect(ready_target);
            match tokio::time::timeout(Duration::from_secs(2), connect).await {
                Ok(Ok(_)) => match super::admin::notify_unready(state).as_slice() {
                    [] => (StatusCode::OK, "ready\n".to_owned()),
                    reasons => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {}\n", reasons.join("; ")),
                    ),
                },
                Ok(Err(e)) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("upstream {ready_target} unreachable: {e}\n"),
                ),
                Err(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("upstream {ready_target} did not accept a connection within 2 s\n"),
                ),
            }
        }
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}
