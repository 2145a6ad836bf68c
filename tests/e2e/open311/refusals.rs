//! Open311 refusals come as the standard's error list and leave nothing behind.

use super::*;

#[tokio::test]
async fn open311_refusals_come_as_the_error_list_and_leave_no_trace() {
    let env = TestEnv::start_with(&KEYS).await;
    let c = Client::new(&env);
    let good = spec_request("key-abc", "B1");
    let with = |changes: &[(&'static str, Option<&'static str>)]| {
        let mut form = good.clone();
        for (key, value) in changes {
            form.retain(|(k, _)| k != key);
            if let Some(v) = value {
                form.push((key, v));
            }
        }
        form
    };

    // api_key: unknown or missing → 403.
    let (status, body) = c
        .post("requests.json", &with(&[("api_key", Some("wrong"))]))
        .await;
    let d = assert_errors(status, &body, StatusCode::FORBIDDEN);
    assert!(d[0].contains("api_key"), "{d:?}");
    let (status, body) = c.post("requests.json", &with(&[("api_key", None)])).await;
    assert_errors(status, &body, StatusCode::FORBIDDEN);
    let (status, xml) = c
        .post_raw("requests.xml", &with(&[("api_key", Some("wrong"))]))
        .await;
    assert_xml_errors(status, &parse_xml(&xml).unwrap(), StatusCode::FORBIDDEN);

    // Missing or bad attributes → 400, one entry per problem, named as the form names them.
    let (status, body) = c
        .post("requests.json", &with(&[("attribute[basement]", None)]))
        .await;
    let d = assert_errors(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].starts_with("attribute[basement]"), "{d:?}");
    let (status, body) = c
        .post(
            "requests.json",
            &with(&[
                ("attribute[community]", Some("  ")),
                ("attribute[street]", Some("yongshun-not")),
                ("phone", Some("call me")),
            ]),
        )
        .await;
    let d = assert_errors(status, &body, StatusCode::BAD_REQUEST);
    for field in ["attribute[community]", "attribute[street]", "phone"] {
        assert!(d.iter().any(|x| x.starts_with(field)), "{field} in {d:?}");
    }
    // Without a street, a community nobody knows cannot be routed (CONTRACT §11).
    let (status, xml) = c
        .post_raw(
            "requests.xml",
            &with(&[
                ("attribute[street]", None),
                ("attribute[community]", Some("无人知晓的小区")),
            ]),
        )
        .await;
    assert_xml_errors(status, &parse_xml(&xml).unwrap(), StatusCode::BAD_REQUEST);
    let (status, body) = c
        .post("requests.json", &with(&[("service_code", None)]))
        .await;
    assert_errors(status, &body, StatusCode::BAD_REQUEST);
    let (status, body) = c
        .post("requests.json", &with(&[("description", Some("a\0b"))]))
        .await;
    assert_errors(status, &body, StatusCode::BAD_REQUEST);

    // Unknown service or jurisdiction → 404, as the standard says.
    let (status, body) = c
        .post(
            "requests.json",
            &with(&[("service_code", Some("potholes"))]),
        )
        .await;
    assert_errors(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = c
        .post(
            "requests.json",
            &with(&[("jurisdiction_id", Some("atlantis"))]),
        )
        .await;
    assert_errors(status, &body, StatusCode::NOT_FOUND);

    // Not a form, or not a resource that takes one.
    let r = env
        .http
        .post(c.url("requests.json"))
        .json(&json!({"api_key": "key-abc"}))
        .send()
        .await
        .unwrap();
    let (status, body, _) = c.keep(r).await;
    assert_errors(
        status,
        &serde_json::from_str(&body).unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    let (status, body) = c.post("requests.csv", &good).await;
    assert_errors(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = c.post("services.json", &good).await;
    assert_errors(status, &body, StatusCode::METHOD_NOT_ALLOWED);

    // Unknown requests and bad filters.
    let unknown = uuid::Uuid::now_v7();
    let (status, body) = c.get(&format!("requests/{unknown}.json"), &[]).await;
    assert_errors(status, &body, StatusCode::NOT_FOUND);
    let (status, doc) = c.get_xml("request/not-an-id.xml", &[]).await;
    assert_xml_errors(status, &doc, StatusCode::NOT_FOUND);
    let (status, body) = c.get(&format!("requests/{unknown}.csv"), &[]).await;
    assert_errors(status, &body, StatusCode::NOT_FOUND);
    let now = Utc::now();
    let long_ago = time(now - Duration::days(200));
    for query in [
        vec![("status", "pending".to_string())],
        vec![("start_date", "yesterday".to_string())],
        vec![("start_date", long_ago), ("end_date", time(now))],
        vec![
            ("start_date", time(now)),
            ("end_date", time(now - Duration::days(1))),
        ],
        vec![("service_code", "potholes".to_string())],
    ] {
        let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = c.get("requests.json", &q).await;
        assert_errors(status, &body, StatusCode::BAD_REQUEST);
    }
    let (status, doc) = c.get_xml("requests.xml", &[("status", "maybe")]).await;
    assert_xml_errors(status, &doc, StatusCode::BAD_REQUEST);

    assert_eq!(
        env.count_events("intake").await,
        0,
        "nothing was registered"
    );
    let (status, list) = c.get("requests.json", &[]).await;
    assert_eq!((status, ids(&list).len()), (StatusCode::OK, 0));
    c.assert_no_caller_details();
    env.cleanup().await;
}

#[tokio::test]
async fn open311_without_configured_keys_takes_no_requests() {
    let env = TestEnv::start().await;
    let c = Client::new(&env);
    let (status, body) = c
        .post("requests.json", &spec_request("key-abc", "B1"))
        .await;
    assert_errors(status, &body, StatusCode::FORBIDDEN);
    let (status, services) = c.get("services.json", &[]).await;
    assert_eq!(
        (status, services.as_array().unwrap().len()),
        (StatusCode::OK, 2)
    );
    assert_eq!(env.count_events("intake").await, 0);
    env.cleanup().await;
}
