//! [`Upstream`]: where re-signed requests go, and the region it signs for.

use std::fmt;

use http::uri::{Authority, Scheme};

/// A malformed upstream endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid upstream endpoint {endpoint:?}: {reason}")]
pub struct InvalidUpstream {
    endpoint: String,
    reason: &'static str,
}

/// The S3 endpoint requests are re-signed for: scheme, host and port.
#[derive(Clone, PartialEq, Eq)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
}

impl Upstream {
    /// Parses `https://s3.us-west-004.backblazeb2.com` (an optional port; no
    /// path, query or credentials).
    pub fn parse(endpoint: &str) -> Result<Upstream, InvalidUpstream> {
        let invalid = |reason| InvalidUpstream {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let uri: http::Uri = endpoint
            .trim_end_matches('/')
            .parse()
            .map_err(|_| invalid("not a URL"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| invalid("missing scheme (http:// or https://)"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(invalid("the scheme must be http or https"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid("missing host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("credentials do not belong in the endpoint URL"));
        }
        if authority.host().is_empty() {
            return Err(invalid("missing host"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid("the endpoint must not have a path or query"));
        }
        Ok(Upstream { scheme, authority })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Host and optional port, as written.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The host name.
    pub fn host(&self) -> &str {
        self.authority.host()
    }

    /// The region the endpoint's host name implies: `us-west-004` for
    /// `s3.us-west-004.backblazeb2.com`, `eu-west-1` for
    /// `s3.eu-west-1.amazonaws.com`, and `us-east-1` when the name says nothing.
    pub fn region(&self) -> String {
        region_from_host(self.host()).unwrap_or_else(|| "us-east-1".to_owned())
    }
}

fn region_from_host(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    // s3.<region>.backblazeb2.com
    if host.ends_with(".backblazeb2.com") && labels.len() >= 4 && labels[labels.len() - 4] == "s3" {
        return Some(labels[labels.len() - 3].to_owned());
    }
    if host.ends_with(".amazonaws.com") {
        for (index, label) in labels.iter().enumerate() {
            // s3.<region>.amazonaws.com, bucket.s3.<region>.amazonaws.com,
            // s3.dualstack.<region>.amazonaws.com, s3-<region>.amazonaws.com
            if let Some(region) = label.strip_prefix("s3-") {
                return Some(region.to_owned());
            }
            if *label == "s3" || *label == "dualstack" {
                let next = labels.get(index + 1)?;
                if *next != "dualstack" && *next != "amazonaws" {
                    return Some((*next).to_owned());
                }
            }
        }
        return Some("us-east-1".to_owned());
    }
    None
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_regions_from_known_hosts() {
        let region = |e: &str| Upstream::parse(e).unwrap().region();
        assert_eq!(
            region("https://s3.us-west-004.backblazeb2.com"),
            "us-west-004"
        );
        assert_eq!(
            region("https://s3.eu-central-003.backblazeb2.com/"),
            "eu-central-003"
        );
        assert_eq!(region("https://s3.eu-west-1.amazonaws.com"), "eu-west-1");
        assert_eq!(
            region("https://s3.dualstack.ap-south-1.amazonaws.com"),
            "ap-south-1"
        );
        assert_eq!(region("https://s3-us-west-2.amazonaws.com"), "us-west-2");
        assert_eq!(region("https://s3.amazonaws.com"), "us-east-1");
        assert_eq!(region("http://127.0.0.1:9000"), "us-east-1");
    }

    #[test]
    fn rejects_malformed_endpoints() {
        for bad in [
            "s3.example.com",
            "ftp://s3.example.com",
            "https://",
            "https://s3.example.com/bucket",
            "https://key:secret@s3.example.com",
            "https://s3.example.com?x=1",
            "not a url",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
        let upstream = Upstream::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(upstream.to_string(), "http://127.0.0.1:9000");
        assert_eq!(upstream.host(), "127.0.0.1");
    }
}
