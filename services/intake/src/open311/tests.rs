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

#[test]
fn public_text_shows_no_phone_or_id_number() {
    use super::documents::scrub_numbers;
    assert_eq!(scrub_numbers("请联系13800000000谢谢"), "请联系***谢谢");
    assert_eq!(
        scrub_numbers("电话 138-0000-0000 或 (010) 6512 3456"),
        "电话 *** 或 ***"
    );
    assert_eq!(
        scrub_numbers("身份证11010519491231002X住B1"),
        "身份证***住B1"
    );
    assert_eq!(scrub_numbers("3号楼B1有12间隔断"), "3号楼B1有12间隔断");
    assert_eq!(scrub_numbers("2026年11月28日"), "2026年11月28日");
    assert_eq!(scrub_numbers("138.0013.8000"), "***");
    assert_eq!(
        scrub_numbers(&qingling_shared::point::clean(
            "电话１３８００１３\u{200B}８０００"
        )),
        "电话***",
        "full-width digits and invisible separators"
    );
    assert_eq!(
        super::documents::address(
            &serde_json::json!({"community": "园景阁西区", "building": "3", "basement": "B1", "address": "园景阁西区3号楼B1"})
        ),
        "园景阁西区"
    );
}

#[test]
fn form_fields_must_decode_to_utf8() {
    use super::field_not_utf8;
    assert_eq!(
        field_not_utf8(b"a=1&description=%E5%9C%B0%E4%B8%8B&b=x+y"),
        None
    );
    assert_eq!(
        field_not_utf8(b"a=1&description=%FF%FE&b=2").as_deref(),
        Some("description")
    );
    assert_eq!(
        field_not_utf8(b"desc=%E5%9C").as_deref(),
        Some("desc"),
        "a cut sequence"
    );
}
