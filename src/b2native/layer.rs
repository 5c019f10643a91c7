//! [`B2NativeLayer`]: the settings of the B2 native API proxy, applied to
//! the service that answers every other request.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::service::B2Native;
use super::state::Routes;
use crate::notify::EventEmitter;

/// Default bound of each map (tokens, upload URLs, bucket names).
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// Default bound of a JSON request or answer the proxy reads whole.
pub const DEFAULT_MAX_JSON_BYTES: usize = 1 << 20;

/// Serves Backblaze B2's native API (`/b2api/...`, `/file/...`) as a proxy
/// in front of `inner`, which answers everything else (an S3 stack, or a
/// plain 404 service when used alone).
///
/// `upstream` sends requests with absolute URIs (the crate's
/// [`UpstreamClient`](crate::upstream::UpstreamClient), or any tower
/// service that does).
///
/// ```
/// use s3tap::b2native::B2NativeLayer;
///
/// let layer = B2NativeLayer::new("https://api.backblazeb2.com", ())
///     .public_url("https://b2proxy.example.com")
///     .max_tokens(50_000);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct B2NativeLayer<U> {
    upstream: U,
    pub(crate) settings: Arc<Settings>,
}

/// What every clone of the service shares.
pub(crate) struct Settings {
    pub(crate) realm: String,
    pub(crate) public_url: Option<String>,
    pub(crate) https: bool,
    pub(crate) download_url: Option<String>,
    pub(crate) max_json_bytes: usize,
    pub(crate) max_tokens: usize,
    pub(crate) max_upload_urls: usize,
    pub(crate) max_buckets: usize,
    pub(crate) emitter: Option<Arc<dyn EventEmitter>>,
    pub(crate) routes: Arc<Routes>,
    /// Off: every request goes to the inner service (the proxy without
    /// `[b2_native]`).
    pub(crate) enabled: bool,
}

impl Clone for Settings {
    fn clone(&self) -> Self {
        Settings {
            realm: self.realm.clone(),
            public_url: self.public_url.clone(),
            https: self.https,
            download_url: self.download_url.clone(),
            max_json_bytes: self.max_json_bytes,
            max_tokens: self.max_tokens,
            max_upload_urls: self.max_upload_urls,
            max_buckets: self.max_buckets,
            emitter: self.emitter.clone(),
            routes: self.routes.clone(),
            enabled: self.enabled,
        }
    }
}

impl<U> fmt::Debug for B2NativeLayer<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("B2NativeLayer")
            .field("realm", &s.realm)
            .field("public_url", &s.public_url)
            .field("download_url", &s.download_url)
            .field("max_tokens", &s.max_tokens)
            .field("max_upload_urls", &s.max_upload_urls)
            .field("emits_events", &s.emitter.is_some())
            .finish_non_exhaustive()
    }
}

fn trim(url: impl Into<String>) -> String {
    let mut url = url.into();
    while url.ends_with('/') {
        url.pop();
    }
    url
}

impl<U> B2NativeLayer<U> {
    /// Authorizes against `realm` (B2's is `https://api.backblazeb2.com`)
    /// and sends every request through `upstream`.
    pub fn new(realm: impl Into<String>, upstream: U) -> Self {
        B2NativeLayer {
            upstream,
            settings: Arc::new(Settings {
                realm: trim(realm),
                public_url: None,
                https: false,
                download_url: None,
                max_json_bytes: DEFAULT_MAX_JSON_BYTES,
                max_tokens: DEFAULT_MAX_ENTRIES,
                max_upload_urls: DEFAULT_MAX_ENTRIES,
                max_buckets: DEFAULT_MAX_ENTRIES,
                emitter: None,
                routes: Arc::new(Routes::new(
                    DEFAULT_MAX_ENTRIES,
                    DEFAULT_MAX_ENTRIES,
                    DEFAULT_MAX_ENTRIES,
                )),
                enabled: true,
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        change(settings);
        settings.routes = Arc::new(Routes::new(
            settings.max_tokens,
            settings.max_upload_urls,
            settings.max_buckets,
        ));
        self
    }

    /// The proxy's URL as clients reach it, written into the answers
    /// (`apiUrl`, `downloadUrl`, `s3ApiUrl`, `uploadUrl`). Without it, the
    /// request's `Host` with `http` (or `https`, see [`Self::https`]).
    pub fn public_url(self, url: impl Into<String>) -> Self {
        let url = trim(url);
        self.with(|s| s.public_url = Some(url))
    }

    /// Whether clients reach the proxy over HTTPS (when no public URL is set).
    pub fn https(self, https: bool) -> Self {
        self.with(|s| s.https = https)
    }

    /// The upstream download URL for downloads that carry no token (public
    /// buckets). Without it such downloads are refused.
    pub fn download_url(self, url: impl Into<String>) -> Self {
        let url = trim(url);
        self.with(|s| s.download_url = Some(url))
    }

    /// How many authorization tokens the proxy routes (oldest forgotten
    /// first; a client with a forgotten token is told to authorize again).
    pub fn max_tokens(self, max: usize) -> Self {
        self.with(|s| s.max_tokens = max)
    }

    /// How many upload URLs the proxy routes (a client with a forgotten one
    /// is told to get a new one).
    pub fn max_upload_urls(self, max: usize) -> Self {
        self.with(|s| s.max_upload_urls = max)
    }

    /// How many bucket id → name pairs are kept for events.
    pub fn max_buckets(self, max: usize) -> Self {
        self.with(|s| s.max_buckets = max)
    }

    /// The bound of a JSON request or answer read whole.
    pub fn max_json_bytes(self, max: usize) -> Self {
        self.with(|s| s.max_json_bytes = max)
    }

    /// A layer that sends every request to the inner service, so a stack
    /// has one type with and without the native API.
    #[cfg_attr(not(feature = "proxy"), allow(dead_code))]
    pub(crate) fn disabled(self) -> Self {
        self.with(|s| s.enabled = false)
    }

    /// Emits an event for uploads, large-file completions, copies, deletes,
    /// hides and downloads.
    pub fn emitter(self, emitter: Arc<dyn EventEmitter>) -> Self {
        self.with(|s| s.emitter = Some(emitter))
    }
}

impl<S, U: Clone> Layer<S> for B2NativeLayer<U> {
    type Service = B2Native<S, U>;

    fn layer(&self, inner: S) -> B2Native<S, U> {
        B2Native::new(inner, self.upstream.clone(), self.settings.clone())
    }
}
