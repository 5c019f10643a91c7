//! Any text as an `Authorization` header: parsing never panics, and what
//! parses formats back to an equal header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3tap::sigv4::{authorization_value, AuthorizationHeader};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = AuthorizationHeader::parse(text) {
        let scope = parsed.credential.scope_string();
        let again = authorization_value(
            &parsed.credential.access_key_id,
            &scope,
            parsed.signed_headers.as_str(),
            &parsed.signature,
        );
        assert_eq!(AuthorizationHeader::parse(&again).as_ref(), Ok(&parsed));
    }
});
