//! The operator's endpoints on the admin listener: dead letters (list,
//! inspect, redrive, purge) and enabling a sink again, as JSON behind a
//! bearer token, plus the notification checks of `/readyz` and the
//! oldest-undelivered gauge of `/metrics`.
//!
//! | method and path | does |
//! | --- | --- |
//! | `GET /admin/dead-letters?sink=&limit=&older_than=&newer_than=` | lists dead letters (default limit 100) |
//! | `GET /admin/dead-letters/{id}` | one dead letter by event id: reason, attempts, sink, times, the event |
//! | `POST /admin/dead-letters/redrive?sink=&older_than=&newer_than=&id=` | delivers the selected dead letters again (no selector: all) |
//! | `POST /admin/dead-letters/{id}/redrive` | delivers one again |
//! | `DELETE /admin/dead-letters?sink=&older_than=&newer_than=&id=` or `&all=true` | purges the selected (a selector or `all=true` is required) |
//! | `POST /admin/dead-letters/purge?...` | the same as `DELETE` |
//! | `DELETE /admin/dead-letters/{id}` | purges one |
//! | `POST /admin/sinks/{name}/enable[?redrive=true]` | enables a sink a `410` disabled; with `redrive=true` its dead letters go again too |
//!
//! With `[outbox]` (fleet mode) the dead-letter endpoints act on the
//! outbox's dead-letter stream, where the deliverers put what sinks refused.
//!
//! Selectors may also come as a JSON object in a `POST` body
//! (`{"sink":"hook","older_than":"1h"}`). Ages are counted from the moment
//! an event was dead-lettered: `90`, `90s`, `15m`, `2h`, `1d`.
//!
//! Every request needs `Authorization: Bearer <token>`, the token of
//! `[admin] token` or `S3TAP_ADMIN_TOKEN`: without a configured token the
//! endpoints answer `403` (never open by default), with a missing or wrong
//! one `401`. Errors are `{"error":"<code>","message":"..."}`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};

use super::metrics::ProxyMetrics;
use crate::credentials::Secret;
use crate::notify::{DeadLetter, DeadLetterFilter, Dispatcher, DispatcherError};

/// Default and largest `limit` of a listing.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
/// Largest `POST` body (selectors only).
const MAX_BODY: usize = 64 * 1024;

/// What the admin endpoints act on.
pub(crate) struct AdminState {
    pub(crate) dispatcher: Dispatcher,
    /// `GET /admin/sinks`: each sink's name and ARN (for the bucket
    /// notification API).
    pub(crate) sinks_json: Arc<str>,
    pub(crate) token: Option<Secret>,
    /// Each rule's name and sinks, for `/readyz`.
    pub(crate) rules: Vec<(String, Vec<String>)>,
    pub(crate) readyz_max_spool_fill: Option<f64>,
    /// Fleet mode: the outbox, and the buffer fill above which `/readyz`
    /// fails while the outbox is unreachable.
    pub(crate) outbox: Option<(super::outbox::Engine, f64)>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("token", &self.token.is_some())
            .field("readyz_max_spool_fill", &self.readyz_max_spool_fill)
            .finish_non_exhaustive()
    }
}

/// Why notifications make the proxy unready, one line per reason; empty
/// when they are healthy.
pub(crate) fn notify_unready(state: &AdminState) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(max) = state.readyz_max_spool_fill {
        let fill = state.dispatcher.spool_fill();
        if fill > max {
            reasons.push(format!(
                "event spool is {:.0}% full, above [notify] readyz_max_spool_fill = {max} ({:.0}%): sinks are not keeping up",
                fill * 100.0,
                max * 100.0
            ));
        }
    }
    if let Some((outbox, max)) = &state.outbox {
        let fill = state.dispatcher.spool_fill();
        if !outbox.is_connected() && fill > *max {
            reasons.push(format!(
                "the outbox is unreachable and the local buffer is {:.0}% full, above [outbox] readyz_max_buffer_fill = {max}",
                fill * 100.0
            ));
        }
    }
    let stats = state.dispatcher.stats();
    let disabled = stats.disabled_sinks();
    for (rule, sinks) in &state.rules {
        if !sinks.is_empty() && sinks.iter().all(|s| disabled.contains(&s.as_str())) {
            reasons.push(format!(
                "rule {rule:?}: every sink is disabled ({}); enable with `s3tap sinks enable NAME`",
                sinks.join(", ")
            ));
        }
    }
    reasons
}

/// Sets `s3tap_oldest_undelivered_seconds{sink}` for every sink (0 when
/// nothing waits), before a scrape.
pub(crate) async fn record_oldest_undelivered(metrics: &ProxyMetrics, dispatcher: &Dispatcher) {
    match dispatcher.oldest_undelivered().await {
        Ok(ages) => {
            for (sink, age) in ages {
                metrics.oldest_undelivered(&sink, age.map_or(0.0, |a| a.as_secs_f64()));
            }
        }
        Err(error) => tracing::debug!(%error, "cannot read the oldest undelivered events"),
    }
}

/// Answers one `/admin/...` request.
pub(crate) async fn handle(
    state: &AdminState,
    request: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if let Err(error) = authorize(state, request.headers()) {
        return error.into_response();
    }
    let (parts, body) = request.into_parts();
    let mut selectors = query(parts.uri.query().unwrap_or(""));
    if parts.method == Method::POST {
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                if !bytes.iter().all(u8::is_ascii_whitespace) {
                    match serde_json::from_slice::<BTreeMap<String, Value>>(&bytes) {
                        Ok(object) => {
                            for (name, value) in object {
                                let text = match value {
                                    Value::String(s) => s,
                                    other => other.to_string(),
                                };
                                selectors.insert(name, text);
                            }
                        }
                        Err(e) => {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "bad_body",
                                format!("the body must be a JSON object of selectors: {e}"),
                            )
                            .into_response()
                        }
                    }
                }
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("cannot read the body (at most {MAX_BODY} bytes): {e}"),
                )
                .into_response()
            }
        }
    }
    let path = parts.uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(3).collect();
    let section = path.split('/').nth(2);
    let served = match (section, &parts.method, segments.as_slice()) {
        (Some("dead-letters"), method, segments) => {
            dead_letters(&state.letters(), method, segments, selectors).await
        }
        (Some("sinks"), &Method::GET, []) => {
            Some(serde_json::from_str(&state.sinks_json).map_err(|e| {
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("the sink list is not JSON: {e}"),
                )
            }))
        }
        (Some("sinks"), &Method::POST, [name, "enable"]) => {
            Some(enable(state, &decode(name), &selectors).await)
        }
        _ => None,
    };
    let result = match served {
        Some(result) => result,
        None if matches!(section, Some("dead-letters" | "sinks"))
            && known_path(&segments, path) =>
        {
            Err(error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed on {path}", parts.method),
            ))
        }
        None => Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no admin endpoint {path}"),
        )),
    };
    match result {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(error) => error.into_response(),
    }
}

fn known_path(segments: &[&str], path: &str) -> bool {
    match path.split('/').nth(2) {
        Some("dead-letters") => {
            matches!(segments, [] | ["redrive" | "purge"] | [_] | [_, "redrive"])
        }
        Some("sinks") => matches!(segments, [] | [_, "enable"]),
        _ => false,
    }
}

/// Why an admin request failed: its status, a stable code and a readable
/// message, answered as `{"error":code,"message":...}`.
#[derive(Debug)]
pub(crate) struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `WWW-Authenticate: Bearer` on 401s.
    challenge: bool,
}

impl AdminError {
    /// What went wrong, as the JSON's `message` says it.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError {
            status,
            code,
            message: message.into(),
            challenge: false,
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = json_response(
            self.status,
            &json!({ "error": self.code, "message": self.message }),
        );
        if self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

pub(crate) type Answer = Result<Value, AdminError>;

fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(token) = &state.token else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is off: set [admin] token in the config file or S3TAP_ADMIN_TOKEN, then send it as Authorization: Bearer <token>".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(given) = given else {
        return Err(unauthorized(
            "missing_token",
            "send the admin token as Authorization: Bearer <token>",
        ));
    };
    // Digests first, so the comparison takes the same time whatever the
    // lengths.
    use sha2::{Digest, Sha256};
    let expected = Sha256::digest(token.expose().as_bytes());
    let offered = Sha256::digest(given.as_bytes());
    if crate::crypto::constant_time_eq(&expected, &offered) {
        Ok(())
    } else {
        Err(unauthorized("invalid_token", "the admin token is wrong"))
    }
}

fn unauthorized(code: &'static str, message: &str) -> AdminError {
    AdminError {
        challenge: true,
        ..AdminError::new(StatusCode::UNAUTHORIZED, code, message)
    }
}

/// Where the dead letters are: one proxy's spool, or, in fleet mode, the
/// outbox's dead-letter stream or topic (the deliverers put what sinks
/// refused there; the local spool only buffers publishes).
pub(crate) enum Letters<'a> {
    Spool(&'a Dispatcher),
    Outbox(super::outbox::DeadLetters),
}

impl AdminState {
    fn letters(&self) -> Letters<'_> {
        match &self.outbox {
            Some((outbox, _)) => Letters::Outbox(outbox.dead_letters()),
            None => Letters::Spool(&self.dispatcher),
        }
    }
}

/// The dead-letter endpoints, `segments` being the path after
/// `/admin/dead-letters`: `None` for a method and path they do not serve.
/// The admin listener and `s3tap dead-letters --config` (fleet mode, no
/// listener needed) both answer through it.
pub(crate) async fn dead_letters(
    letters: &Letters<'_>,
    method: &Method,
    segments: &[&str],
    mut selectors: BTreeMap<String, String>,
) -> Option<Answer> {
    Some(match (method, segments) {
        (&Method::GET, []) => list(letters, &selectors).await,
        (&Method::DELETE, []) => purge(letters, &selectors).await,
        (&Method::POST, ["redrive"]) => redrive(letters, &selectors).await,
        (&Method::POST, ["purge"]) => purge(letters, &selectors).await,
        (&Method::GET, [id]) => inspect(letters, &decode(id)).await,
        (&Method::DELETE, [id]) => {
            selectors.insert("id".into(), decode(id));
            purge(letters, &selectors).await
        }
        (&Method::POST, [id, "redrive"]) => {
            selectors.insert("id".into(), decode(id));
            redrive(letters, &selectors).await
        }
        _ => return None,
    })
}

fn outbox_error(error: crate::outbox::OutboxError) -> AdminError {
    self::error(StatusCode::SERVICE_UNAVAILABLE, "outbox", error.to_string())
}

async fn list(letters: &Letters<'_>, selectors: &BTreeMap<String, String>) -> Answer {
    let filter = filter(selectors)?;
    let limit = match selectors.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "bad_selector",
                    format!("limit must be a number from 1 to {MAX_LIMIT}, not {text:?}"),
                ))
            }
        },
    };
    let items: Vec<Value> = match letters {
        Letters::Outbox(stream) => stream
            .list(&filter, limit)
            .await
            .map_err(outbox_error)?
            .iter()
            .map(super::outbox::dead_letter_json)
            .collect(),
        Letters::Spool(dispatcher) => dispatcher
            .dead_letters_matching(&filter, limit)
            .await
            .map_err(dispatcher_error)?
            .iter()
            .map(letter_json)
            .collect(),
    };
    Ok(json!({ "count": items.len(), "dead_letters": items }))
}

async fn inspect(letters: &Letters<'_>, id: &str) -> Answer {
    let dispatcher = match letters {
        Letters::Spool(dispatcher) => dispatcher,
        Letters::Outbox(stream) => {
            let filter = DeadLetterFilter::all().id(id);
            let found = stream.list(&filter, 1).await.map_err(outbox_error)?;
            return found
                .first()
                .map(super::outbox::dead_letter_json)
                .ok_or_else(|| {
                    error(
                        StatusCode::NOT_FOUND,
                        "no_such_dead_letter",
                        format!("no dead letter for event {id:?}"),
                    )
                });
        }
    };
    match dispatcher.dead_letter(id).await.map_err(dispatcher_error)? {
        Some(letter) => Ok(letter_json(&letter)),
        None => Err(error(
            StatusCode::NOT_FOUND,
            "no_such_dead_letter",
            format!("no dead letter for event {id:?}"),
        )),
    }
}

async fn redrive(letters: &Letters<'_>, selectors: &BTreeMap<String, String>) -> Answer {
    let filter = filter(selectors)?;
    let moved = match letters {
        Letters::Outbox(stream) => stream.redrive(&filter).await.map_err(outbox_error)?,
        Letters::Spool(dispatcher) => dispatcher
            .redrive(&filter)
            .await
            .map_err(dispatcher_error)?,
    };
    tracing::info!(
        events = moved.values().sum::<u64>(),
        ?filter,
        "dead letters redriven by the operator"
    );
    Ok(json!({ "redriven": moved.values().sum::<u64>(), "sinks": moved }))
}

async fn purge(letters: &Letters<'_>, selectors: &BTreeMap<String, String>) -> Answer {
    let filter = filter(selectors)?;
    let all = selectors.get("all").is_some_and(|v| v == "true");
    if filter.is_everything() && !all {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "selector_required",
            "purging needs a selector (sink, id, older_than, newer_than) or all=true".into(),
        ));
    }
    let purged = match letters {
        Letters::Outbox(stream) => stream.purge(&filter).await.map_err(outbox_error)?,
        Letters::Spool(dispatcher) => dispatcher.purge(&filter).await.map_err(dispatcher_error)?,
    };
    tracing::info!(
        events = purged.values().sum::<u64>(),
        ?filter,
        "dead letters purged by the operator"
    );
    Ok(json!({ "purged": purged.values().sum::<u64>(), "sinks": purged }))
}

async fn enable(state: &AdminState, sink: &str, selectors: &BTreeMap<String, String>) -> Answer {
    let was_disabled = state
        .dispatcher
        .enable_sink(sink)
        .await
        .map_err(dispatcher_error)?;
    let redriven = if selectors.get("redrive").is_some_and(|v| v == "true") {
        state
            .dispatcher
            .redrive(&DeadLetterFilter::all().sink(sink))
            .await
            .map_err(dispatcher_error)?
            .values()
            .sum::<u64>()
    } else {
        0
    };
    Ok(json!({ "sink": sink, "enabled": true, "was_disabled": was_disabled, "redriven": redriven }))
}

fn filter(selectors: &BTreeMap<String, String>) -> Result<DeadLetterFilter, AdminError> {
    let mut filter = DeadLetterFilter::all();
    for (name, value) in selectors {
        match name.as_str() {
            "sink" => filter.sink = Some(value.clone()),
            "id" => filter.id = Some(value.clone()),
            "older_than" | "newer_than" => {
                let age = parse_age(value).ok_or_else(|| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "bad_selector",
                        format!("{name} = {value:?} is not an age such as 90, 90s, 15m, 2h or 1d"),
                    )
                })?;
                if name == "older_than" {
                    filter.older_than = Some(age);
                } else {
                    filter.newer_than = Some(age);
                }
            }
            "limit" | "all" | "redrive" => {}
            other => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "bad_selector",
                    format!("unknown selector {other:?}; expected sink, id, older_than, newer_than, limit or all"),
                ))
            }
        }
    }
    Ok(filter)
}

/// `90`, `90s`, `15m`, `2h`, `1d`.
pub(crate) fn parse_age(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

fn letter_json(letter: &DeadLetter) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "id": letter.event.id.as_str(),
        "sink": letter.sink,
        "seq": letter.seq,
        "attempts": letter.attempts,
        "reason": letter.reason,
        "spooled_at_ms": letter.spooled_at_ms,
        "dead_since_ms": letter.dead_since_ms,
        "dead_for_secs": now.saturating_sub(letter.dead_since_ms) / 1000,
        "bucket": letter.event.bucket,
        "key": letter.event.key,
        "event": letter.event,
    })
}

fn dispatcher_error(error_: DispatcherError) -> AdminError {
    match error_ {
        DispatcherError::UnknownSink(name) => error(
            StatusCode::NOT_FOUND,
            "unknown_sink",
            format!("no sink named {name:?}"),
        ),
        DispatcherError::Closed => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the event dispatcher is shutting down".into(),
        ),
        other => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "spool_error",
            other.to_string(),
        ),
    }
}

fn error(status: StatusCode, code: &'static str, message: String) -> AdminError {
    AdminError::new(status, code, message)
}

fn json_response(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec(value).expect("JSON values serialize");
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The query's `name=value` pairs, decoded.
fn query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Percent-decoding (and `+` as a space) of a query part or path segment.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_decoding() {
        assert_eq!(parse_age("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_age("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_age("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_age("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_age("1w"), None);
        assert_eq!(parse_age("m"), None);
        assert_eq!(decode("a%2Fb+c%"), "a/b c%");
        let q = query("sink=hook&older_than=1h&all");
        assert_eq!(q["sink"], "hook");
        assert_eq!(q["all"], "");
    }
}
