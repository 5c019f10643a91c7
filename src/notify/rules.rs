//! Which events go to which sinks: [`Rule`]s by event type, bucket, client,
//! key prefix and suffix, and response status.
//!
//! Event-type patterns may use either vocabulary (see
//! [`event_types`](super::event_types)):
//!
//! - `s3:...` matches S3's name of the event, AWS's or MinIO's
//!   (`s3:ObjectCreated:*`, `s3:ObjectRemoved:Delete`,
//!   `s3:ObjectAccessed:Get`, `s3:BucketCreated:*`);
//! - `b2:...` matches its B2 type (`b2:ObjectCreated:*`,
//!   `b2:HideMarkerCreated:Hide`);
//! - `s3tap:...` matches s3tap's names for what neither names, and the
//!   older s3tap names of the events that now have an S3 name, so rules
//!   written for them keep working (`s3tap:ObjectAccessed:*`);
//! - `*` alone matches every event.
//!
//! `*` matches any run of characters (colons included) and may stand anywhere
//! (`b2:*:Copy`, `s3:ObjectCreated:*Upload`); `?` matches one character.
//! Matching is case-sensitive, as S3 and B2 names are.
//!
//! `buckets` and `clients` use the same globs. A rule with `buckets` only
//! sees events of a bucket one of them matches (events without a bucket,
//! such as ListBuckets, never); a rule with `clients` only sees events of a
//! verified client whose identity or access key id one of them matches.
//! Left out (or empty), either one matches everything, as before.
//!
//! In the proxy's TOML:
//!
//! ```toml
//! [[rules]]
//! name = "uploads"
//! events = ["s3:ObjectCreated:*"]
//! prefix = "photos/"
//! suffix = ".jpg"
//! buckets = ["photos", "raw-*"]
//! clients = ["alice", "AKIAIOSFODNN7EXAMPLE"]
//! status = "success"   # or "all", or a list of codes: [200, 204]
//! sinks = ["hook"]
//! ```

use serde::Deserialize;

use super::Event;

/// Which response statuses a rule lets through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StatusFilter {
    /// 2xx only: what S3 and B2 notify (`status = "success"`, the default).
    #[default]
    SuccessOnly,
    /// Every status, failures included: the original Worker (`status = "all"`).
    All,
    /// Exactly these codes (`status = [200, 404]`).
    Codes(Vec<u16>),
}

impl StatusFilter {
    /// Whether `status` passes.
    pub fn allows(&self, status: u16) -> bool {
        match self {
            StatusFilter::SuccessOnly => (200..300).contains(&status),
            StatusFilter::All => true,
            StatusFilter::Codes(codes) => codes.contains(&status),
        }
    }
}

impl<'de> Deserialize<'de> for StatusFilter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Word(String),
            Codes(Vec<u16>),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Word(word) => match word.as_str() {
                "success" | "2xx" => Ok(StatusFilter::SuccessOnly),
                "all" => Ok(StatusFilter::All),
                other => Err(serde::de::Error::invalid_value(
                    serde::de::Unexpected::Str(other),
                    &"\"success\", \"all\" or a list of status codes",
                )),
            },
            Repr::Codes(codes) => Ok(StatusFilter::Codes(codes)),
        }
    }
}

/// One routing rule.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The rule's name: B2's `matchedRuleName`, S3's `configurationId`.
    pub name: String,
    /// Event-type patterns; the rule matches if any does.
    #[serde(rename = "events", alias = "event_types")]
    pub event_types: Vec<String>,
    /// The key must start with this (decoded key, byte-wise, case-sensitive).
    #[serde(default)]
    pub prefix: Option<String>,
    /// The key must end with this.
    #[serde(default)]
    pub suffix: Option<String>,
    /// Which statuses pass.
    #[serde(rename = "status", alias = "statuses", default)]
    pub statuses: StatusFilter,
    /// Names of the sinks that get the matching events.
    pub sinks: Vec<String>,
    /// Bucket globs; the bucket must match one. Empty: every bucket.
    #[serde(default)]
    pub buckets: Vec<String>,
    /// Client globs, matched against the verified identity and the access
    /// key id; one must match either. Empty: every client.
    #[serde(default)]
    pub clients: Vec<String>,
}

/// `*` matches any run of characters, `?` one character, anything else
/// itself. Works on bytes but steps over whole UTF-8 characters, so `?`
/// never matches half of one.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    // Length of the UTF-8 character starting with this byte.
    fn char_len(lead: u8) -> usize {
        match lead {
            0xF0..=0xFF => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        }
    }
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and where in `text` it started matching.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            ti += char_len(t[ti]);
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = star {
            // The `*` swallows one more character and the rest is tried again.
            let next = star_ti + char_len(t[star_ti]);
            pi = star_pi + 1;
            ti = next;
            star = Some((star_pi, next));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// Whether one event-type pattern matches the event: an `s3:` pattern
/// against its S3 name, `b2:` against its B2 type, anything else against
/// its s3tap name (the names of [`event_types`](super::event_types)).
pub fn pattern_matches(pattern: &str, event: &Event) -> bool {
    if pattern == "*" {
        return true;
    }
    let names = event.names();
    let name = if pattern.starts_with("s3:") {
        names.s3
    } else if pattern.starts_with("b2:") {
        names.b2
    } else {
        names.s3tap
    };
    name.is_some_and(|name| glob(pattern, name))
}

/// Whether a client glob matches the event's identity or access key id.
fn client_matches(pattern: &str, event: &Event) -> bool {
    [event.identity.as_deref(), event.access_key_id.as_deref()]
        .into_iter()
        .flatten()
        .any(|name| glob(pattern, name))
}

impl Rule {
    /// Whether the event passes this rule's event types, bucket and client
    /// filters, key filters and status filter.
    pub fn matches(&self, event: &Event) -> bool {
        // "success" also needs a body without `<Error>` (a failed
        // completion or copy answers 200).
        let status_ok = match self.statuses {
            StatusFilter::SuccessOnly => event.succeeded(),
            ref statuses => statuses.allows(event.status),
        };
        if !status_ok {
            return false;
        }
        if !self.buckets.is_empty()
            && !event
                .bucket
                .as_deref()
                .is_some_and(|bucket| self.buckets.iter().any(|g| glob(g, bucket)))
        {
            return false;
        }
        if !self.clients.is_empty() && !self.clients.iter().any(|g| client_matches(g, event)) {
            return false;
        }
        if !self.event_types.iter().any(|p| pattern_matches(p, event)) {
            return false;
        }
        let key = event.key.as_deref();
        let key_ok = |filter: &Option<String>, test: fn(&str, &str) -> bool| match filter {
            None => true,
            Some(filter) if filter.is_empty() => true,
            Some(filter) => key.is_some_and(|key| test(key, filter)),
        };
        key_ok(&self.prefix, |key, p| key.starts_with(p))
            && key_ok(&self.suffix, |key, s| key.ends_with(s))
    }
}

/// A rule set, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Rules {
    /// The rules.
    pub rules: Vec<Rule>,
}

impl Rules {
    /// A rule set.
    pub fn new(rules: Vec<Rule>) -> Self {
        Rules { rules }
    }

    /// What the original Cloudflare Worker did: every request, whatever its
    /// status, to one sink. The rule is named `all-requests`.
    pub fn original_worker(sink: impl Into<String>) -> Self {
        Rules::new(vec![Rule {
            name: "all-requests".into(),
            event_types: vec!["*".into()],
            prefix: None,
            suffix: None,
            statuses: StatusFilter::All,
            sinks: vec![sink.into()],
            buckets: Vec::new(),
            clients: Vec::new(),
        }])
    }

    /// Each matching rule with each of its sinks, once per rule even if the
    /// rule lists a sink twice. A sink named by two matching rules appears
    /// twice: each delivery carries its own rule name (as B2 does).
    pub fn route(&self, event: &Event) -> Vec<(&Rule, &str)> {
        let mut out: Vec<(&Rule, &str)> = Vec::new();
        for rule in self.rules.iter().filter(|rule| rule.matches(event)) {
            let first = out.len();
            for sink in &rule.sinks {
                if !out[first..].iter().any(|(_, seen)| *seen == sink.as_str()) {
                    out.push((rule, sink.as_str()));
                }
            }
        }
        out
    }

    /// [`Rules::route`], with the event each sink gets: its `matched_rule`
    /// set to the rule's name. The last sink gets `event` itself, so the
    /// common case of one matching sink copies nothing.
    pub fn route_events(&self, event: Event) -> Vec<(&str, Event)> {
        let routes = self.route(&event);
        copies_for(routes, event)
    }

    /// [`Rules::route_events`] through this rule set and then `more`, as if
    /// they were one (the proxy's `[[rules]]` and the rules made through the
    /// S3 notification API).
    pub fn route_events_with<'a>(&'a self, more: &'a Rules, event: Event) -> Vec<(&'a str, Event)> {
        let mut routes = self.route(&event);
        routes.extend(more.route(&event));
        copies_for(routes, event)
    }
}

/// One copy of `event` per route, each naming its rule.
fn copies_for<'a>(routes: Vec<(&'a Rule, &'a str)>, event: Event) -> Vec<(&'a str, Event)> {
    let mut routed = Vec::with_capacity(routes.len());
    let mut event = Some(event);
    for (i, (rule, sink)) in routes.iter().enumerate() {
        let mut copy = if i + 1 == routes.len() {
            event.take().expect("taken only for the last route")
        } else {
            event.clone().expect("still here before the last route")
        };
        copy.matched_rule = Some(rule.name.clone());
        routed.push((*sink, copy));
    }
    routed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::S3Operation;

    fn event(operation: S3Operation, key: Option<&str>, status: u16) -> Event {
        let mut event = Event::new(operation, "PUT", status, "https://up/b/k");
        event.bucket = Some("b".into());
        event.key = key.map(Into::into);
        event
    }

    fn rule(events: &[&str]) -> Rule {
        Rule {
            name: "r".into(),
            event_types: events.iter().map(|s| s.to_string()).collect(),
            prefix: None,
            suffix: None,
            statuses: StatusFilter::All,
            sinks: vec!["s".into()],
            buckets: Vec::new(),
            clients: Vec::new(),
        }
    }

    #[test]
    fn glob_cases() {
        assert!(glob("*", ""));
        assert!(glob("a*", "a"));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("*:Put", "ObjectCreated:Put"));
        assert!(glob("b2:*:Copy", "b2:ObjectCreated:Copy"));
        assert!(glob("a**b", "ab"));
        assert!(!glob("a*c", "abcd"));
        assert!(!glob("abc", "ab"));
        assert!(glob("*a*a*a", "aaaa"));
        assert!(!glob("*a*a*a*b", "aaaa"));
        assert!(glob("raw-?", "raw-1"));
        assert!(!glob("raw-?", "raw-"));
        assert!(!glob("raw-?", "raw-12"));
        assert!(glob("r?w-*", "raw-2026"));
        // `?` is one character, not one byte.
        assert!(glob("ф?то", "фото"));
        assert!(!glob("ф??то", "фото"));
        assert!(glob("*?", "é"));
        assert!(glob("*é", "ééé"));
        assert!(!glob("*ê", "ééé"));
    }

    #[test]
    fn buckets_and_clients() {
        let mut r = rule(&["*"]);
        r.buckets = vec!["photos".into(), "raw-*".into()];
        let mut e = event(S3Operation::PutObject, Some("k"), 200);
        for (bucket, want) in [
            (Some("photos"), true),
            (Some("raw-2026"), true),
            (Some("raw-"), true),
            (Some("photos2"), false),
            (Some("Photos"), false),
            (Some("b"), false),
            (None, false),
        ] {
            e.bucket = bucket.map(Into::into);
            assert_eq!(r.matches(&e), want, "{bucket:?}");
        }
        // No bucket filter: events without a bucket pass too.
        assert!(rule(&["*"]).matches(&e));

        let mut r = rule(&["*"]);
        r.clients = vec!["alice".into(), "AKIDBOB*".into()];
        let mut e = event(S3Operation::PutObject, Some("k"), 200);
        for (identity, key, want) in [
            (Some("alice"), Some("AKIDALICE"), true),
            (Some("bob"), Some("AKIDBOB01"), true),
            (Some("carol"), Some("AKIDCAROL"), false),
            (None, Some("alice"), true),
            (None, None, false),
        ] {
            e.identity = identity.map(Into::into);
            e.access_key_id = key.map(Into::into);
            assert_eq!(r.matches(&e), want, "{identity:?} {key:?}");
        }
        // Both filters: both must hold.
        r.buckets = vec!["a".into()];
        e.identity = Some("alice".into());
        e.bucket = Some("a".into());
        assert!(r.matches(&e));
        e.bucket = Some("b".into());
        assert!(!r.matches(&e));
    }

    #[test]
    fn wildcard_matrix() {
        use S3Operation::*;
        let put = event(PutObject, Some("k"), 200);
        let copy = event(CopyObject, Some("k"), 200);
        let mpu = event(CompleteMultipartUpload, Some("k"), 200);
        let del = event(DeleteObject, Some("k"), 204);
        let mut marker = event(DeleteObject, Some("k"), 204);
        marker.delete_marker = true;
        let get = event(GetObject, Some("k"), 200);
        let list = event(ListObjectsV2, None, 200);
        let events = [&put, &copy, &mpu, &del, &marker, &get, &list];
        // pattern -> which of the events above it matches
        let matrix: &[(&str, [bool; 7])] = &[
            ("*", [true; 7]),
            ("s3:*", [true, true, true, true, true, true, false]),
            (
                "s3:ObjectCreated:*",
                [true, true, true, false, false, false, false],
            ),
            (
                "s3:ObjectCreated:Put",
                [true, false, false, false, false, false, false],
            ),
            (
                "s3:ObjectRemoved:*",
                [false, false, false, true, true, false, false],
            ),
            (
                "s3:ObjectRemoved:DeleteMarkerCreated",
                [false, false, false, false, true, false, false],
            ),
            ("b2:*", [true, true, true, true, true, false, false]),
            (
                "b2:ObjectCreated:*",
                [true, true, true, false, false, false, false],
            ),
            (
                "b2:ObjectCreated:Upload",
                [true, false, false, false, false, false, false],
            ),
            (
                "b2:ObjectCreated:MultipartUpload",
                [false, false, true, false, false, false, false],
            ),
            (
                "b2:*:Copy",
                [false, true, false, false, false, false, false],
            ),
            (
                "b2:ObjectDeleted:*",
                [false, false, false, true, false, false, false],
            ),
            (
                "b2:HideMarkerCreated:*",
                [false, false, false, false, true, false, false],
            ),
            ("s3tap:*", [false, false, false, false, false, true, true]),
            (
                "s3tap:ObjectAccessed:*",
                [false, false, false, false, false, true, false],
            ),
            (
                "s3tap:BucketListed:ListObjectsV2",
                [false, false, false, false, false, false, true],
            ),
            (
                "s3:ObjectAccessed:Get",
                [false, false, false, false, false, true, false],
            ),
            ("s3:BucketListed:*", [false; 7]),
            ("ObjectCreated:Put", [false; 7]),
            ("s3:objectcreated:put", [false; 7]),
            ("b2:ObjectCreated", [false; 7]),
        ];
        for (pattern, expected) in matrix {
            let r = rule(&[pattern]);
            for (e, want) in events.iter().zip(expected) {
                assert_eq!(r.matches(e), *want, "{pattern} vs {:?}", e.operation);
            }
        }
        // Several patterns: any one suffices.
        let r = rule(&["s3:ObjectRemoved:*", "s3tap:ObjectAccessed:Get"]);
        assert!(r.matches(&del) && r.matches(&get) && !r.matches(&put));
        // No pattern: nothing.
        assert!(!rule(&[]).matches(&put));
    }

    #[test]
    fn prefix_and_suffix_with_unicode_keys() {
        let mut r = rule(&["*"]);
        r.prefix = Some("фото/".into());
        r.suffix = Some(".jpg".into());
        let ok = event(S3Operation::PutObject, Some("фото/été 2024.jpg"), 200);
        let wrong_suffix = event(S3Operation::PutObject, Some("фото/été.JPG"), 200);
        let wrong_prefix = event(S3Operation::PutObject, Some("photos/été.jpg"), 200);
        let no_key = event(S3Operation::ListObjects, None, 200);
        assert!(r.matches(&ok));
        assert!(!r.matches(&wrong_suffix));
        assert!(!r.matches(&wrong_prefix));
        assert!(!r.matches(&no_key));
        // A prefix that ends inside a multi-byte character never matches
        // half a character: comparisons are on whole strings.
        r.prefix = Some("ф".into());
        r.suffix = None;
        assert!(r.matches(&ok));
        // Empty filters are no filters.
        r.prefix = Some(String::new());
        r.suffix = Some(String::new());
        assert!(r.matches(&no_key));
    }

    #[test]
    fn status_filters() {
        let mut r = rule(&["*"]);
        r.statuses = StatusFilter::SuccessOnly;
        for (status, want) in [
            (200, true),
            (204, true),
            (299, true),
            (304, false),
            (403, false),
            (500, false),
        ] {
            assert_eq!(
                r.matches(&event(S3Operation::PutObject, Some("k"), status)),
                want
            );
        }
        r.statuses = StatusFilter::All;
        assert!(r.matches(&event(S3Operation::PutObject, Some("k"), 503)));
        r.statuses = StatusFilter::Codes(vec![404, 200]);
        assert!(r.matches(&event(S3Operation::GetObject, Some("k"), 404)));
        assert!(!r.matches(&event(S3Operation::GetObject, Some("k"), 204)));
    }

    #[test]
    fn original_worker_rules_route_everything_to_one_sink() {
        let rules = Rules::original_worker("hook");
        for (operation, status) in [
            (S3Operation::PutObject, 200),
            (S3Operation::GetObject, 404),
            (S3Operation::Other, 403),
            (S3Operation::ListObjects, 500),
            (S3Operation::DeleteObject, 204),
        ] {
            let e = event(operation, Some("k"), status);
            let routed = rules.route_events(e.clone());
            assert_eq!(routed.len(), 1);
            assert_eq!(routed[0].0, "hook");
            assert_eq!(routed[0].1.matched_rule.as_deref(), Some("all-requests"));
            assert_eq!(routed[0].1.id, e.id);
        }
    }

    #[test]
    fn route_lists_each_sink_once_per_rule() {
        let mut a = rule(&["s3:ObjectCreated:*"]);
        a.name = "a".into();
        a.sinks = vec!["hook".into(), "kafka".into(), "hook".into()];
        let mut b = rule(&["b2:ObjectCreated:Upload"]);
        b.name = "b".into();
        b.sinks = vec!["hook".into()];
        let mut c = rule(&["s3:ObjectRemoved:*"]);
        c.name = "c".into();
        let rules = Rules::new(vec![a, b, c]);
        let put = event(S3Operation::PutObject, Some("k"), 200);
        let routed: Vec<(&str, &str)> = rules
            .route(&put)
            .into_iter()
            .map(|(rule, sink)| (rule.name.as_str(), sink))
            .collect();
        assert_eq!(routed, [("a", "hook"), ("a", "kafka"), ("b", "hook")]);
        let copies = rules.route_events(put.clone());
        let names: Vec<_> = copies
            .iter()
            .map(|(_, e)| e.matched_rule.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "a", "b"]);
        assert_eq!(put.matched_rule, None);

        // Two rule sets route as one, the first one's rules first.
        let mut api = rule(&["s3:ObjectCreated:Put"]);
        api.name = "api".into();
        api.sinks = vec!["hook".into()];
        let api = Rules::new(vec![api]);
        let both: Vec<_> = rules
            .route_events_with(&api, put.clone())
            .into_iter()
            .map(|(sink, e)| (sink, e.matched_rule.unwrap()))
            .collect();
        assert_eq!(
            both,
            [
                ("hook", "a".to_owned()),
                ("kafka", "a".to_owned()),
                ("hook", "b".to_owned()),
                ("hook", "api".to_owned())
            ]
        );
        assert!(Rules::default()
            .route_events_with(&Rules::default(), put)
            .is_empty());
    }

    #[test]
    fn deserializes_from_json_shaped_config() {
        // TOML maps onto the same serde data model; JSON keeps the test free
        // of a TOML dependency.
        let rules: Rules = serde_json::from_str(
            r#"[
                {"name": "uploads", "events": ["s3:ObjectCreated:*"], "prefix": "photos/",
                 "suffix": ".jpg", "status": "success", "sinks": ["hook"]},
                {"name": "everything", "events": ["*"], "status": "all", "sinks": ["log"]},
                {"name": "misses", "events": ["s3tap:ObjectAccessed:Get"], "status": [404],
                 "sinks": ["log"]},
                {"name": "defaults", "events": ["b2:*"], "sinks": []},
                {"name": "scoped", "events": ["*"], "sinks": [], "buckets": ["a", "raw-*"],
                 "clients": ["alice"]}
            ]"#,
        )
        .unwrap();
        assert_eq!(rules.rules[0].prefix.as_deref(), Some("photos/"));
        assert_eq!(rules.rules[0].statuses, StatusFilter::SuccessOnly);
        assert_eq!(rules.rules[1].statuses, StatusFilter::All);
        assert_eq!(rules.rules[2].statuses, StatusFilter::Codes(vec![404]));
        assert_eq!(rules.rules[3].statuses, StatusFilter::SuccessOnly);
        assert!(rules.rules[3].buckets.is_empty() && rules.rules[3].clients.is_empty());
        assert_eq!(rules.rules[4].buckets, ["a", "raw-*"]);
        assert_eq!(rules.rules[4].clients, ["alice"]);
        assert!(serde_json::from_str::<Rule>(
            r#"{"name":"x","events":["*"],"status":"sometimes","sinks":[]}"#
        )
        .is_err());
        assert!(
            serde_json::from_str::<Rule>(r#"{"name":"x","events":["*"],"sinks":[],"typo":1}"#)
                .is_err()
        );
    }
}
