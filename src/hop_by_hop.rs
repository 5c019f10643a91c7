//! Hop-by-hop headers: they describe one connection, so a proxy must not pass
//! them from one side to the other. The one list every layer uses.

use http::header::{self, HeaderMap, HeaderName};

/// The hop-by-hop headers of RFC 9110 §7.6.1 (and RFC 7230's `trailer`,
/// which announces the chunked trailers of this hop's framing).
pub(crate) const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `name` is one of [`HOP_BY_HOP`].
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.as_str() == name)
}

/// Removes the standard hop-by-hop headers and any header the `Connection`
/// header names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    // Nearly every message has none of them: one pass over its few names
    // is cheaper than nine hashed removals, and this runs on every request
    // and response (three times per proxied exchange).
    if named.is_empty() && !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_standard_and_connection_named_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", "close, x-private".parse().unwrap());
        headers.insert("x-private", "1".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("transfer-encoding", "chunked".parse().unwrap());
        headers.insert("trailer", "x-amz-checksum-crc32".parse().unwrap());
        headers.insert("etag", "\"abc\"".parse().unwrap());
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("etag"));
        assert!(is_hop_by_hop("te") && !is_hop_by_hop("etag"));
    }
}
