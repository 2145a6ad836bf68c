//! CONTRACT §8: Open311 GeoReport v2 on intake, in JSON and XML, with requests shaped like the
//! standard's own examples. A posted service request is a complaint like any other: it is
//! dispatched, lands on the ledger and turns `closed` with its write-off. No caller detail ever
//! leaves through Open311.

use std::sync::Mutex;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use qingling_shared::Role;
use qingling_tests::{eventually, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{complaint_status, item_status, write_off, WAIT};

mod refusals;
mod xml;

use xml::*;

const KEYS: [(&str, &str); 1] = [("QINGLING_OPEN311_KEYS", "key-abc=civic-app")];
const PHONE: &str = "13912345678";
const EMAIL: &str = "wxm@example.com";

/// An Open311 client that keeps every answer, to check later that none shows the caller.
struct Client<'a> {
    env: &'a TestEnv,
    seen: Mutex<Vec<String>>,
}

impl<'a> Client<'a> {
    fn new(env: &'a TestEnv) -> Self {
        Self {
            env,
            seen: Mutex::new(vec![]),
        }
    }

    fn url(&self, path: &str) -> String {
        self.env.url("intake", &format!("/open311/v2/{path}"))
    }

    async fn keep(&self, r: reqwest::Response) -> (StatusCode, String, String) {
        let status = r.status();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = r.text().await.unwrap();
        self.seen.lock().unwrap().push(body.clone());
        (status, body, content_type)
    }

    async fn get_raw(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, String, String) {
        let r = self.env.http.get(self.url(path)).query(query).send();
        self.keep(r.await.unwrap()).await
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
        let (status, body, content_type) = self.get_raw(path, query).await;
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        (status, serde_json::from_str(&body).expect(&body))
    }

    async fn get_xml(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, Element) {
        let (status, body, content_type) = self.get_raw(path, query).await;
        assert!(content_type.contains("xml"), "{content_type}");
        (
            status,
            parse_xml(&body).unwrap_or_else(|e| panic!("{e}:\n{body}")),
        )
    }

    /// POSTs `form` as application/x-www-form-urlencoded, as the standard says.
    async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let r = self.env.http.post(self.url(path)).form(form).send();
        let (status, body, _) = self.keep(r.await.unwrap()).await;
        (status, body)
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let (status, body) = self.post_raw(path, form).await;
        (status, serde_json::from_str(&body).expect(&body))
    }

    /// No answer ever held the caller's name, phone (in full or masked) or e-mail.
    fn assert_no_caller_details(&self) {
        let seen = self.seen.lock().unwrap();
        assert!(seen.len() > 5);
        for body in seen.iter() {
            for secret in [PHONE, "*******5678", "王小明", "小明", EMAIL] {
                assert!(
                    !body.contains(secret),
                    "{secret} in an Open311 answer: {body}"
                );
            }
        }
    }
}

/// A request shaped like the standard's `POST requests` example, plus our attributes.
fn spec_request<'a>(key: &'a str, basement: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("api_key", key),
        ("jurisdiction_id", "tongzhou"),
        ("service_code", "basement_illegal_residence"),
        ("lat", "39.8994"),
        ("long", "116.6570"),
        ("address_string", "通州区九棵树街道园景阁西区3号楼地下一层"),
        ("email", EMAIL),
        ("device_id", "tt222111"),
        ("account_id", "123456"),
        ("first_name", "小明"),
        ("last_name", "王"),
        ("phone", PHONE),
        ("description", "地下室有人居住,隔断很多 & <很吵>"),
        ("media_url", "http://example.com/photo.jpg"),
        ("attribute[street]", "jiukeshu"),
        ("attribute[community]", "园景阁西区"),
        ("attribute[building]", "3"),
        ("attribute[basement]", basement),
    ]
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|r| r["service_request_id"].as_str().unwrap())
        .collect()
}

/// The standard's error list: every entry carries the HTTP status as its code.
fn assert_errors(status: StatusCode, body: &Value, expected: StatusCode) -> Vec<String> {
    assert_eq!(status, expected, "{body}");
    let list = body
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {body}"));
    assert!(!list.is_empty());
    list.iter()
        .map(|e| {
            assert_eq!(e["code"], expected.as_u16(), "{body}");
            e["description"].as_str().unwrap().to_string()
        })
        .collect()
}

fn assert_xml_errors(status: StatusCode, doc: &Element, expected: StatusCode) {
    assert_eq!(status, expected);
    assert_eq!(doc.name, "errors");
    let errors = doc.all("error");
    assert!(!errors.is_empty());
    for e in errors {
        assert_eq!(e.text("code"), expected.as_u16().to_string());
        assert!(!e.text("description").is_empty());
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test]
async fn open311_lists_services_and_their_definitions_in_json_and_xml() {
    let env = TestEnv::start_with(&KEYS).await;
    let c = Client::new(&env);

    let (status, services) = c.get("services.json", &[]).await;
    assert_eq!(status, StatusCode::OK, "{services}");
    let list = services.as_array().unwrap();
    let codes: Vec<&str> = list
        .iter()
        .map(|s| s["service_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["basement_illegal_residence", "group_rental"]);
    let basement = &list[0];
    assert_eq!(basement["service_name"], "地下室违规住人");
    assert_eq!(basement["group"], "地下空间");
    assert_eq!(
        (&basement["metadata"], &basement["type"]),
        (&json!(true), &json!("realtime"))
    );
    assert!(basement["description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));

    let (status, doc) = c
        .get_xml("services.xml", &[("jurisdiction_id", "tongzhou")])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc.name, "services");
    let xml_services = doc.all("service");
    assert_eq!(xml_services.len(), 2);
    assert_eq!(xml_services[1].text("service_code"), "group_rental");
    assert_eq!(xml_services[1].text("service_name"), "群租");
    assert_eq!(xml_services[1].text("metadata"), "true");
    assert_eq!(xml_services[1].text("type"), "realtime");
    assert_eq!(xml_services[1].text("group"), "房屋租赁");

    let (status, def) = c.get("services/basement_illegal_residence.json", &[]).await;
    assert_eq!(status, StatusCode::OK, "{def}");
    assert_eq!(def["service_code"], "basement_illegal_residence");
    let attrs = def["attributes"].as_array().unwrap();
    let attr_codes: Vec<&str> = attrs.iter().map(|a| a["code"].as_str().unwrap()).collect();
    assert_eq!(attr_codes, ["street", "community", "building", "basement"]);
    for (i, a) in attrs.iter().enumerate() {
        assert_eq!(
            (&a["required"], &a["variable"]),
            (&json!(true), &json!(true)),
            "{a}"
        );
        assert_eq!(a["order"], i as i64 + 1);
        assert!(a["description"].is_string() && a["datatype_description"].is_string());
        let datatype = if i == 0 { "singlevaluelist" } else { "string" };
        assert_eq!(a["datatype"], datatype);
    }
    let streets = attrs[0]["values"].as_array().unwrap();
    assert_eq!(streets.len(), 22, "every street and township of tongzhou");
    assert!(streets.contains(&json!({"key": "jiukeshu", "name": "九棵树街道"})));

    let (status, doc) = c
        .get_xml(
            "services/group_rental.xml",
            &[("jurisdiction_id", "tongzhou")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc.name, "service_definition");
    assert_eq!(doc.text("service_code"), "group_rental");
    let attrs = doc.child("attributes").all("attribute");
    assert_eq!(attrs.len(), 4);
    assert_eq!(attrs[0].text("code"), "street");
    assert_eq!(attrs[0].text("datatype"), "singlevaluelist");
    assert_eq!(attrs[3].text("code"), "basement");
    assert_eq!(attrs[3].text("required"), "true");
    let values = attrs[0].child("values").all("value");
    assert_eq!(values.len(), 22);
    assert!(values
        .iter()
        .any(|v| v.text("key") == "songzhuang" && v.text("name") == "宋庄镇"));

    // Unknown services and jurisdictions, and formats other than json and xml, are 404.
    let (status, body) = c.get("services/no_such_service.json", &[]).await;
    assert_errors(status, &body, StatusCode::NOT_FOUND);
    let (status, doc) = c.get_xml("services/no_such_service.xml", &[]).await;
    assert_xml_errors(status, &doc, StatusCode::NOT_FOUND);
    let (status, body) = c
        .get("services.json", &[("jurisdiction_id", "atlantis")])
        .await;
    assert_errors(status, &body, StatusCode::NOT_FOUND);
    for path in [
        "services.csv",
        "services/group_rental.html",
        "services",
        "nothing.json",
    ] {
        let (status, body) = c.get(path, &[]).await;
        assert_errors(status, &body, StatusCode::NOT_FOUND);
    }
    env.cleanup().await;
}

#[tokio::test]
async fn open311_request_is_a_complaint_on_the_ledger_and_closes_with_its_write_off() {
    let env = TestEnv::start_with(&KEYS).await;
    let c = Client::new(&env);
    let op = env.token(Role::Operator, "tongzhou");

    // POST requests.json, form-encoded like the standard's example.
    let (status, created) = c
        .post("requests.json", &spec_request("key-abc", "B1"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let answer = created.as_array().expect("a one-element list");
    assert_eq!(answer.len(), 1);
    let id = answer[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(answer[0]["service_notice"]
        .as_str()
        .is_some_and(|n| n.contains("九棵树街道")));

    // It is a complaint like one taken on the hotline, by the operator the key names.
    let (status, complaint) = env
        .get("intake", &format!("/v1/complaints/{id}"), &op)
        .await;
    assert_eq!(status, StatusCode::OK, "{complaint}");
    assert_eq!(
        (
            &complaint["district"],
            &complaint["street"],
            &complaint["category"],
            &complaint["urgency"]
        ),
        (
            &json!("tongzhou"),
            &json!("jiukeshu"),
            &json!("basement_illegal_residence"),
            &json!("normal")
        )
    );
    assert_eq!(
        complaint["point"],
        json!({"community": "园景阁西区", "building": "3", "basement": "B1",
               "address": "通州区九棵树街道园景阁西区3号楼地下一层",
               "location": {"lat": 39.8994, "long": 116.657}}),
        "the standard's lat and long are the point's position"
    );
    assert_eq!(
        complaint["caller"],
        json!({"name": "王小明", "phone": "*******5678"})
    );
    assert_eq!(complaint["description"], "地下室有人居住,隔断很多 & <很吵>");
    assert_eq!(complaint["history"][0]["actor"], "civic-app");
    let registered = complaint_status(&env, &id, "registered", WAIT).await;
    let item = registered["item_id"].as_str().unwrap().to_string();
    let on_ledger = item_status(&env, &item, "registered").await;
    assert_eq!(on_ledger["street"], "jiukeshu");
    assert_eq!(on_ledger["complaint_ids"], json!([id]));

    // GET requests/{id}.json: a one-element list, open.
    let (status, one) = c.get(&format!("requests/{id}.json"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one.as_array().unwrap().len(), 1);
    let r = &one[0];
    assert_eq!(r["service_request_id"], id.as_str());
    assert_eq!(r["status"], "open");
    assert_eq!(r["service_code"], "basement_illegal_residence");
    assert_eq!(r["service_name"], "地下室违规住人");
    assert_eq!(r["agency_responsible"], "九棵树街道");
    assert_eq!(r["description"], "地下室有人居住,隔断很多 & <很吵>");
    // The public list names the community only: no building, no basement (CONTRACT §13).
    assert_eq!(r["address"], "园景阁西区");
    // The point id would give the building and basement away: not published.
    assert_eq!(r["address_id"], Value::Null);
    assert_eq!(r["requested_datetime"], registered["received_at"]);
    assert_eq!(r["expected_datetime"], registered["resolve_by"]);
    assert_eq!(r["media_url"], Value::Null);
    assert!(r["status_notes"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(r["service_notice"].as_str().is_some_and(|n| !n.is_empty()));
    let requested: DateTime<Utc> = r["requested_datetime"].as_str().unwrap().parse().unwrap();
    let updated: DateTime<Utc> = r["updated_datetime"].as_str().unwrap().parse().unwrap();
    assert!(updated >= requested, "{r}");
    let (status, same) = c.get(&format!("request/{id}.json"), &[]).await;
    assert_eq!((status, &same), (StatusCode::OK, &one));

    // The XML forms of the same request.
    for path in [format!("requests/{id}.xml"), format!("request/{id}.xml")] {
        let (status, doc) = c.get_xml(&path, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc.name, "service_requests");
        let requests = doc.all("request");
        assert_eq!(requests.len(), 1);
        let x = requests[0];
        assert_eq!(x.text("service_request_id"), id);
        assert_eq!(x.text("status"), "open");
        assert_eq!(x.text("service_code"), "basement_illegal_residence");
        assert_eq!(x.text("agency_responsible"), "九棵树街道");
        assert_eq!(x.text("description"), "地下室有人居住,隔断很多 & <很吵>");
        assert_eq!(x.text("requested_datetime"), r["requested_datetime"]);
        assert_eq!(x.text("expected_datetime"), r["expected_datetime"]);
        assert_eq!(x.text("media_url"), "");
    }

    // POST requests.xml, anonymous: answered in XML, registered like the first.
    let mut anonymous = spec_request("key-abc", "B2");
    anonymous.retain(|(k, _)| !["first_name", "last_name", "phone", "email"].contains(k));
    let (status, body) = c.post_raw("requests.xml", &anonymous).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let doc = parse_xml(&body).unwrap_or_else(|e| panic!("{e}:\n{body}"));
    assert_eq!(doc.name, "service_requests");
    let second = doc.all("request")[0].text("service_request_id").to_string();
    assert!(!doc.all("request")[0].text("service_notice").is_empty());
    let second_complaint = complaint_status(&env, &second, "registered", WAIT).await;
    assert_eq!(second_complaint["caller"], Value::Null);
    assert_eq!(second_complaint["point"]["basement"], "B2");

    // GET requests.json with the standard's filters.
    let now = Utc::now();
    let (from, to) = (
        time(now - Duration::hours(1)),
        time(now + Duration::hours(1)),
    );
    let window = [("start_date", from.as_str()), ("end_date", to.as_str())];
    let list = |extra: &[(&'static str, &'static str)]| {
        let mut q: Vec<(&str, &str)> = window.to_vec();
        q.extend_from_slice(extra);
        q
    };
    let (status, open) = c.get("requests.json", &list(&[("status", "open")])).await;
    assert_eq!(status, StatusCode::OK, "{open}");
    assert_eq!(ids(&open), [second.as_str(), id.as_str()], "newest first");
    let (_, closed) = c.get("requests.json", &list(&[("status", "closed")])).await;
    assert!(ids(&closed).is_empty());
    let (_, other) = c
        .get("requests.json", &list(&[("service_code", "group_rental")]))
        .await;
    assert!(ids(&other).is_empty());
    let (_, all) = c.get("requests.json", &[]).await;
    assert_eq!(ids(&all).len(), 2, "the last 90 days by default");
    let (_, later) = c
        .get(
            "requests.json",
            &[("start_date", to.as_str()), ("jurisdiction_id", "tongzhou")],
        )
        .await;
    assert!(ids(&later).is_empty());
    let (_, picked) = c
        .get(
            "requests.json",
            &[
                (
                    "service_request_id",
                    &format!("{id},{}", uuid::Uuid::now_v7()),
                ),
                ("status", "closed"),
            ],
        )
        .await;
    assert_eq!(
        ids(&picked),
        [id.as_str()],
        "ids override every other filter"
    );
    // An offset other than Z, as an ISO 8601 client sends it.
    let east = (now - Duration::hours(1))
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .to_rfc3339();
    let (status, from_east) = c.get("requests.json", &[("start_date", &east)]).await;
    assert_eq!(status, StatusCode::OK, "{from_east}");
    assert_eq!(ids(&from_east).len(), 2);
    let (status, doc) = c
        .get_xml("requests.xml", &list(&[("status", "open")]))
        .await;
    assert_eq!(status, StatusCode::OK);
    let xml_ids: Vec<&str> = doc
        .all("request")
        .iter()
        .map(|r| r.text("service_request_id"))
        .collect();
    assert_eq!(xml_ids, [second.as_str(), id.as_str()]);

    // 销账: the request turns closed.
    write_off(&env, "jiukeshu", &item).await;
    let closed = eventually("the request to be closed", WAIT, || async {
        let (_, one) = c.get(&format!("requests/{id}.json"), &[]).await;
        (one[0]["status"] == "closed").then_some(one)
    })
    .await;
    assert!(closed[0]["status_notes"].as_str().unwrap().contains("销账"));
    let (_, closed_list) = c.get("requests.json", &list(&[("status", "closed")])).await;
    assert_eq!(ids(&closed_list), [id.as_str()]);
    let (_, open_list) = c.get("requests.json", &list(&[("status", "open")])).await;
    assert_eq!(ids(&open_list), [second.as_str()]);
    let (_, doc) = c.get_xml(&format!("request/{id}.xml"), &[]).await;
    assert_eq!(doc.all("request")[0].text("status"), "closed");

    c.assert_no_caller_details();
    env.cleanup().await;
}
