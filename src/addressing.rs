//! How clients address buckets towards the proxy: path style
//! (`/bucket/key`), virtual-hosted (`Host: bucket.<suffix>`), and an optional
//! path prefix under which an app mounts its S3 routes (`/s3/bucket/key`).
//! The one place the layers that need the bucket (re-signing, events) read
//! it from.

/// Where a request's bucket and key are, as the client wrote them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientAddressing {
    /// Lower-case, without a leading dot.
    virtual_host_suffix: Option<String>,
    /// Starts with `/`, without a trailing one.
    path_prefix: Option<String>,
}

/// The bucket and the rest of the path a request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientTarget<'a> {
    /// The bucket, from the host or the first path segment.
    pub(crate) bucket: Option<String>,
    /// The path after the bucket (still percent-encoded): `/key`, `/`, or
    /// empty for a path-style bucket request without a trailing slash.
    pub(crate) key_path: &'a str,
}

impl ClientAddressing {
    /// Recognises `bucket.<suffix>` Host headers.
    pub(crate) fn set_virtual_host_suffix(&mut self, suffix: impl Into<String>) {
        let suffix = suffix.into();
        let suffix = suffix.trim_matches('.').to_ascii_lowercase();
        self.virtual_host_suffix = (!suffix.is_empty()).then_some(suffix);
    }

    /// S3 requests arrive under `prefix` (`/s3/bucket/key`); the bucket is the
    /// segment after it.
    pub(crate) fn set_path_prefix(&mut self, prefix: impl Into<String>) {
        let prefix = prefix.into();
        let prefix = prefix.trim_end_matches('/');
        self.path_prefix = (!prefix.is_empty()).then(|| {
            if prefix.starts_with('/') {
                prefix.to_owned()
            } else {
                format!("/{prefix}")
            }
        });
    }

    /// The path without the prefix (the path itself where it does not start
    /// with the prefix, so nothing outside it is misread as a bucket).
    pub(crate) fn strip_prefix<'a>(&self, path: &'a str) -> &'a str {
        match &self.path_prefix {
            Some(prefix) => match path.strip_prefix(prefix.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                _ => path,
            },
            None => path,
        }
    }

    /// The bucket and key path of a request to `host` for `path`.
    pub(crate) fn target<'a>(&self, host: Option<&str>, path: &'a str) -> ClientTarget<'a> {
        let path = self.strip_prefix(path);
        if let Some(bucket) = host.and_then(|host| self.virtual_host_bucket(host)) {
            let key_path = if path.is_empty() { "/" } else { path };
            return ClientTarget {
                bucket: Some(bucket),
                key_path,
            };
        }
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        match trimmed.split_once('/') {
            Some((bucket, _)) if !bucket.is_empty() => ClientTarget {
                bucket: Some(bucket.to_owned()),
                key_path: &path[path.len() - trimmed.len() + bucket.len()..],
            },
            None if !trimmed.is_empty() => ClientTarget {
                bucket: Some(trimmed.to_owned()),
                key_path: "",
            },
            _ => ClientTarget {
                bucket: None,
                key_path: path,
            },
        }
    }

    /// The bucket of a `<bucket>.<suffix>` host (a port and a trailing dot
    /// are ignored; an IPv6 literal never carries a bucket). Never panics,
    /// whatever the host holds.
    pub(crate) fn virtual_host_bucket(&self, host: &str) -> Option<String> {
        let suffix = self.virtual_host_suffix.as_deref()?;
        let host = match host.rfind(':') {
            Some(colon) if !host[colon..].contains(']') => &host[..colon],
            _ => host,
        };
        let host = host.trim_end_matches('.');
        let split = host.len().checked_sub(suffix.len() + 1)?;
        if split == 0 || !host.is_char_boundary(split) {
            return None;
        }
        let (bucket, rest) = host.split_at(split);
        let rest = rest.strip_prefix('.')?;
        rest.eq_ignore_ascii_case(suffix)
            .then(|| bucket.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addressing(suffix: Option<&str>, prefix: Option<&str>) -> ClientAddressing {
        let mut a = ClientAddressing::default();
        if let Some(s) = suffix {
            a.set_virtual_host_suffix(s);
        }
        if let Some(p) = prefix {
            a.set_path_prefix(p);
        }
        a
    }

    fn target(a: &ClientAddressing, host: &str, path: &str) -> (Option<String>, String) {
        let t = a.target(Some(host), path);
        (t.bucket, t.key_path.to_owned())
    }

    #[test]
    fn path_style() {
        let a = addressing(None, None);
        assert_eq!(
            target(&a, "proxy", "/bucket/a/b"),
            (Some("bucket".into()), "/a/b".into())
        );
        assert_eq!(
            target(&a, "proxy", "/bucket"),
            (Some("bucket".into()), "".into())
        );
        assert_eq!(
            target(&a, "proxy", "/bucket/"),
            (Some("bucket".into()), "/".into())
        );
        assert_eq!(target(&a, "proxy", "/"), (None, "/".into()));
    }

    #[test]
    fn virtual_hosted_style() {
        let a = addressing(Some(".Proxy.Example"), None);
        assert_eq!(
            target(&a, "photos.proxy.example:8080", "/a//b"),
            (Some("photos".into()), "/a//b".into())
        );
        assert_eq!(
            target(&a, "photos.proxy.example", ""),
            (Some("photos".into()), "/".into())
        );
        // The bare endpoint is path style.
        assert_eq!(
            target(&a, "proxy.example", "/photos/a"),
            (Some("photos".into()), "/a".into())
        );
        assert_eq!(
            target(&a, "xproxy.example", "/photos/a"),
            (Some("photos".into()), "/a".into())
        );
        assert_eq!(
            target(&a, "Photos.proxy.example.", "/k"),
            (Some("photos".into()), "/k".into())
        );
        assert_eq!(a.virtual_host_bucket("[::1]:8080"), None);
        assert_eq!(a.virtual_host_bucket("é.proxy.example"), Some("é".into()));
        assert_eq!(a.virtual_host_bucket(".proxy.example"), None);
    }

    #[test]
    fn path_prefix() {
        let a = addressing(None, Some("s3/"));
        assert_eq!(a.strip_prefix("/s3/b"), "/b");
        assert_eq!(
            target(&a, "app", "/s3/bucket/k"),
            (Some("bucket".into()), "/k".into())
        );
        assert_eq!(
            target(&a, "app", "/s3/bucket"),
            (Some("bucket".into()), "".into())
        );
        assert_eq!(target(&a, "app", "/s3"), (None, "".into()));
        // Not under the prefix: read as it is.
        assert_eq!(
            target(&a, "app", "/s3x/b/k"),
            (Some("s3x".into()), "/b/k".into())
        );
    }
}
