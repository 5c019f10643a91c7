//! The read path: `GetObject` and `HeadObject` of transformed objects,
//! answered in the client's view, and `Range` reads served from the frame
//! index.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{request, Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::body::{ResponseBody, TransformBody};
use super::codec::{by_name, Codec, FrameIndex, CODEC_NAMES};
use super::error::TransformError;
use super::service::{
    client_etag, collect, derived, error_response, query_value, send, strip_checksums,
    strip_reserved, upstream_failed, Answer, Failed, META_LENGTH, META_TRANSFORM,
};
use crate::body::BoxError;
use crate::s3error::{S3Error, S3ErrorCode};

/// The last bytes fetched to find an object's index in one request.
const INDEX_PROBE: u64 = 64 * 1024;

/// The client's conditions name the ETags it was given; the upstream knows
/// them without the codec's suffix (any built-in codec's: the condition
/// comes before the answer says which codec wrote the object).
fn upstream_conditions(headers: &mut HeaderMap) {
    for name in [header::IF_MATCH, header::IF_NONE_MATCH] {
        let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let mut upstream = value.to_owned();
        for codec in CODEC_NAMES {
            upstream = upstream.replace(&format!(".{codec}\""), "\"");
        }
        if upstream == value {
            continue;
        }
        if let Ok(value) = HeaderValue::from_str(&upstream) {
            headers.insert(name, value);
        }
    }
}

/// A single `Range: bytes=...` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RangeSpec {
    From(u64, Option<u64>),
    Suffix(u64),
}

fn parse_range(value: &str) -> Option<RangeSpec> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    if first.is_empty() {
        return Some(RangeSpec::Suffix(last.trim().parse().ok()?));
    }
    let first = first.trim().parse().ok()?;
    let last = if last.trim().is_empty() {
        None
    } else {
        Some(last.trim().parse().ok()?)
    };
    if last.is_some_and(|l| l < first) {
        return None;
    }
    Some(RangeSpec::From(first, last))
}

/// The inclusive plaintext range, or `None` when it cannot be satisfied.
fn resolve(range: RangeSpec, total: u64) -> Option<(u64, u64)> {
    if total == 0 {
        return None;
    }
    match range {
        RangeSpec::From(first, _) if first >= total => None,
        RangeSpec::From(first, last) => Some((first, last.map_or(total - 1, |l| l.min(total - 1)))),
        RangeSpec::Suffix(0) => None,
        RangeSpec::Suffix(n) => Some((total.saturating_sub(n), total - 1)),
    }
}

/// The stored object's length from a 200 or 206 response.
fn stored_length(headers: &HeaderMap, status: StatusCode) -> Option<u64> {
    if status == StatusCode::PARTIAL_CONTENT {
        let range = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
        return range.rsplit('/').next()?.parse().ok();
    }
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A GET like the client's read (same target, version, signed identity),
/// for stored bytes `first..=last`, without the conditions that could make
/// it answer 304.
fn ranged_get<B>(template: &request::Parts, first: u64, last: u64) -> Request<TransformBody<B>> {
    let mut headers = template.headers.clone();
    for name in [
        header::RANGE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_RANGE,
    ] {
        headers.remove(name);
    }
    headers.insert(
        header::RANGE,
        HeaderValue::from_str(&format!("bytes={first}-{last}")).expect("ASCII range"),
    );
    derived(
        template,
        Method::GET,
        template.uri.query(),
        headers,
        Bytes::new(),
    )
}

async fn fetch_index<S, B, RB>(
    inner: &mut S,
    template: &request::Parts,
    codec: &dyn Codec,
    stored_len: u64,
) -> Result<FrameIndex, Failed<S::Error>>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    if stored_len == 0 {
        return Err(TransformError::BadIndex.into());
    }
    let mut want = stored_len.min(INDEX_PROBE);
    loop {
        let request = ranged_get(template, stored_len - want, stored_len - 1);
        let response = send(inner, request).await?;
        if let Some(error) = upstream_failed("GetObject (index)", &response) {
            return Err(error.into());
        }
        let tail = collect(response.into_body(), want as usize).await?;
        let size = FrameIndex::count_from_tail(codec, &tail)
            .and_then(|count| FrameIndex::stored_size(codec, count))
            .ok_or(TransformError::BadIndex)?;
        if size <= tail.len() as u64 {
            return FrameIndex::from_tail(codec, &tail)
                .ok_or_else(|| TransformError::BadIndex.into());
        }
        if size > stored_len || size > 16 * 1024 * 1024 || want == size {
            return Err(TransformError::BadIndex.into());
        }
        want = size;
    }
}

pub(super) async fn read<S, B, RB>(inner: &mut S, request: Request<B>) -> Answer<RB, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    B: Body<Data = Bytes>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let (mut template, body) = request.into_parts();
    upstream_conditions(&mut template.headers);
    let range = template
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let is_head = template.method == Method::HEAD;
    let part_number = query_value(&template.uri, "partNumber").is_some();
    let forward = Request::from_parts(template.clone(), TransformBody::client(body));
    let mut response = send(inner, forward).await?;
    if response.status() == StatusCode::RANGE_NOT_SATISFIABLE && range.is_some() {
        // The range was read against the stored (smaller) bytes; a HEAD
        // tells whether the object is transformed and the range is the
        // plaintext's to judge.
        let mut headers = template.headers.clone();
        headers.remove(header::RANGE);
        let probe = derived(
            &template,
            Method::HEAD,
            template.uri.query(),
            headers,
            Bytes::new(),
        );
        let head = send(inner, probe).await?;
        if head.headers().contains_key(META_TRANSFORM) && head.status() == StatusCode::OK {
            response = head;
        }
    }
    let status = response.status();
    let Some(name) = response
        .headers()
        .get(META_TRANSFORM)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return Ok(response.map(ResponseBody::inner));
    };
    if status != StatusCode::OK && status != StatusCode::PARTIAL_CONTENT {
        let mut response = response;
        strip_reserved(response.headers_mut());
        return Ok(response.map(ResponseBody::inner));
    }
    if part_number {
        return Err(TransformError::Unsupported(
            "GetObject by partNumber is not supported on a transformed object: its parts are stored encoded; read it whole or by Range.",
        )
        .into());
    }
    let codec = by_name(&name).ok_or(TransformError::UnknownCodec(name))?;
    let stored_len = stored_length(response.headers(), status).ok_or(TransformError::BadIndex)?;
    let meta_len = response
        .headers()
        .get(META_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (mut head, body) = response.into_parts();
    strip_reserved(&mut head.headers);
    strip_checksums(&mut head.headers);
    head.headers.remove(header::CONTENT_RANGE);
    head.headers.remove("x-amz-mp-parts-count");
    client_etag(&mut head.headers, &*codec);
    let index = if meta_len.is_none() || range.is_some() {
        Some(fetch_index(inner, &template, &*codec, stored_len).await?)
    } else {
        None
    };
    let total = meta_len.unwrap_or_else(|| index.as_ref().map_or(0, FrameIndex::plain_len));
    let Some(range) = range else {
        head.status = StatusCode::OK;
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
        let body = if is_head {
            ResponseBody::bytes(Bytes::new())
        } else if status == StatusCode::OK {
            let decoder = codec.decoder().map_err(TransformError::Decode)?;
            ResponseBody::decoded(body, decoder, 0, total)
        } else {
            return Err(TransformError::BadIndex.into());
        };
        return Ok(Response::from_parts(head, body));
    };
    drop(body);
    let Some((first, last)) = resolve(range, total) else {
        let error = S3Error::new(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        )
        .with_detail("RangeRequested", format!("{range:?}"))
        .with_detail("ActualObjectSize", total.to_string());
        return Ok(error_response(&error, template.uri.path(), is_head));
    };
    let len = last - first + 1;
    head.status = StatusCode::PARTIAL_CONTENT;
    head.headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    head.headers.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&format!("bytes {first}-{last}/{total}")).expect("ASCII range"),
    );
    if is_head {
        return Ok(Response::from_parts(
            head,
            ResponseBody::bytes(Bytes::new()),
        ));
    }
    let index = index.expect("fetched for ranges");
    let (stored_first, stored_last, skip) =
        index.plan(first, last).ok_or(TransformError::BadIndex)?;
    let response = send(inner, ranged_get(&template, stored_first, stored_last)).await?;
    if let Some(error) = upstream_failed("GetObject (range)", &response) {
        return Err(error.into());
    }
    let decoder = codec.decoder().map_err(TransformError::Decode)?;
    Ok(Response::from_parts(
        head,
        ResponseBody::decoded(response.into_body(), decoder, skip, len),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_name_the_upstream_etag_whichever_codec_wrote_it() {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, HeaderValue::from_static("\"abc.gzip\""));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x.zstd\", \"y-2\""),
        );
        upstream_conditions(&mut headers);
        assert_eq!(headers[header::IF_MATCH], "\"abc\"");
        assert_eq!(headers[header::IF_NONE_MATCH], "\"x\", \"y-2\"");
    }

    #[test]
    fn ranges_resolve_as_s3_does() {
        let r = |v| parse_range(v).and_then(|r| resolve(r, 100));
        assert_eq!(r("bytes=0-9"), Some((0, 9)));
        assert_eq!(r("bytes=90-200"), Some((90, 99)));
        assert_eq!(r("bytes=50-"), Some((50, 99)));
        assert_eq!(r("bytes=-10"), Some((90, 99)));
        assert_eq!(r("bytes=-1000"), Some((0, 99)));
        assert_eq!(r("bytes=100-"), None);
        assert_eq!(parse_range("bytes=0-1,5-6"), None);
    }
}
