//! CONTRACT §11: points with positions, a point's file, the map's GeoJSON and hot spots, and calls
//! that route themselves (by point, by community), learning from returns; the dispatch metrics.

use qingling_shared::Role;
use qingling_tests::{complaint, eventually, rectified, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{acknowledge, complaint_status, item_status, register, request_closure, WAIT};

fn located(street: &str, community: &str, lat: f64, long: f64) -> Value {
    let mut c = complaint(street, community, "1", "B1");
    c["point"]["location"] = json!({"lat": lat, "long": long});
    c
}

async fn point_file(env: &TestEnv, point_id: &str) -> Value {
    let (status, v) = env
        .get(
            "ledger",
            &format!("/v1/ledger/points/{point_id}"),
            &env.token(Role::District, "tongzhou"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

#[tokio::test]
async fn positions_are_checked_kept_as_given_and_a_points_file_tells_its_story() {
    let env = TestEnv::start().await;
    let op = env.token(Role::Operator, "tongzhou");
    // Out of range, swapped, outside the district: refused on point.location, nothing recorded.
    for (lat, long) in [(91.0, 116.6), (116.6568, 39.9053), (31.23, 121.47)] {
        let (status, v) = env
            .post(
                "intake",
                "/v1/complaints",
                &op,
                &located("jiukeshu", "位置小区", lat, long),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{lat},{long}: {v}"
        );
        assert!(v.to_string().contains("point.location"), "{v}");
    }
    let mut bad = complaint("jiukeshu", "位置小区", "1", "B1");
    bad["point"]["location"] = json!({"lat": "39.9", "long": 116.6});
    let (status, _) = env.post("intake", "/v1/complaints", &op, &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(env.count_events("intake").await, 0);

    // A GCJ-02-looking position (from a Chinese web map) is kept exactly as given.
    let (c1, i1) = register(
        &env,
        &located("jiukeshu", "档案小区", 39.906_51, 116.662_37),
    )
    .await;
    let point_id = complaint_status(&env, &c1, "registered", WAIT).await["point_id"]
        .as_str()
        .unwrap()
        .to_string();
    let f = point_file(&env, &point_id).await;
    assert_eq!(f["location"], json!({"lat": 39.906_51, "long": 116.662_37}));
    assert_eq!(f["community"], "档案小区");
    // A repeat call joins the item; the write-off records what was cleared.
    let (_, again) = register(&env, &complaint("jiukeshu", "档案小区", "1", "B1")).await;
    assert_eq!(again, i1);
    acknowledge(&env, "jiukeshu", &i1).await;
    let closure = request_closure(&env, "jiukeshu", &rectified(&i1)).await;
    let (status, _) = env
        .post(
            "closure",
            &format!("/v1/closures/{closure}/approve"),
            &env.token(Role::Reviewer, "tongzhou"),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    item_status(&env, &i1, "written_off").await;
    // It comes back: a rebound.
    let (_, i2) = register(&env, &complaint("jiukeshu", "档案小区", "1", "B1")).await;
    assert_ne!(i2, i1);
    let f = point_file(&env, &point_id).await;
    assert_eq!(f["items_total"], 2, "{f}");
    assert_eq!(f["open_items"], 1);
    assert_eq!(f["complaints_total"], 3);
    assert_eq!(f["rebounds"], 1);
    assert_eq!(f["rooms_cleared"], 7);
    assert_eq!(f["partition_area_m2"], 120.5);
    let items = f["items"].as_array().unwrap();
    assert_eq!(items[0]["item_id"], i1.as_str(), "oldest first");
    assert_eq!(items[0]["write_off_kind"], "rectified");
    assert_eq!(items[0]["rooms_cleared"], 7);
    assert_eq!(items[0]["complaint_ids"].as_array().unwrap().len(), 2);
    assert_eq!(items[1]["rebound_of"], i1.as_str());
    assert_eq!(items[1]["status"], "registered");
    // A street sees its own points only.
    let (status, _) = env
        .get(
            "ledger",
            &format!("/v1/ledger/points/{point_id}"),
            &env.token(Role::Street, "jiukeshu"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = env
        .get(
            "ledger",
            &format!("/v1/ledger/points/{point_id}"),
            &env.token(Role::Street, "yongshun"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = env
        .get(
            "ledger",
            &format!("/v1/ledger/points/{}", uuid::Uuid::now_v7()),
            &op,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An inspection find, an import and an Open311 request carry positions too.
    let st = env.token(Role::Street, "jiukeshu");
    let (status, v) = env
        .post(
            "ledger",
            "/v1/ledger/items",
            &st,
            &json!({"category": "basement_illegal_residence", "description": "巡查",
                    "point": {"community": "巡查小区", "building": "2", "basement": "B1",
                              "location": {"lat": 39.91, "long": 116.65}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["point"]["location"],
        json!({"lat": 39.91, "long": 116.65})
    );
    let (status, v) = env
        .post(
            "ledger",
            "/v1/ledger/items",
            &st,
            &json!({"category": "basement_illegal_residence",
                    "point": {"community": "巡查小区", "building": "3", "basement": "B1",
                              "location": {"lat": 0, "long": 0}}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (status, v) = env
        .post(
            "ledger",
            "/v1/ledger/imports",
            &env.token(Role::Reviewer, "tongzhou"),
            &json!({"district": "tongzhou", "street": "xinhua", "category": "basement_illegal_residence",
                    "community": "导入小区", "building": "1", "basement": "B1", "registered_on": "2026-10-01",
                    "lat": 39.9, "long": 116.66}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    env.cleanup().await;
}

#[tokio::test]
async fn the_map_is_geojson_and_hot_spots_count_what_a_direct_count_finds() {
    let env = TestEnv::start().await;
    let dist = env.token(Role::District, "tongzhou");
    // Three calls in one block, one across the district, one without a position.
    register(&env, &located("jiukeshu", "热点一", 39.9053, 116.6568)).await;
    register(&env, &located("jiukeshu", "热点二", 39.90531, 116.65682)).await;
    register(&env, &located("jiukeshu", "热点三", 39.90529, 116.65679)).await;
    register(&env, &located("majuqiao", "远处小区", 39.75, 116.56)).await;
    register(&env, &complaint("jiukeshu", "无坐标小区", "1", "B1")).await;

    let r = env
        .http
        .get(env.url("ledger", "/v1/ledger/points?district=tongzhou&status=all"))
        .bearer_auth(&dist)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/geo+json");
    let fc: Value = r.json().await.unwrap();
    assert_eq!(fc["type"], "FeatureCollection");
    let features = fc["features"].as_array().unwrap();
    assert_eq!(features.len(), 5);
    for f in features {
        assert_eq!(f["type"], "Feature");
        assert_eq!(f["id"], f["properties"]["point_id"]);
        match &f["geometry"] {
            Value::Null => assert_eq!(f["properties"]["community"], "无坐标小区"),
            g => {
                assert_eq!(g["type"], "Point");
                let c = g["coordinates"].as_array().unwrap();
                assert_eq!(c.len(), 2);
                let (long, lat) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
                assert!(long > 116.0 && lat < 41.0, "longitude first: {c:?}");
            }
        }
    }
    // A street's map is its own.
    let (_, own) = env
        .get(
            "ledger",
            "/v1/ledger/points?status=all",
            &env.token(Role::Street, "majuqiao"),
        )
        .await;
    assert_eq!(own["features"].as_array().unwrap().len(), 1);

    let r = env
        .http
        .get(env.url(
            "ledger",
            "/v1/ledger/hotspots?district=tongzhou&days=90&resolution=8",
        ))
        .bearer_auth(&dist)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/geo+json");
    let cells: Value = r.json().await.unwrap();
    let cells = cells["features"].as_array().unwrap();
    // The direct count: every located registration of the window, in exactly one cell.
    let located: i64 = sqlx::query_scalar(
        "select count(*) from items where point ? 'location' and registered_at >= now() - interval '90 days'",
    )
    .fetch_one(&mut env.db("ledger").await)
    .await
    .unwrap();
    let sum: i64 = cells
        .iter()
        .map(|c| c["properties"]["registrations"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, located);
    assert_eq!(located, 4);
    assert_eq!(cells.len(), 2, "the block's three calls share a cell");
    assert_eq!(cells[0]["properties"]["registrations"], 3, "most first");
    assert_eq!(cells[0]["properties"]["points"], 3);
    assert_eq!(cells[0]["properties"]["open"], 3);
    for c in cells {
        assert_eq!(c["geometry"]["type"], "Polygon");
        let ring: Vec<[f64; 2]> =
            serde_json::from_value(c["geometry"]["coordinates"][0].clone()).unwrap();
        assert!(ring.len() >= 4);
        assert_eq!(ring.first(), ring.last(), "closed");
        // RFC 7946 §3.1.6: exterior rings counter-clockwise (shoelace, long/lat plane).
        let area: f64 = ring
            .windows(2)
            .map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1])
            .sum();
        assert!(area > 0.0, "counter-clockwise");
        assert!(ring.iter().all(|[long, lat]| *long > 116.0 && *lat < 41.0));
        assert_eq!(c["id"], c["properties"]["cell"]);
    }
    for bad in ["resolution=4", "resolution=11", "days=0"] {
        let (status, _) = env
            .get("ledger", &format!("/v1/ledger/hotspots?{bad}"), &dist)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    // 防止反弹: ranked by rebounds.
    let (_, ranked) = env
        .get("ledger", "/v1/ledger/points?order=rebounds&limit=3", &dist)
        .await;
    assert_eq!(ranked["features"].as_array().unwrap().len(), 3);
    env.cleanup().await;
}

#[tokio::test]
async fn calls_route_themselves_by_point_and_community_and_learn_from_returns() {
    let env = TestEnv::start().await;
    let op = env.token(Role::Operator, "tongzhou");
    let no_street = |community: &str, building: &str| {
        let mut c = complaint("", community, building, "B1");
        c.as_object_mut().unwrap().remove("street");
        c
    };
    let post = |body: Value| {
        let (env, op) = (&env, &op);
        async move { env.post("intake", "/v1/complaints", op, &body).await }
    };
    // Nothing known: the operator is asked for the street.
    let (status, v) = post(no_street("无人知晓小区", "1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("cannot route"), "{v}");
    // The shipped directory knows some communities.
    let (status, v) = post(no_street("园景阁西区", "9")).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["street"], "jiukeshu");
    assert_eq!(v["routed_by"], "community");

    // A point on the ledger routes its next call to its street.
    let (c1, _) = register(&env, &complaint("yongshun", "路由小区", "1", "B1")).await;
    let _ = c1;
    let (status, v) = post(no_street("路由小区", "1")).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["street"].as_str(), v["routed_by"].as_str()),
        (Some("yongshun"), Some("point"))
    );
    // And its community has been learnt: another basement there routes by community.
    let (status, v) = post(no_street("路由小区", "7")).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["street"].as_str(), v["routed_by"].as_str()),
        (Some("yongshun"), Some("community"))
    );
    let wrong = v["complaint_id"].as_str().unwrap().to_string();
    complaint_status(&env, &wrong, "registered", WAIT).await;

    // The street says it is not its area: the directory unlearns it…
    let (status, v) = env
        .post(
            "intake",
            &format!("/v1/complaints/{wrong}/return"),
            &env.token(Role::Street, "yongshun"),
            &json!({"reason": "不属于本辖区", "reason_code": "not_our_area"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let (status, v) = post(no_street("路由小区", "8")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "unlearnt: {v}");
    // …and learns the right street from the re-dispatch.
    crate::redispatch(&env, &wrong, "songzhuang").await;
    complaint_status(&env, &wrong, "registered", WAIT).await;
    let v = eventually("the directory to learn the new street", WAIT, || async {
        let (status, v) = env
            .post(
                "intake",
                "/v1/complaints/preview",
                &op,
                &no_street("路由小区", "8"),
            )
            .await;
        (status == StatusCode::OK).then_some(v)
    })
    .await;
    assert_eq!(
        (v["street"].as_str(), v["routed_by"].as_str()),
        (Some("songzhuang"), Some("community"))
    );
    let (status, v) = env
        .post(
            "intake",
            &format!("/v1/complaints/{wrong}/return"),
            &env.token(Role::Street, "songzhuang"),
            &json!({"reason": "x", "reason_code": "because"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // The district sets entries by import; they win over what is learnt.
    let dist = env.token(Role::District, "tongzhou");
    let (status, v) = env
        .post(
            "intake",
            "/v1/communities",
            &dist,
            &json!({"communities": [{"community": "路由小区", "street": "xinhua"}, {"community": "新导入", "street": "luyuan"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = env
        .post(
            "intake",
            "/v1/communities",
            &dist,
            &json!({"communities": [{"community": "x", "street": "nowhere"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (_, v) = post(no_street(" 新导入 ", "1")).await;
    assert_eq!(
        (v["street"].as_str(), v["routed_by"].as_str()),
        (Some("luyuan"), Some("community"))
    );
    let (_, dir) = env.get("intake", "/v1/communities", &dist).await;
    let entry = dir["communities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["street"] == "xinhua")
        .unwrap()
        .clone();
    assert_eq!(entry["source"], "import");

    // The month's dispatch metrics, from the dispatch records.
    let month = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m")
        .to_string();
    let (status, m) = env
        .get(
            "intake",
            &format!("/v1/metrics/dispatch?district=tongzhou&month={month}"),
            &dist,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{m}");
    // Dispatched: 园景阁西区, 路由小区×3 (one operator's, two routed), the re-dispatch, 新导入.
    assert_eq!(m["dispatched"], 6, "{m}");
    assert_eq!(m["auto_routed"], 4);
    assert_eq!(m["returned"], 1);
    assert_eq!(m["returned_auto_routed"], 1);
    assert_eq!(m["by_reason"]["not_our_area"], 1);
    assert_eq!(m["by_reason"]["other"], 0);
    assert!((m["accuracy"].as_f64().unwrap() - (1.0 - 1.0 / 6.0)).abs() < 1e-9);
    assert!((m["auto_accuracy"].as_f64().unwrap() - 0.75).abs() < 1e-9);
    assert!(m["median_seconds_to_dispatch"].as_f64().unwrap() >= 0.0);
    let (status, _) = env
        .get(
            "intake",
            "/v1/metrics/dispatch",
            &env.token(Role::Street, "jiukeshu"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Computed from events: the same after a rebuild.
    crate::consuming::consumers_idle(&env).await;
    crate::rebuild::rebuild_all(&env).await;
    let (_, after) = env
        .get(
            "intake",
            &format!("/v1/metrics/dispatch?district=tongzhou&month={month}"),
            &dist,
        )
        .await;
    assert_eq!(after, m);
    env.cleanup().await;
}

/// The dashboard's map in headless Chromium, offline (nothing requested from another origin): a
/// point registered while it is open appears within a second; its file opens on a click.
#[tokio::test]
async fn the_map_shows_a_new_point_within_a_second_in_chromium_offline() {
    use qingling_tests::browser;
    let env = TestEnv::start().await;
    let result = browser::run(
        "map.mjs",
        &[
            ("LEDGER_URL", env.svc("ledger").url.clone()),
            ("INTAKE_URL", env.svc("intake").url.clone()),
            ("TOKEN_DISTRICT", env.token(Role::District, "tongzhou")),
            ("TOKEN_OPERATOR", env.token(Role::Operator, "tongzhou")),
        ],
    )
    .await;
    let artifacts = browser::artifacts();
    let ms = result["marker_ms"].as_f64().unwrap();
    assert!(ms < 2000.0, "the point took {ms} ms to appear");
    let point = result["point_id"].as_str().unwrap();
    let f = point_file(&env, point).await;
    assert_eq!(f["location"], json!({"lat": 39.9053, "long": 116.6568}));
    assert!(artifacts.join("map.png").exists() && artifacts.join("map-phone.png").exists());
    env.cleanup().await;
}
