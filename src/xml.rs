//! A small XML element tree over `quick-xml`, for the short documents s3tap
//! reads: AWS query-protocol answers (SNS, SQS) and S3 request bodies such
//! as a bucket's notification configuration.

/// How deep elements may nest.
pub(crate) const MAX_DEPTH: usize = 32;

/// One XML element: name (without namespace prefix), text and children.
/// AWS answers are small; a tree keeps the reading code plain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// Parses a document into its root element. Nesting deeper than
    /// [`MAX_DEPTH`] is an error: the documents read here are shallow, and a
    /// deep one would only cost stack in the recursive walks.
    pub(crate) fn parse(xml: &[u8]) -> Result<Element, String> {
        use quick_xml::events::Event as X;
        let text = std::str::from_utf8(xml).map_err(|e| e.to_string())?;
        let mut reader = quick_xml::Reader::from_str(text);
        let mut stack: Vec<Element> = vec![Element::default()];
        loop {
            match reader.read_event().map_err(|e| e.to_string())? {
                X::Start(start) => {
                    if stack.len() > MAX_DEPTH {
                        return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                    }
                    stack.push(Element {
                        name: local_name(start.local_name().as_ref()),
                        ..Element::default()
                    })
                }
                X::Empty(start) => {
                    let element = Element {
                        name: local_name(start.local_name().as_ref()),
                        ..Element::default()
                    };
                    stack.last_mut().expect("root").children.push(element);
                }
                X::End(_) => {
                    if stack.len() < 2 {
                        return Err("unbalanced end tag".to_owned());
                    }
                    let done = stack.pop().expect("checked");
                    stack.last_mut().expect("root").children.push(done);
                }
                X::Text(t) => {
                    let t = t.decode().map_err(|e| e.to_string())?;
                    stack.last_mut().expect("root").text.push_str(&t);
                }
                X::CData(t) => {
                    let t = t.decode().map_err(|e| e.to_string())?;
                    stack.last_mut().expect("root").text.push_str(&t);
                }
                X::GeneralRef(r) => {
                    let current = &mut stack.last_mut().expect("root").text;
                    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
                        current.push(c);
                    } else {
                        let name = r.decode().map_err(|e| e.to_string())?;
                        match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(value) => current.push_str(value),
                            None => return Err(format!("unknown entity &{name};")),
                        }
                    }
                }
                X::Eof => break,
                _ => {}
            }
        }
        if stack.len() != 1 {
            return Err("unclosed element".to_owned());
        }
        let mut document = stack.pop().expect("checked");
        document
            .children
            .pop()
            .filter(|_| document.children.is_empty())
            .ok_or_else(|| "not one root element".to_owned())
    }

    /// The first child named `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The trimmed text of the first child named `name`.
    pub(crate) fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// The first element named `name`, this one or any below, depth first.
    // The SNS/SQS answers are searched; the proxy's documents are walked.
    #[cfg_attr(not(feature = "sink-sns"), allow(dead_code))]
    pub(crate) fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }

    /// Every element named `name` at any depth, depth first.
    #[cfg_attr(not(feature = "sink-sns"), allow(dead_code))]
    pub(crate) fn find_all<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        if self.name == name {
            out.push(self);
        }
        for child in &self.children {
            child.find_all(name, out);
        }
    }
}

fn local_name(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
