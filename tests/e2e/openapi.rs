//! `GET /openapi.json`: every route each service serves is in its document, and every documented
//! operation is served; bearer auth and the problem document are described.

use qingling_tests::TestEnv;
use reqwest::{Method, StatusCode};

/// Every route the services serve (method, path as in the document).
const ROUTES: [(&str, &[(&str, &str)]); 3] = [
    (
        "intake",
        &[
            ("post", "/v1/complaints"),
            ("get", "/v1/complaints"),
            ("post", "/v1/complaints/preview"),
            ("get", "/v1/complaints/{id}"),
            ("post", "/v1/complaints/{id}/return"),
            ("post", "/v1/complaints/{id}/dispatch"),
            ("post", "/v1/complaints/{id}/follow-up"),
            ("post", "/v1/complaints/{id}/caller"),
            ("get", "/v1/caller-reveals"),
            ("get", "/v1/communities"),
            ("post", "/v1/communities"),
            ("get", "/v1/metrics/dispatch"),
            ("get", "/v1/metrics/streets"),
            ("get", "/v1/orgs"),
            ("get", "/v1/catalog"),
            ("get", "/open311/v2/services.json"),
            ("post", "/open311/v2/services.json"),
            ("get", "/open311/v2/services.xml"),
            ("post", "/open311/v2/services.xml"),
            ("get", "/open311/v2/requests.json"),
            ("post", "/open311/v2/requests.json"),
            ("get", "/open311/v2/requests.xml"),
            ("post", "/open311/v2/requests.xml"),
            ("get", "/open311/v2/{file}"),
            ("post", "/open311/v2/{file}"),
            ("get", "/open311/v2/services/{file}"),
            ("get", "/open311/v2/requests/{file}"),
            ("get", "/open311/v2/request/{file}"),
        ],
    ),
    (
        "ledger",
        &[
            ("get", "/v1/ledger/items"),
            ("post", "/v1/ledger/items"),
            ("get", "/v1/ledger/items/{id}"),
            ("post", "/v1/ledger/items/{id}/acknowledge"),
            ("post", "/v1/ledger/items/{id}/extension"),
            ("post", "/v1/ledger/items/{id}/extension/approve"),
            ("post", "/v1/ledger/items/{id}/extension/reject"),
            ("post", "/v1/ledger/imports"),
            ("get", "/v1/ledger/summary"),
            ("get", "/v1/ledger/stream"),
            ("get", "/v1/ledger/entries"),
            ("get", "/"),
            ("get", "/dashboard.js"),
            ("get", "/console"),
            ("get", "/console/"),
            ("get", "/console/console.js"),
            ("get", "/console/config.json"),
            ("get", "/v1/ledger/points"),
            ("get", "/v1/ledger/points/{point_id}"),
            ("get", "/v1/ledger/hotspots"),
            ("get", "/map-config.json"),
            ("get", "/map.js"),
            ("get", "/vendor/leaflet.js"),
            ("get", "/vendor/leaflet.css"),
            ("get", "/v1/ledger/log/checkpoint"),
            ("get", "/v1/ledger/log/key"),
            ("get", "/v1/ledger/log/entries"),
            ("get", "/v1/ledger/log/proof/inclusion"),
            ("get", "/v1/ledger/log/proof/consistency"),
            ("get", "/v1/ledger/items/{id}/receipt"),
            ("get", "/tlog/checkpoint"),
            ("get", "/tlog/tile/{*path}"),
        ],
    ),
    (
        "closure",
        &[
            ("post", "/v1/closures"),
            ("get", "/v1/closures"),
            ("get", "/v1/closures/{id}"),
            ("post", "/v1/closures/{id}/approve"),
            ("post", "/v1/closures/{id}/reject"),
            ("post", "/v1/evidence"),
            ("get", "/v1/evidence/{sha256}"),
        ],
    ),
];

const COMMON: [(&str, &str); 3] = [
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let env = TestEnv::start().await;
    for (svc, routes) in ROUTES {
        let (status, doc) = qingling_tests::read(
            env.http
                .get(env.url(svc, "/openapi.json"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
        assert_eq!(doc["info"]["title"], format!("qingling-{svc}"));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
            "{svc}: bearer auth described"
        );
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        // The main resources are described field by field (derived from the types served).
        let schemas = &doc["components"]["schemas"];
        let wanted: &[(&str, &[&str])] = match svc {
            "intake" => &[
                (
                    "ComplaintView",
                    &["complaint_id", "status", "caller", "history"],
                ),
                ("ComplaintCreated", &["complaint_id", "respond_by"]),
                (
                    "Open311Request",
                    &[
                        "service_request_id",
                        "agency_responsible",
                        "expected_datetime",
                    ],
                ),
                ("Open311ServiceDefinition", &["attributes"]),
                ("StreetMetrics", &["month", "streets"]),
                (
                    "StreetMonth",
                    &["response_rate", "resolution_rate", "satisfaction_rate"],
                ),
            ],
            "ledger" => &[
                ("Item", &["item_id", "status", "overdue", "point"]),
                ("ItemPage", &["items"]),
            ],
            _ => &[
                ("Closure", &["closure_id", "checklist", "evidence"]),
                ("ClosureList", &["closures"]),
            ],
        };
        for (name, fields) in wanted {
            for f in *fields {
                assert!(
                    schemas[name]["properties"][f].is_object(),
                    "{svc}: schema {name} lacks {f}: {}",
                    schemas[name]
                );
            }
        }

        let mut documented: Vec<(String, String)> = vec![];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in ["get", "post", "put", "patch", "delete"] {
                if let Some(op) = item.get(method) {
                    documented.push((method.into(), path.clone()));
                    // Errors are described, and protected operations say how to authenticate.
                    let responses = op["responses"].as_object().unwrap();
                    assert!(!responses.is_empty(), "{svc} {method} {path}");
                    // The log's checkpoint and key are public by design (CONTRACT §12).
                    let public = ["/v1/ledger/log/checkpoint", "/v1/ledger/log/key"];
                    if path.starts_with("/v1/") && !public.contains(&path.as_str()) {
                        assert!(
                            op["security"].is_array(),
                            "{svc} {method} {path} has no security"
                        );
                        assert!(
                            responses.contains_key("401"),
                            "{svc} {method} {path} lacks its 401"
                        );
                    }
                }
            }
        }
        let mut served: Vec<(String, String)> = routes
            .iter()
            .chain(COMMON.iter())
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(
            documented, served,
            "{svc}: the document and the routes differ"
        );

        // Each documented operation is really there (not the fallback's 404, not a 405).
        for (method, path) in &documented {
            let concrete = path
                .replace("{id}", &uuid::Uuid::now_v7().to_string())
                .replace("{file}", "nothing.json");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = env
                .http
                .request(m, env.url(svc, &concrete))
                .timeout(std::time::Duration::from_secs(3))
                .send()
                .await;
            let Ok(r) = r else { continue }; // the SSE stream may hold the line open
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            if path.starts_with("/open311/v2/services.") {
                // Open311 itself answers a POST of the service list with 405, in its own format.
                assert!(
                    body.starts_with('[') || body.starts_with('<'),
                    "{svc} {method} {path}: {body}"
                );
            } else {
                assert_ne!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{svc} {method} {path}"
                );
            }
            assert!(
                !body.contains("no such route"),
                "{svc} {method} {path} is documented but not served"
            );
        }
    }
    env.cleanup().await;
}

/// The summary's rebound count is described with the window the rule uses.
#[tokio::test]
async fn the_rebound_window_in_the_document_is_the_rules() {
    let env = TestEnv::start().await;
    let doc: serde_json::Value = reqwest::get(env.url("ledger", "/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = doc["components"]["schemas"]["Tally"]["properties"]["rebounds"]["description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let window = qingling_events::ledger::REBOUND_WINDOW_DAYS;
    assert!(text.contains(&format!("within {window} days")), "{text:?}");
    env.cleanup().await;
}
