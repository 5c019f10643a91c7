//! The IAM policy parser on arbitrary text, and every policy it accepts
//! evaluated against a few requests: no panic, and a policy whose text
//! parses is decided the same way each time.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use s3tap::authorize::{Decision, Policy, RequestContext};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(policy) = Policy::from_json(&text) else { return };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let ip = "203.0.113.7".parse().ok();
    for (action, resource, prefix) in [
        ("s3:GetObject", "arn:aws:s3:::bkt/photos/a.jpg", None),
        ("s3:ListBucket", "arn:aws:s3:::bkt", Some("photos/")),
        ("s3:ListAllMyBuckets", "*", None),
    ] {
        let request = RequestContext::new(action, resource, now)
            .prefix(prefix)
            .delimiter(Some("/"))
            .source_ip(ip)
            .secure_transport(data.len() % 2 == 0);
        let first = policy.evaluate(&request);
        assert_eq!(first, policy.evaluate(&request));
        if policy.is_empty() {
            assert_eq!(first, Decision::ImplicitDeny);
        }
    }
});
