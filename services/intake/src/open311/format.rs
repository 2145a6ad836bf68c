//! Open311 formats (JSON and XML), documents and the standard's errors.

use super::*;

// ---------------------------------------------------------------------------------------------
// Formats, documents and errors.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// A path segment `<name>.<json|xml>`; any other suffix is 404.
#[derive(Debug, PartialEq, Eq)]
pub struct Doc {
    pub name: String,
    pub format: Format,
}

impl Doc {
    pub fn parse(segment: &str) -> Option<Doc> {
        let (name, suffix) = segment.rsplit_once('.')?;
        let format = match suffix {
            "json" => Format::Json,
            "xml" => Format::Xml,
            _ => return None,
        };
        (!name.is_empty()).then(|| Doc {
            name: name.to_string(),
            format,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Doc {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        // `{file}` routes name the segment; the fixed ones (`services.json`, …) are the last one.
        let segment = match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(s)) => Some(s),
            Err(_) => parts.uri.path().rsplit('/').next().map(String::from),
        };
        segment.and_then(|s| Doc::parse(&s)).ok_or_else(|| {
            Format::Json.reply(Err(Failure::not_found(
                "no such Open311 resource: paths end in .json or .xml",
            )))
        })
    }
}

/// A document to send: its status, its XML root element and its body.
pub(super) struct Document {
    pub(super) status: StatusCode,
    pub(super) root: &'static str,
    pub(super) body: Node,
}

impl Document {
    pub(super) fn ok(root: &'static str, body: Node) -> Self {
        Self {
            status: StatusCode::OK,
            root,
            body,
        }
    }
}

pub(super) type Reply = Result<Document, Failure>;

impl Format {
    pub(super) fn reply(self, reply: Reply) -> Response {
        let doc = reply.unwrap_or_else(Failure::document);
        match self {
            Format::Json => (doc.status, axum::Json(doc.body)).into_response(),
            Format::Xml => (
                doc.status,
                [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                xml::document(doc.root, &doc.body),
            )
                .into_response(),
        }
    }
}

/// An Open311 error answer: the HTTP status and one description per problem.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) status: StatusCode,
    pub(super) descriptions: Vec<String>,
}

impl Failure {
    pub(super) fn new(status: StatusCode, description: impl Into<String>) -> Self {
        Self {
            status,
            descriptions: vec![description.into()],
        }
    }

    pub(super) fn not_found(description: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, description)
    }

    pub(super) fn no_resource(name: &str) -> Self {
        Self::not_found(format!("there is no Open311 resource {name:?}"))
    }

    pub(super) fn bad_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, description)
    }

    pub(super) fn document(self) -> Document {
        let code = self.status.as_u16();
        let errors = self
            .descriptions
            .into_iter()
            .map(|d| record(vec![("code", leaf(code)), ("description", leaf(d))]))
            .collect();
        Document {
            status: self.status,
            root: "errors",
            body: Node::List(errors),
        }
    }
}

/// The one mapping from intake's errors. Validation failures are 400 in Open311, one entry per
/// field, named as the form names it.
impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unprocessable { errors, .. } => Failure {
                status: StatusCode::BAD_REQUEST,
                descriptions: errors
                    .iter()
                    .map(|e| format!("{}: {}", form_field(&e.field), e.message))
                    .collect(),
            },
            other => {
                match &other {
                    ApiError::Internal(err) => tracing::error!(error = ?err, "internal error"),
                    ApiError::Unavailable(d) => {
                        tracing::warn!(error = %d, "dependency unavailable")
                    }
                    _ => {}
                }
                // The problem document's detail: internals are never shown.
                let detail = other.body()["detail"].as_str().unwrap_or("").to_string();
                Failure::new(other.status(), detail)
            }
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(e).into()
    }
}

/// The form field a [`ComplaintInput`] field comes from.
pub(super) fn form_field(field: &str) -> &str {
    match field {
        "district" => "jurisdiction_id",
        "category" => "service_code",
        "street" => "attribute[street]",
        "point" | "point.community" => "attribute[community]",
        "point.building" => "attribute[building]",
        "point.basement" => "attribute[basement]",
        "point.address" => "address_string",
        "caller.name" => "first_name",
        "caller.phone" => "phone",
        other => other,
    }
}

/// A document in the standard's shape, written as JSON or XML with its fields in order.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Leaf(Value),
    Record(Vec<(&'static str, Node)>),
    List(Vec<Node>),
}

pub(super) fn leaf(v: impl Serialize) -> Node {
    Node::Leaf(serde_json::to_value(v).unwrap_or(Value::Null))
}

pub(super) fn record(fields: Vec<(&'static str, Node)>) -> Node {
    Node::Record(fields)
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Leaf(v) => v.serialize(s),
            Node::List(items) => items.serialize(s),
            Node::Record(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// A small XML writer for the standard's documents: a record's fields become child elements, a
/// list repeats its item element (`services` → `service`, …), null is an empty element.
pub(super) mod xml {
    use super::Node;
    use serde_json::Value;

    pub fn document(root: &str, body: &Node) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        element(&mut out, root, body);
        out.push('\n');
        out
    }

    /// The element name of a list's items, as in the standard's examples.
    fn item_name(list: &str) -> &'static str {
        match list {
            "services" => "service",
            "attributes" => "attribute",
            "values" => "value",
            "service_requests" => "request",
            "errors" => "error",
            _ => "item",
        }
    }

    fn element(out: &mut String, name: &str, node: &Node) {
        if matches!(node, Node::Leaf(Value::Null)) {
            out.push_str(&format!("<{name}/>"));
            return;
        }
        out.push_str(&format!("<{name}>"));
        match node {
            Node::Leaf(Value::String(s)) => escape(out, s),
            Node::Leaf(v) => escape(out, &v.to_string()),
            Node::Record(fields) => fields.iter().for_each(|(k, v)| element(out, k, v)),
            Node::List(items) => {
                let item = item_name(name);
                items.iter().for_each(|v| element(out, item, v));
            }
        }
        out.push_str(&format!("</{name}>"));
    }

    /// Escapes markup; characters XML 1.0 cannot carry at all become U+FFFD.
    fn escape(out: &mut String, text: &str) {
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&apos;"),
                '\t' | '\n' | '\r' => out.push(c),
                c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
                c => out.push(c),
            }
        }
    }
}
