//! Open311's parsing and rendering, without services.
use super::*;

#[test]
fn segments_name_a_document_and_its_format() {
    let doc = |name: &str, format| {
        Some(Doc {
            name: name.into(),
            format,
        })
    };
    assert_eq!(Doc::parse("services.json"), doc("services", Format::Json));
    assert_eq!(Doc::parse("a.b.xml"), doc("a.b", Format::Xml));
    assert_eq!(Doc::parse("services.csv"), None);
    assert_eq!(Doc::parse("services"), None);
    assert_eq!(Doc::parse(".json"), None);
}

#[test]
fn keys_parse_as_key_sub_pairs() {
    let keys = ApiKeys::parse(" key-abc=civic-app , b64key===other ,").unwrap();
    assert_eq!(keys.caller(Some("key-abc")).unwrap().sub, "civic-app");
    let c = keys.caller(Some("b64key==")).unwrap();
    assert_eq!(
        (c.sub.as_str(), c.role, c.org.as_str()),
        ("other", Role::Operator, "*")
    );
    assert_eq!(
        keys.caller(Some("nope")).unwrap_err().status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(keys.caller(None).unwrap_err().status, StatusCode::FORBIDDEN);
    assert!(ApiKeys::parse("").unwrap().caller(Some("x")).is_err());
    assert!(ApiKeys::parse("novalue").is_err());
    assert!(ApiKeys::parse("k=a,k=b").is_err());
}

#[test]
fn names_join_by_their_script() {
    assert_eq!(
        full_name(Some("先生"), Some("张")).as_deref(),
        Some("张先生")
    );
    assert_eq!(
        full_name(Some("John"), Some("Smith")).as_deref(),
        Some("John Smith")
    );
    assert_eq!(full_name(None, Some("张")).as_deref(), Some("张"));
    assert_eq!(full_name(None, None), None);
}

#[test]
fn xml_is_escaped_and_lists_name_their_items() {
    let body = Node::List(vec![record(vec![
        ("code", leaf(400)),
        ("description", leaf("a < b & \"c\"\u{1}")),
        ("media_url", leaf(Value::Null)),
    ])]);
    assert_eq!(
        xml::document("errors", &body),
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<errors><error><code>400</code>\
         <description>a &lt; b &amp; &quot;c&quot;\u{FFFD}</description><media_url/></error></errors>\n"
    );
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        r#"[{"code":400,"description":"a < b & \"c\"\u0001","media_url":null}]"#
    );
}
