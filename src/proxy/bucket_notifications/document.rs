//! S3's `NotificationConfiguration` XML, read into [`TargetConfig`]s and
//! written back, with the errors S3 answers for bad documents.

use serde::{Deserialize, Serialize};

use super::{sink_arn, sink_for_arn};
use crate::s3error::{escape_xml_into, S3Error, S3ErrorCode};
use crate::xml::Element;

/// S3's XML namespace, on every document S3 writes.
pub(crate) const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Which element of the document a configuration came from. s3tap treats
/// all three alike (one ARN per sink); the kind is kept so that a GET
/// returns what was PUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TargetKind {
    /// `QueueConfiguration` (`<Queue>`).
    Queue,
    /// `TopicConfiguration` (`<Topic>`).
    Topic,
    /// `CloudFunctionConfiguration` (`<CloudFunction>`).
    CloudFunction,
}

impl TargetKind {
    fn element(self) -> &'static str {
        match self {
            TargetKind::Queue => "QueueConfiguration",
            TargetKind::Topic => "TopicConfiguration",
            TargetKind::CloudFunction => "CloudFunctionConfiguration",
        }
    }

    fn arn_element(self) -> &'static str {
        match self {
            TargetKind::Queue => "Queue",
            TargetKind::Topic => "Topic",
            TargetKind::CloudFunction => "CloudFunction",
        }
    }

    fn from_element(name: &str) -> Option<TargetKind> {
        [
            TargetKind::Queue,
            TargetKind::Topic,
            TargetKind::CloudFunction,
        ]
        .into_iter()
        .find(|kind| kind.element() == name)
    }
}

/// One configuration of a bucket's notifications: which events, filtered by
/// key, go to which sink. It becomes one s3tap rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TargetConfig {
    /// The configuration's `Id` (S3's `configurationId`, the rule's name).
    pub id: String,
    /// Queue, topic or function configuration.
    pub kind: TargetKind,
    /// The sink the ARN names.
    pub sink: String,
    /// Event-type patterns (`s3:ObjectCreated:*`, ...).
    pub events: Vec<String>,
    /// `FilterRule` `prefix`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// `FilterRule` `suffix`.
    #[serde(default)]
    pub suffix: Option<String>,
}

/// The longest `Id` S3 accepts.
const MAX_ID_LEN: usize = 255;

fn malformed(detail: impl std::fmt::Display) -> S3Error {
    S3Error::new(
        S3ErrorCode::MalformedXML,
        format!(
            "The XML you provided was not well-formed or did not validate against our published schema ({detail})"
        ),
    )
}

fn invalid(message: impl Into<String>, name: &str, value: &str) -> S3Error {
    S3Error::new(S3ErrorCode::InvalidArgument, message.into())
        .with_detail("ArgumentName", name)
        .with_detail("ArgumentValue", value)
}

/// The `ArgumentNameN`/`ArgumentValueN` pairs S3 lists the destinations it
/// could not validate with; more than these are counted in the message.
const ARGUMENT_PAIRS: [(&str, &str); 4] = [
    ("ArgumentName1", "ArgumentValue1"),
    ("ArgumentName2", "ArgumentValue2"),
    ("ArgumentName3", "ArgumentValue3"),
    ("ArgumentName4", "ArgumentValue4"),
];

/// Whether the rules accept this event-type pattern: the vocabularies of
/// [`Rule`](crate::notify::Rule) (`s3:`, `b2:`, `s3tap:`) with something
/// after the colon.
fn known_vocabulary(event: &str) -> bool {
    ["s3:", "b2:", "s3tap:"].iter().any(|prefix| {
        event
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty())
    })
}

/// Reads a `PutBucketNotificationConfiguration` body. `is_sink` says which
/// sink names exist; `new_id` makes an `Id` for a configuration without one.
pub(crate) fn parse(
    xml: &[u8],
    is_sink: impl Fn(&str) -> bool,
    mut new_id: impl FnMut() -> String,
) -> Result<Vec<TargetConfig>, S3Error> {
    let root = Element::parse(xml).map_err(malformed)?;
    if root.name != "NotificationConfiguration" {
        return Err(malformed(format!(
            "the root element is {}, not NotificationConfiguration",
            root.name
        )));
    }
    let mut configs = Vec::new();
    let mut unknown_arns: Vec<String> = Vec::new();
    for element in &root.children {
        let Some(kind) = TargetKind::from_element(&element.name) else {
            if element.name == "EventBridgeConfiguration" {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "EventBridgeConfiguration is not supported by s3tap: name a sink's ARN in a QueueConfiguration or TopicConfiguration",
                ));
            }
            return Err(malformed(format!(
                "unexpected element {} in NotificationConfiguration",
                element.name
            )));
        };
        let mut id = None;
        let mut arn = None;
        let mut events = Vec::new();
        let mut prefix = None;
        let mut suffix = None;
        for child in &element.children {
            let text = child.text.trim();
            match child.name.as_str() {
                "Id" => id = Some(text.to_owned()),
                name if name == kind.arn_element() => arn = Some(text.to_owned()),
                "Event" => events.push(text.to_owned()),
                "Filter" => read_filter(child, &mut prefix, &mut suffix)?,
                other => {
                    return Err(malformed(format!(
                        "unexpected element {other} in {}",
                        kind.element()
                    )))
                }
            }
        }
        let Some(arn) = arn else {
            return Err(malformed(format!(
                "{} has no {}",
                kind.element(),
                kind.arn_element()
            )));
        };
        if events.is_empty() {
            return Err(malformed(format!("{} has no Event", kind.element())));
        }
        if let Some(event) = events.iter().find(|e| !known_vocabulary(e)) {
            return Err(invalid(
                "The event is not supported for notifications",
                "Event",
                event,
            ));
        }
        let id = match id {
            Some(id) if id.is_empty() => new_id(),
            Some(id) if id.len() > MAX_ID_LEN => {
                return Err(invalid(
                    format!("The Id is longer than {MAX_ID_LEN} characters"),
                    "Id",
                    &id,
                ))
            }
            Some(id) => id,
            None => new_id(),
        };
        if configs.iter().any(|c: &TargetConfig| c.id == id) {
            return Err(invalid(
                "Configuration Ids must be unique within a bucket",
                "Id",
                &id,
            ));
        }
        let sink = match sink_for_arn(&arn) {
            Some(sink) if is_sink(sink) => sink.to_owned(),
            _ => {
                unknown_arns.push(arn);
                continue;
            }
        };
        configs.push(TargetConfig {
            id,
            kind,
            sink,
            events,
            prefix,
            suffix,
        });
    }
    if let Some((a, b)) = overlapping(&configs) {
        return Err(S3Error::new(
            S3ErrorCode::InvalidArgument,
            "Configuration is ambiguously defined. Cannot have overlapping suffixes in two rules if the prefixes are overlapping for the same event type.",
        )
        .with_detail("ArgumentName1", a)
        .with_detail("ArgumentName2", b));
    }
    if !unknown_arns.is_empty() {
        // S3's answer for destinations it cannot use, one pair per ARN.
        let mut error = S3Error::new(
            S3ErrorCode::InvalidArgument,
            "Unable to validate the following destination configurations",
        );
        for ((name, value), arn) in ARGUMENT_PAIRS.iter().zip(&unknown_arns) {
            error = error.with_detail(name, arn.as_str()).with_detail(
                value,
                "No sink of this s3tap has this ARN (GET /admin/sinks on the admin listener lists them)",
            );
        }
        return Err(error);
    }
    Ok(configs)
}

/// The ids of two configurations that could both match one event, if any:
/// S3 refuses such a document, since it would notify one upload twice.
/// Two configurations overlap when an event pattern of one matches an event
/// pattern of the other (`s3:ObjectCreated:*` and `s3:ObjectCreated:Put`),
/// one prefix starts the other, and one suffix ends the other (a missing
/// filter is the empty one, which overlaps every other).
fn overlapping(configs: &[TargetConfig]) -> Option<(&str, &str)> {
    let events_meet = |a: &TargetConfig, b: &TargetConfig| {
        a.events.iter().any(|x| {
            b.events
                .iter()
                .any(|y| crate::notify::rules::glob(x, y) || crate::notify::rules::glob(y, x))
        })
    };
    let text = |filter: &Option<String>| filter.clone().unwrap_or_default();
    for (i, a) in configs.iter().enumerate() {
        for b in &configs[i + 1..] {
            let (pa, pb) = (text(&a.prefix), text(&b.prefix));
            let (sa, sb) = (text(&a.suffix), text(&b.suffix));
            if events_meet(a, b)
                && (pa.starts_with(&pb) || pb.starts_with(&pa))
                && (sa.ends_with(&sb) || sb.ends_with(&sa))
            {
                return Some((&a.id, &b.id));
            }
        }
    }
    None
}

fn read_filter(
    filter: &Element,
    prefix: &mut Option<String>,
    suffix: &mut Option<String>,
) -> Result<(), S3Error> {
    for key in &filter.children {
        if key.name != "S3Key" {
            return Err(malformed(format!(
                "unexpected element {} in Filter",
                key.name
            )));
        }
        for rule in &key.children {
            if rule.name != "FilterRule" {
                return Err(malformed(format!(
                    "unexpected element {} in S3Key",
                    rule.name
                )));
            }
            let name = rule.child_text("Name").unwrap_or_default();
            // The value is a key prefix or suffix: spaces in it count.
            let value = rule
                .child("Value")
                .map(|v| v.text.clone())
                .unwrap_or_default();
            let slot = if name.eq_ignore_ascii_case("prefix") {
                &mut *prefix
            } else if name.eq_ignore_ascii_case("suffix") {
                &mut *suffix
            } else {
                return Err(invalid(
                    "filter rule name must be either prefix or suffix",
                    "FilterRule",
                    name,
                ));
            };
            if slot.is_some() {
                return Err(invalid(
                    format!(
                        "Cannot specify more than one {} rule in a filter.",
                        name.to_ascii_lowercase()
                    ),
                    "FilterRule",
                    name,
                ));
            }
            *slot = Some(value);
        }
    }
    Ok(())
}

/// The `GetBucketNotificationConfiguration` answer for these configurations.
pub(crate) fn render(configs: &[TargetConfig]) -> String {
    let mut xml = String::with_capacity(128 + 256 * configs.len());
    xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<NotificationConfiguration xmlns=\"");
    xml.push_str(S3_XMLNS);
    xml.push_str("\">");
    for config in configs {
        let element = config.kind.element();
        let arn_element = config.kind.arn_element();
        push_open(&mut xml, element);
        push_text_element(&mut xml, "Id", &config.id);
        push_text_element(&mut xml, arn_element, &sink_arn(&config.sink));
        for event in &config.events {
            push_text_element(&mut xml, "Event", event);
        }
        if config.prefix.is_some() || config.suffix.is_some() {
            xml.push_str("<Filter><S3Key>");
            for (name, value) in [("prefix", &config.prefix), ("suffix", &config.suffix)] {
                if let Some(value) = value {
                    xml.push_str("<FilterRule>");
                    push_text_element(&mut xml, "Name", name);
                    push_text_element(&mut xml, "Value", value);
                    xml.push_str("</FilterRule>");
                }
            }
            xml.push_str("</S3Key></Filter>");
        }
        push_close(&mut xml, element);
    }
    xml.push_str("</NotificationConfiguration>");
    xml
}

fn push_open(xml: &mut String, name: &str) {
    xml.push('<');
    xml.push_str(name);
    xml.push('>');
}

fn push_close(xml: &mut String, name: &str) {
    xml.push_str("</");
    xml.push_str(name);
    xml.push('>');
}

fn push_text_element(xml: &mut String, name: &str, text: &str) {
    push_open(xml, name);
    escape_xml_into(xml, text);
    push_close(xml, name);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("generated-{n}")
        }
    }

    fn sinks(name: &str) -> bool {
        ["hook", "bus"].contains(&name)
    }

    #[test]
    fn reads_queue_topic_and_function_configurations() {
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
            <NotificationConfiguration xmlns="{S3_XMLNS}">
              <QueueConfiguration>
                <Id>uploads</Id>
                <Queue>arn:s3tap:sqs::1:hook</Queue>
                <Event>s3:ObjectCreated:*</Event>
                <Event>s3:ObjectTagging:*</Event>
                <Filter><S3Key>
                  <FilterRule><Name>prefix</Name><Value>photos/ </Value></FilterRule>
                  <FilterRule><Name>Suffix</Name><Value>.jpg</Value></FilterRule>
                </S3Key></Filter>
              </QueueConfiguration>
              <TopicConfiguration>
                <Topic>arn:s3tap:sqs::1:bus</Topic>
                <Event>s3:ObjectRemoved:*</Event>
              </TopicConfiguration>
              <CloudFunctionConfiguration>
                <Id>fn</Id>
                <CloudFunction>arn:s3tap:sqs::1:hook</CloudFunction>
                <Event>s3tap:ObjectAccessed:Get</Event>
              </CloudFunctionConfiguration>
            </NotificationConfiguration>"#
        );
        let configs = parse(xml.as_bytes(), sinks, ids()).unwrap();
        assert_eq!(
            configs,
            [
                TargetConfig {
                    id: "uploads".into(),
                    kind: TargetKind::Queue,
                    sink: "hook".into(),
                    events: vec!["s3:ObjectCreated:*".into(), "s3:ObjectTagging:*".into()],
                    prefix: Some("photos/ ".into()),
                    suffix: Some(".jpg".into()),
                },
                TargetConfig {
                    id: "generated-1".into(),
                    kind: TargetKind::Topic,
                    sink: "bus".into(),
                    events: vec!["s3:ObjectRemoved:*".into()],
                    prefix: None,
                    suffix: None,
                },
                TargetConfig {
                    id: "fn".into(),
                    kind: TargetKind::CloudFunction,
                    sink: "hook".into(),
                    events: vec!["s3tap:ObjectAccessed:Get".into()],
                    prefix: None,
                    suffix: None,
                },
            ]
        );
        // What is written reads back the same.
        let again = parse(render(&configs).as_bytes(), sinks, ids()).unwrap();
        assert_eq!(again, configs);
        assert!(render(&configs).contains(&format!("xmlns=\"{S3_XMLNS}\"")));
    }

    #[test]
    fn an_empty_configuration_is_no_configurations() {
        for xml in [
            "<NotificationConfiguration/>".to_owned(),
            format!("<NotificationConfiguration xmlns=\"{S3_XMLNS}\"></NotificationConfiguration>"),
        ] {
            assert_eq!(parse(xml.as_bytes(), sinks, ids()).unwrap(), []);
        }
        assert_eq!(
            render(&[]),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<NotificationConfiguration xmlns=\"{S3_XMLNS}\"></NotificationConfiguration>")
        );
    }

    #[test]
    fn unknown_arns_are_listed_as_s3_lists_them() {
        let xml = r#"<NotificationConfiguration>
            <QueueConfiguration><Queue>arn:aws:sqs:us-east-1:123456789012:q</Queue><Event>s3:ObjectCreated:*</Event></QueueConfiguration>
            <QueueConfiguration><Queue>arn:s3tap:sqs::1:nope</Queue><Event>s3:ObjectCreated:*</Event></QueueConfiguration>
            <QueueConfiguration><Queue>arn:s3tap:sqs::1:hook</Queue><Event>s3:ObjectCreated:*</Event></QueueConfiguration>
        </NotificationConfiguration>"#;
        let error = parse(xml.as_bytes(), sinks, ids()).unwrap_err();
        assert_eq!(error.code(), S3ErrorCode::InvalidArgument);
        assert_eq!(
            error.message(),
            "Unable to validate the following destination configurations"
        );
        let names: Vec<&str> = error
            .details()
            .iter()
            .filter(|(element, _)| element.starts_with("ArgumentName"))
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "arn:aws:sqs:us-east-1:123456789012:q",
                "arn:s3tap:sqs::1:nope"
            ]
        );
    }

    #[test]
    fn bad_documents_get_s3_errors() {
        let cases: &[(&str, S3ErrorCode)] = &[
            ("not xml at all", S3ErrorCode::MalformedXML),
            ("<NotificationConfiguration>", S3ErrorCode::MalformedXML),
            ("<Other/>", S3ErrorCode::MalformedXML),
            (
                "<NotificationConfiguration><Bogus/></NotificationConfiguration>",
                S3ErrorCode::MalformedXML,
            ),
            (
                "<NotificationConfiguration><QueueConfiguration><Event>s3:ObjectCreated:*</Event></QueueConfiguration></NotificationConfiguration>",
                S3ErrorCode::MalformedXML,
            ),
            (
                "<NotificationConfiguration><QueueConfiguration><Queue>arn:s3tap:sqs::1:hook</Queue></QueueConfiguration></NotificationConfiguration>",
                S3ErrorCode::MalformedXML,
            ),
            (
                "<NotificationConfiguration><QueueConfiguration><Queue>arn:s3tap:sqs::1:hook</Queue><Event>ObjectCreated:*</Event></QueueConfiguration></NotificationConfiguration>",
                S3ErrorCode::InvalidArgument,
            ),
            (
                "<NotificationConfiguration><QueueConfiguration><Queue>arn:s3tap:sqs::1:hook</Queue><Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>middle</Name><Value>x</Value></FilterRule></S3Key></Filter></QueueConfiguration></NotificationConfiguration>",
                S3ErrorCode::InvalidArgument,
            ),
            (
                "<NotificationConfiguration><QueueConfiguration><Queue>arn:s3tap:sqs::1:hook</Queue><Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>prefix</Name><Value>a</Value></FilterRule><FilterRule><Name>prefix</Name><Value>b</Value></FilterRule></S3Key></Filter></QueueConfiguration></NotificationConfiguration>",
                S3ErrorCode::InvalidArgument,
            ),
            (
                "<NotificationConfiguration><QueueConfiguration><Id>a</Id><Queue>arn:s3tap:sqs::1:hook</Queue><Event>s3:ObjectCreated:*</Event></QueueConfiguration><TopicConfiguration><Id>a</Id><Topic>arn:s3tap:sqs::1:hook</Topic><Event>s3:ObjectCreated:*</Event></TopicConfiguration></NotificationConfiguration>",
                S3ErrorCode::InvalidArgument,
            ),
            (
                "<NotificationConfiguration><EventBridgeConfiguration/></NotificationConfiguration>",
                S3ErrorCode::InvalidArgument,
            ),
            (
                // The ARN element must match the configuration's kind.
                "<NotificationConfiguration><QueueConfiguration><Topic>arn:s3tap:sqs::1:hook</Topic><Event>s3:ObjectCreated:*</Event></QueueConfiguration></NotificationConfiguration>",
                S3ErrorCode::MalformedXML,
            ),
        ];
        for (xml, code) in cases {
            let error = parse(xml.as_bytes(), sinks, ids()).unwrap_err();
            assert_eq!(error.code(), *code, "{xml}: {error}");
        }
        let deep = format!(
            "<NotificationConfiguration>{}{}</NotificationConfiguration>",
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        assert_eq!(
            parse(deep.as_bytes(), sinks, ids()).unwrap_err().code(),
            S3ErrorCode::MalformedXML
        );
    }

    #[test]
    fn overlapping_configurations_are_refused() {
        let document = |a: (&str, &str, &str), b: (&str, &str, &str)| {
            let one = |(id, event, prefix): (&str, &str, &str)| {
                format!(
                    "<QueueConfiguration><Id>{id}</Id><Queue>arn:s3tap:sqs::1:hook</Queue><Event>{event}</Event><Filter><S3Key><FilterRule><Name>prefix</Name><Value>{prefix}</Value></FilterRule></S3Key></Filter></QueueConfiguration>"
                )
            };
            format!(
                "<NotificationConfiguration>{}{}</NotificationConfiguration>",
                one(a),
                one(b)
            )
        };
        let cases = [
            (
                ("a", "s3:ObjectCreated:*", "in/"),
                ("b", "s3:ObjectCreated:Put", "in/x/"),
                true,
            ),
            (
                ("a", "s3:ObjectCreated:*", ""),
                ("b", "s3:ObjectCreated:*", "in/"),
                true,
            ),
            (
                ("a", "s3:ObjectCreated:*", "in/"),
                ("b", "s3:ObjectCreated:*", "out/"),
                false,
            ),
            (
                ("a", "s3:ObjectCreated:*", "in/"),
                ("b", "s3:ObjectRemoved:*", "in/"),
                false,
            ),
        ];
        for (a, b, overlap) in cases {
            let result = parse(document(a, b).as_bytes(), sinks, ids());
            match result {
                Err(error) if overlap => {
                    assert_eq!(error.code(), S3ErrorCode::InvalidArgument);
                    assert!(error.message().contains("overlapping"), "{error}");
                }
                Ok(configs) if !overlap => assert_eq!(configs.len(), 2),
                other => panic!("{a:?} {b:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn text_is_escaped_on_the_way_out() {
        let config = TargetConfig {
            id: "a<b>&\"c\"".into(),
            kind: TargetKind::Topic,
            sink: "hook".into(),
            events: vec!["s3:ObjectCreated:*".into()],
            prefix: Some("x&y/".into()),
            suffix: None,
        };
        let xml = render(std::slice::from_ref(&config));
        assert!(
            xml.contains("<Id>a&lt;b&gt;&amp;&quot;c&quot;</Id>"),
            "{xml}"
        );
        assert_eq!(parse(xml.as_bytes(), sinks, ids()).unwrap(), [config]);
    }
}
