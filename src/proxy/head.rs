//! `[notify] head_for_size`: the size of an object a copy or a multipart
//! upload created, from a `HEAD` of it at the upstream, re-signed as the
//! client's own requests are.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{header, Method, Request};
use http_body_util::Empty;
use tower_service::Service;

use crate::credentials::{CredentialStore, ReloadingCredentials};
use crate::notify::{Event, EventEmitter, SizeLookup};
use crate::resign::Resign;
use crate::sigv4::canonical::uri_encode;
use crate::sigv4::{AmzDate, PayloadMode, SignedHeaders};
use crate::transform::Transform;
use crate::upstream::UpstreamClient;
use crate::verified::{AuthKind, Verified};

/// How long a lookup may take before the event goes out without a size.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `HEAD /bucket/key` through the proxy's own re-signer and upstream
/// client, on behalf of the client whose request created the object (its
/// credentials, or the ones mapped to it, or the fixed upstream key: the
/// same choice as for the client's requests).
#[derive(Clone)]
pub(crate) struct HeadForSize {
    pub(crate) upstream: Transform<Resign<UpstreamClient>>,
    pub(crate) credentials: ReloadingCredentials,
}

impl HeadForSize {
    async fn size_of(&self, event: &Event) -> Option<u64> {
        let (bucket, key) = (event.bucket.as_deref()?, event.key.as_deref()?);
        let mut path = format!(
            "/{}/{}",
            uri_encode(bucket.as_bytes(), false),
            uri_encode(key.as_bytes(), true)
        );
        // The version this operation made, not a later overwrite.
        if let Some(version) = &event.version_id {
            path.push_str("?versionId=");
            path.push_str(&uri_encode(version.as_bytes(), false));
        }
        let mut request = Request::builder()
            .method(Method::HEAD)
            .uri(path)
            .body(Empty::<bytes::Bytes>::new())
            .ok()?;
        if let Some(access_key_id) = &event.access_key_id {
            let credential = self.credentials.lookup(access_key_id).await.ok()??;
            request.extensions_mut().insert(Verified {
                access_key_id: access_key_id.clone(),
                identity: credential.identity.clone(),
                region: String::new(),
                service: "s3".to_owned(),
                signing_time: AmzDate::from_system_time(SystemTime::now()),
                signed_headers: SignedHeaders::parse("host").ok()?,
                payload: PayloadMode::Hex(crate::sigv4::chunked::empty_sha256()),
                auth: AuthKind::Header,
                content_length: Some(0),
                decoded_content_length: None,
                seed_signature: [0; 32],
                chunk_digests: None,
                original_content_encoding: None,
                credential: Arc::new(credential),
            });
        }
        let mut upstream = self.upstream.clone();
        std::future::poll_fn(|cx| {
            Service::<Request<Empty<bytes::Bytes>>>::poll_ready(&mut upstream, cx)
        })
        .await
        .ok()?;
        let response = upstream.call(request).await.ok()?;
        if !response.status().is_success() {
            tracing::debug!(status = %response.status(), "HEAD for an event's size failed");
            return None;
        }
        response
            .headers()
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }
}

impl SizeLookup for HeadForSize {
    fn complete(&self, mut event: Event, emitter: Arc<dyn EventEmitter>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            emitter.emit(event);
            return;
        };
        let lookup = self.clone();
        runtime.spawn(async move {
            match tokio::time::timeout(LOOKUP_TIMEOUT, lookup.size_of(&event)).await {
                Ok(size) => event.size = size,
                Err(_) => tracing::debug!("HEAD for an event's size timed out"),
            }
            emitter.emit(event);
        });
    }
}
