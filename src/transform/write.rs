//! The write path: `PutObject` (one `PUT` upstream, or an upstream multipart
//! upload of the layer's own), and the client's multipart steps
//! (`CreateMultipartUpload`, `UploadPart`, `CompleteMultipartUpload`).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{request, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::body::{ResponseBody, TransformBody};
use super::codec::{Codec, Encode, FrameIndex, IndexEntry};
use super::error::TransformError;
use super::layer::TransformConfig;
use super::service::{
    bare_headers, client_etag, collect, derived, query_encode, query_value, send, strip_checksums,
    strip_payload_headers, upstream_failed, xml_child_text, Answer, Failed, MAX_CLIENT_PART,
    META_LENGTH, META_TRANSFORM,
};
use crate::body::BoxError;
use crate::xml::Element;

/// The largest `CompleteMultipartUpload` document read (10,000 parts fit).
const MAX_COMPLETE_XML: usize = 4 * 1024 * 1024;

/// Feeds plaintext to an encoder, ending a frame every `frame_size` bytes
/// and recording each frame in the index.
struct FrameWriter<'c> {
    encoder: Box<dyn Encode>,
    frame_size: u64,
    frame_plain: u64,
    /// Stored bytes produced before the current frame (sent or not).
    frame_start: u64,
    /// Stored bytes already taken out of `out`.
    taken: u64,
    out: Vec<u8>,
    index: FrameIndex,
    plain: u64,
    codec: &'c dyn Codec,
}

impl<'c> FrameWriter<'c> {
    fn new(codec: &'c dyn Codec, frame_size: u64) -> Result<Self, TransformError> {
        Ok(FrameWriter {
            encoder: codec.encoder().map_err(TransformError::Encode)?,
            frame_size,
            frame_plain: 0,
            frame_start: 0,
            taken: 0,
            out: Vec::new(),
            index: FrameIndex::default(),
            plain: 0,
            codec,
        })
    }

    fn write(&mut self, mut data: &[u8]) -> Result<(), TransformError> {
        self.plain += data.len() as u64;
        while !data.is_empty() {
            let room = (self.frame_size - self.frame_plain).min(data.len() as u64) as usize;
            self.encoder
                .write(&data[..room], &mut self.out)
                .map_err(TransformError::Encode)?;
            self.frame_plain += room as u64;
            data = &data[room..];
            if self.frame_plain == self.frame_size {
                self.end_frame()?;
            }
        }
        Ok(())
    }

    fn end_frame(&mut self) -> Result<(), TransformError> {
        self.encoder
            .end_frame(&mut self.out)
            .map_err(TransformError::Encode)?;
        let produced = self.taken + self.out.len() as u64;
        self.index.entries.push(IndexEntry {
            stored: produced - self.frame_start,
            plain: self.frame_plain,
        });
        self.frame_start = produced;
        self.frame_plain = 0;
        Ok(())
    }

    /// Ends the last frame (an empty upload still gets one).
    fn finish(&mut self) -> Result<(), TransformError> {
        if self.frame_plain > 0 || self.index.entries.is_empty() {
            self.end_frame()?;
        }
        Ok(())
    }

    /// Pads what was written so far up to `min` stored bytes with
    /// skippable frames, counted in the last index entry.
    fn pad_to(&mut self, min: usize) {
        let len = self.out.len();
        if len >= min {
            return;
        }
        let payload = (min - len).saturating_sub(self.codec.skippable_len(0));
        self.codec.skippable(&vec![0u8; payload], &mut self.out);
        let added = (self.out.len() - len) as u64;
        if let Some(last) = self.index.entries.last_mut() {
            last.stored += added;
        }
        self.frame_start += added;
    }

    fn take(&mut self) -> Bytes {
        let out = std::mem::take(&mut self.out);
        self.taken += out.len() as u64;
        Bytes::from(out)
    }
}

async fn next_data<B>(body: &mut B) -> Result<Option<Bytes>, TransformError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => {
                let error: BoxError = e.into();
                // The verifier's refusal keeps its own code (a forged
                // payload hash is XAmzContentSHA256Mismatch, not a broken
                // connection).
                return Err(match error.downcast_ref::<crate::verify::VerifyError>() {
                    Some(refusal) => TransformError::Refused(refusal.to_s3_error()),
                    None => TransformError::Body(error.to_string()),
                });
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// An upstream multipart upload the layer opened for a `PUT` that outgrew
/// one part.
struct OwnUpload {
    id: String,
    etags: Vec<String>,
}

pub(super) async fn put<S, B, RB>(
    inner: &mut S,
    config: &TransformConfig,
    codec: &dyn Codec,
    request: Request<B>,
) -> Answer<RB, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let (template, body) = request.into_parts();
    let mut body = Box::pin(body);
    let mut upload: Option<OwnUpload> = None;
    let result = put_stream(inner, config, codec, &template, &mut body, &mut upload).await;
    if result.is_err() {
        if let Some(upload) = upload {
            // Nothing of a failed upload may stay upstream.
            let query = format!("uploadId={}", query_encode(&upload.id));
            let abort = derived(
                &template,
                Method::DELETE,
                Some(&query),
                bare_headers(&template),
                Bytes::new(),
            );
            let _ = send(inner, abort).await;
        }
    }
    result
}

async fn put_stream<S, B, RB>(
    inner: &mut S,
    config: &TransformConfig,
    codec: &dyn Codec,
    template: &request::Parts,
    body: &mut std::pin::Pin<Box<B>>,
    upload: &mut Option<OwnUpload>,
) -> Answer<RB, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let mut writer = FrameWriter::new(codec, config.frame_size)?;
    let mut headers = template.headers.clone();
    strip_payload_headers(&mut headers);
    headers.insert(META_TRANSFORM, HeaderValue::from_static(codec.name()));
    while let Some(data) = next_data(body).await? {
        writer.write(&data)?;
        if writer.out.len() >= config.part_size {
            if upload.is_none() {
                *upload = Some(create_own_upload(inner, template, headers.clone()).await?);
            }
            let own = upload.as_mut().expect("created above");
            let part = writer.take();
            own.etags
                .push(upload_own_part(inner, template, &own.id, own.etags.len() + 1, part).await?);
        }
    }
    writer.finish()?;
    let index = writer.index.clone();
    index.write(codec, &mut writer.out);
    let rest = writer.take();
    match upload {
        None => {
            headers.insert(META_LENGTH, HeaderValue::from(writer.plain));
            let query = template.uri.query();
            let put = derived(template, Method::PUT, query, headers, rest);
            let mut response = send(inner, put).await?;
            client_etag(response.headers_mut(), codec);
            Ok(response.map(ResponseBody::inner))
        }
        Some(own) => {
            let last = own.etags.len() + 1;
            own.etags
                .push(upload_own_part(inner, template, &own.id, last, rest).await?);
            let parts: Vec<(u32, String)> = own
                .etags
                .iter()
                .enumerate()
                .map(|(i, etag)| (i as u32 + 1, etag.clone()))
                .collect();
            let (status, xml) = complete_upstream(inner, template, &own.id, &parts).await?;
            let etag = xml_child_text(xml.as_bytes(), "ETag").unwrap_or_default();
            let mut response = Response::new(ResponseBody::bytes(Bytes::new()));
            *response.status_mut() = status;
            if let Ok(value) = HeaderValue::from_str(&etag) {
                response.headers_mut().insert(header::ETAG, value);
            }
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            Ok(response)
        }
    }
}

async fn create_own_upload<S, B, RB>(
    inner: &mut S,
    template: &request::Parts,
    headers: HeaderMap,
) -> Result<OwnUpload, Failed<S::Error>>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let create = derived(
        template,
        Method::POST,
        Some("uploads"),
        headers,
        Bytes::new(),
    );
    let response = send(inner, create).await?;
    if let Some(error) = upstream_failed("CreateMultipartUpload", &response) {
        return Err(error.into());
    }
    let xml = collect(response.into_body(), 64 * 1024).await?;
    let id = xml_child_text(&xml, "UploadId").ok_or(TransformError::Upstream {
        step: "CreateMultipartUpload",
        status: StatusCode::OK,
    })?;
    Ok(OwnUpload {
        id,
        etags: Vec::new(),
    })
}

async fn upload_own_part<S, B, RB>(
    inner: &mut S,
    template: &request::Parts,
    upload_id: &str,
    number: usize,
    data: Bytes,
) -> Result<String, Failed<S::Error>>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
{
    let query = format!("partNumber={number}&uploadId={}", query_encode(upload_id));
    let part = derived(
        template,
        Method::PUT,
        Some(&query),
        bare_headers(template),
        data,
    );
    let response = send(inner, part).await?;
    if let Some(error) = upstream_failed("UploadPart", &response) {
        return Err(error.into());
    }
    Ok(response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned())
}

/// Sends `CompleteMultipartUpload` for `parts` (number, upstream ETag);
/// S3 may answer 200 with an error document, which counts as a failure.
async fn complete_upstream<S, B, RB>(
    inner: &mut S,
    template: &request::Parts,
    upload_id: &str,
    parts: &[(u32, String)],
) -> Result<(StatusCode, String), Failed<S::Error>>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let mut xml =
        String::from("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (number, etag) in parts {
        let etag = etag.replace('&', "&amp;").replace('"', "&quot;");
        xml.push_str(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let query = format!("uploadId={}", query_encode(upload_id));
    let mut headers = bare_headers(template);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    let complete = derived(
        template,
        Method::POST,
        Some(&query),
        headers,
        Bytes::from(xml),
    );
    let response = send(inner, complete).await?;
    let status = response.status();
    let body = collect(response.into_body(), 1024 * 1024).await?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() || body.contains("<Error>") {
        return Err(TransformError::Upstream {
            step: "CompleteMultipartUpload",
            status,
        }
        .into());
    }
    Ok((status, body))
}

// ---- client multipart uploads -------------------------------------------------

pub(super) async fn create_multipart<S, B, RB>(
    inner: &mut S,
    codec: &dyn Codec,
    request: Request<B>,
) -> Answer<RB, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
{
    let (mut parts, body) = request.into_parts();
    // The upload's parts are stored encoded: checksums the client asks the
    // upstream to keep would be of the wrong bytes.
    let length = parts.headers.get(header::CONTENT_LENGTH).cloned();
    strip_payload_headers(&mut parts.headers);
    if let Some(length) = length {
        parts.headers.insert(header::CONTENT_LENGTH, length);
    }
    // The upload's length is not known yet: reads find it in the index the
    // completion appends.
    parts
        .headers
        .insert(META_TRANSFORM, HeaderValue::from_static(codec.name()));
    let response = send(
        inner,
        Request::from_parts(parts, TransformBody::client(body)),
    )
    .await?;
    Ok(response.map(ResponseBody::inner))
}

/// The part ETag a client gets: the upstream's, with the part's plaintext
/// and stored lengths, which the client hands back on completion. That is
/// how the completion builds the index without the proxy keeping state.
fn part_etag(upstream: &str, plain: u64, stored: u64) -> String {
    format!("\"{}.s3tap.{plain}.{stored}\"", upstream.trim_matches('"'))
}

/// The parts a client's `CompleteMultipartUpload` document lists: number,
/// and what its ETag carries when the layer wrote it
/// ([`parse_part_etag`]).
type CompletedPart = (u32, Option<(String, u64, u64)>);

fn completed_parts(xml: &[u8]) -> Result<Vec<CompletedPart>, TransformError> {
    // A document that does not parse names no part of ours: it goes on as
    // it came, and the upstream answers for it (MalformedXML).
    let Ok(document) = Element::parse(xml) else {
        return Ok(Vec::new());
    };
    document
        .children
        .iter()
        .filter(|c| c.name == "Part")
        .map(|part| {
            let number: u32 = part
                .child_text("PartNumber")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| TransformError::Invalid("a part without a PartNumber".into()))?;
            Ok((
                number,
                parse_part_etag(part.child_text("ETag").unwrap_or("")),
            ))
        })
        .collect()
}

/// (upstream ETag, plaintext length, stored length) from a part ETag.
fn parse_part_etag(etag: &str) -> Option<(String, u64, u64)> {
    // The document's entities are resolved already (Go's encoder, rclone's,
    // writes the quotes as `&#34;`).
    let etag = etag.trim().trim_matches('"');
    let mut pieces = etag.rsplitn(4, '.');
    let stored = pieces.next()?.parse().ok()?;
    let plain = pieces.next()?.parse().ok()?;
    if pieces.next()? != "s3tap" {
        return None;
    }
    Some((format!("\"{}\"", pieces.next()?), plain, stored))
}

pub(super) async fn upload_part<S, B, RB>(
    inner: &mut S,
    config: &TransformConfig,
    codec: &dyn Codec,
    request: Request<B>,
) -> Answer<RB, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (template, body) = request.into_parts();
    let mut body = Box::pin(body);
    let mut writer = FrameWriter::new(codec, config.frame_size)?;
    while let Some(data) = next_data(&mut body).await? {
        writer.write(&data)?;
        if writer.out.len() > MAX_CLIENT_PART {
            return Err(TransformError::Invalid(format!(
                "a part of a transformed multipart upload may take at most {MAX_CLIENT_PART} bytes encoded"
            ))
            .into());
        }
    }
    writer.finish()?;
    // Every client part is a non-last part upstream (the index part comes
    // last), so each must reach the upstream's minimum.
    writer.pad_to(config.min_part_size);
    let plain = writer.plain;
    let data = writer.take();
    let stored = data.len() as u64;
    let mut headers = template.headers.clone();
    strip_payload_headers(&mut headers);
    let part = derived(&template, Method::PUT, template.uri.query(), headers, data);
    let mut response = send(inner, part).await?;
    if response.status().is_success() {
        let upstream = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if let Ok(value) = HeaderValue::from_str(&part_etag(&upstream, plain, stored)) {
            response.headers_mut().insert(header::ETAG, value);
        }
        strip_checksums(response.headers_mut());
    }
    Ok(response.map(ResponseBody::inner))
}

pub(super) async fn complete<S, B, RB>(
    inner: &mut S,
    codec: &dyn Codec,
    request: Request<B>,
) -> Answer<RB, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let (template, body) = request.into_parts();
    let xml = collect(body, MAX_COMPLETE_XML).await?;
    let parts = completed_parts(&xml)?;
    let transformed = parts.iter().filter(|(_, p)| p.is_some()).count();
    let upload_id = query_value(&template.uri, "uploadId")
        .unwrap_or("")
        .to_owned();
    if transformed == 0 {
        // Not an upload this layer encoded: forward the document as it came.
        let mut headers = template.headers.clone();
        strip_payload_headers(&mut headers);
        let forward = derived(&template, Method::POST, template.uri.query(), headers, xml);
        return Ok(send(inner, forward).await?.map(ResponseBody::inner));
    }
    if transformed != parts.len() {
        return Err(TransformError::Invalid(
            "the parts of one upload were not all written through the transform".into(),
        )
        .into());
    }
    let decoded_id =
        String::from_utf8_lossy(&crate::sigv4::canonical::percent_decode(&upload_id, false))
            .into_owned();
    let index = FrameIndex {
        entries: parts
            .iter()
            .map(|(_, p)| {
                let (_, plain, stored) = p.as_ref().expect("checked above");
                IndexEntry {
                    stored: *stored,
                    plain: *plain,
                }
            })
            .collect(),
    };
    let last = parts.iter().map(|(n, _)| *n).max().unwrap_or(0) + 1;
    if last > 10_000 {
        return Err(TransformError::Invalid(
            "a transformed upload needs one part number after the client's last (at most 9,999 parts)".into(),
        )
        .into());
    }
    let mut tail = Vec::new();
    index.write(codec, &mut tail);
    let index_etag = upload_own_part(
        inner,
        &template,
        &decoded_id,
        last as usize,
        Bytes::from(tail),
    )
    .await?;
    let mut upstream_parts: Vec<(u32, String)> = parts
        .into_iter()
        .map(|(n, p)| (n, p.expect("checked above").0))
        .collect();
    upstream_parts.push((last, index_etag));
    let (status, body) = complete_upstream(inner, &template, &decoded_id, &upstream_parts).await?;
    let mut response = Response::new(ResponseBody::bytes(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_etags_carry_the_lengths_back() {
        let etag = part_etag("\"abc\"", 8, 5);
        assert_eq!(etag, "\"abc.s3tap.8.5\"");
        assert_eq!(parse_part_etag(&etag), Some(("\"abc\"".into(), 8, 5)));
        assert_eq!(parse_part_etag("\"abc\""), None);
    }

    #[test]
    fn completion_documents_are_read_whatever_quote_escape_they_use() {
        // boto3 writes `&quot;`, rclone's Go encoder `&#34;`, others `&#x22;`.
        let xml = b"<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
            <Part><PartNumber>1</PartNumber><ETag>&quot;abc.s3tap.8.5&quot;</ETag></Part>\
            <Part><ETag>&#34;def.s3tap.9.6&#34;</ETag><PartNumber> 2 </PartNumber></Part>\
            <Part><PartNumber>3</PartNumber><ETag>&#x22;plain&#x22;</ETag></Part>\
            </CompleteMultipartUpload>";
        assert_eq!(
            completed_parts(xml).unwrap(),
            vec![
                (1, Some(("\"abc\"".into(), 8, 5))),
                (2, Some(("\"def\"".into(), 9, 6))),
                (3, None),
            ]
        );
        assert_eq!(
            completed_parts(b"<CompleteMultipartUpload><Part>").unwrap(),
            vec![]
        );
        assert!(completed_parts(
            b"<CompleteMultipartUpload><Part><ETag>x</ETag></Part></CompleteMultipartUpload>"
        )
        .is_err());
    }
}
