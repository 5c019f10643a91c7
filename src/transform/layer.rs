//! [`TransformLayer`] and the [`TransformRule`]s that say which uploads it
//! transforms.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::codec::Codec;
use super::service::Transform;
use crate::addressing::ClientAddressing;

/// Which uploads a codec transforms: buckets (any when empty) and a key
/// prefix (any when empty).
#[derive(Clone)]
pub struct TransformRule {
    pub(crate) buckets: Vec<String>,
    pub(crate) prefix: String,
    pub(crate) codec: Arc<dyn Codec>,
}

impl TransformRule {
    /// Every upload through the layer, with `codec`.
    pub fn new(codec: impl Codec + 'static) -> Self {
        TransformRule {
            buckets: Vec::new(),
            prefix: String::new(),
            codec: Arc::new(codec),
        }
    }

    /// Only uploads to these buckets.
    pub fn buckets<I, T>(mut self, buckets: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.buckets = buckets.into_iter().map(Into::into).collect();
        self
    }

    /// Only keys that start with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    pub(crate) fn matches(&self, bucket: &str, key: &str) -> bool {
        (self.buckets.is_empty() || self.buckets.iter().any(|b| b == bucket))
            && key.starts_with(&self.prefix)
    }
}

impl fmt::Debug for TransformRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransformRule")
            .field("buckets", &self.buckets)
            .field("prefix", &self.prefix)
            .field("codec", &self.codec)
            .finish()
    }
}

/// What every [`Transform`] service made by one layer shares.
#[derive(Clone, Debug)]
pub(crate) struct TransformConfig {
    pub(crate) rules: Vec<TransformRule>,
    pub(crate) frame_size: u64,
    pub(crate) part_size: usize,
    pub(crate) min_part_size: usize,
    pub(crate) client_addressing: ClientAddressing,
}

/// Compresses uploads and decompresses downloads between a verified client
/// and the re-signing layer. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct TransformLayer {
    config: TransformConfig,
}

/// 5 MiB: the smallest part S3 and B2 take, except the last.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

impl TransformLayer {
    /// A layer with no rules (it then only decodes objects written
    /// transformed), 8 MiB frames and 8 MiB upstream parts.
    pub fn new() -> Self {
        TransformLayer {
            config: TransformConfig {
                rules: Vec::new(),
                frame_size: 8 * 1024 * 1024,
                part_size: 8 * 1024 * 1024,
                min_part_size: MIN_PART_SIZE,
                client_addressing: ClientAddressing::default(),
            },
        }
    }

    /// Adds a rule; the first rule that matches an upload decides.
    pub fn rule(mut self, rule: TransformRule) -> Self {
        self.config.rules.push(rule);
        self
    }

    /// Plaintext bytes per independently decodable frame of a `PUT`: what a
    /// `Range` read decodes at most before its first byte. Client
    /// multipart uploads get one run of frames per part.
    pub fn frame_size(mut self, bytes: u64) -> Self {
        self.config.frame_size = bytes.max(1);
        self
    }

    /// Stored bytes held before a `PUT` that outgrows them becomes an
    /// upstream multipart upload (each part this size or more); also the
    /// memory one such upload holds. At least 5 MiB.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.config.part_size = bytes.max(MIN_PART_SIZE);
        self
    }

    /// The upstream's smallest non-last multipart part (5 MiB on S3 and B2,
    /// the default): parts of client multipart uploads that compress below
    /// it are padded up to it with a skippable frame.
    pub fn min_part_size(mut self, bytes: usize) -> Self {
        self.config.min_part_size = bytes;
        self
    }

    /// Recognises clients that address buckets as `bucket.<suffix>` (as
    /// [`ResignLayer::client_virtual_host_suffix`](crate::resign::ResignLayer::client_virtual_host_suffix)).
    pub fn client_virtual_host_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.config
            .client_addressing
            .set_virtual_host_suffix(suffix);
        self
    }
}

impl Default for TransformLayer {
    fn default() -> Self {
        TransformLayer::new()
    }
}

impl<S> Layer<S> for TransformLayer {
    type Service = Transform<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Transform::new(inner, Arc::new(self.config.clone()))
    }
}
