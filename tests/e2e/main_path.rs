//! One complaint, from the call to the write-off, across all three services and NATS.

use qingling_events::ledger::types::*;
use std::time::Duration;

use futures::StreamExt;
use qingling_shared::Role;
use qingling_tests::{complaint, eventually, rectified, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{item_status, register, request_closure, street_row, WAIT};

#[tokio::test]
async fn a_complaint_goes_from_call_to_write_off_and_the_street_returns_to_dynamic_zero() {
    let env = TestEnv::start().await;
    let op = env.token(Role::Operator, "tongzhou");
    let st = env.token(Role::Street, "jiukeshu");
    let rv = env.token(Role::Reviewer, "tongzhou");
    let dist = env.token(Role::District, "tongzhou");

    // 接诉 → 派单 → 上账.
    let (c1, item) = register(&env, &complaint("jiukeshu", "园景阁西区", "3", "B1")).await;
    let (_, summary) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    assert_eq!(
        summary["streets"].as_array().unwrap().len(),
        22,
        "every street is listed"
    );
    let row = street_row(&summary, "jiukeshu");
    assert_eq!(
        (
            row["open"].as_i64(),
            row["registered_total"].as_i64(),
            row["dynamic_zero"].as_bool()
        ),
        (Some(1), Some(1), Some(false))
    );
    assert_eq!(row["name"], "九棵树街道");
    assert_eq!(
        (summary["open"].as_i64(), summary["dynamic_zero"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(street_row(&summary, "yongshun")["dynamic_zero"], true);

    // A repeat call about the same basement, spelled differently, links: the count stays 1.
    let (c2, item2) = register(
        &env,
        &complaint("jiukeshu", "园景阁 西区", "３号楼", "ｂ１"),
    )
    .await;
    assert_eq!(item2, item, "the repeat call joins the open item");
    let (_, detail) = env
        .get("ledger", &format!("/v1/ledger/items/{item}"), &st)
        .await;
    assert_eq!(detail["complaint_ids"], json!([c1, c2]));
    let (_, summary) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    assert_eq!(street_row(&summary, "jiukeshu")["open"], 1);
    assert_eq!(summary["registered_total"], 1);

    // 签收, once.
    let (status, acked) = env
        .post(
            "ledger",
            &format!("/v1/ledger/items/{item}/acknowledge"),
            &st,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(acked["status"], "acknowledged");
    let (status, again) = env
        .post(
            "ledger",
            &format!("/v1/ledger/items/{item}/acknowledge"),
            &st,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert!(again["detail"].as_str().unwrap().contains("acknowledged"));

    // 销账申请 → rejected → filed again → approved.
    let first = request_closure(&env, "jiukeshu", &rectified(&item)).await;
    item_status(&env, &item, "closure_pending").await;
    let (status, dup) = env
        .post("closure", "/v1/closures", &st, &rectified(&item))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a second request while one is pending: {dup}"
    );
    let (status, p) = env
        .post(
            "closure",
            &format!("/v1/closures/{first}/reject"),
            &rv,
            &json!({"reason": " "}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (status, rejected) = env
        .post(
            "closure",
            &format!("/v1/closures/{first}/reject"),
            &rv,
            &json!({"reason": "照片不清晰"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(rejected["status"], "rejected");
    item_status(&env, &item, "acknowledged").await;
    let (status, _) = env
        .post(
            "closure",
            &format!("/v1/closures/{first}/approve"),
            &rv,
            &json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a rejected request cannot be approved"
    );

    let second = request_closure(&env, "jiukeshu", &rectified(&item)).await;
    assert_ne!(second, first);
    let (status, approved) = env
        .post(
            "closure",
            &format!("/v1/closures/{second}/approve"),
            &rv,
            &json!({"note": "现场核验通过"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "approved");
    let (status, _) = env
        .post(
            "closure",
            &format!("/v1/closures/{second}/approve"),
            &rv,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "approved once only");

    // 销账: the item is off the ledger and the street is back at dynamic zero.
    let done = item_status(&env, &item, "written_off").await;
    assert_eq!(done["write_off_kind"], "rectified");
    let types: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            ITEM_REGISTERED,
            COMPLAINT_LINKED,
            ITEM_ACKNOWLEDGED,
            ITEM_CLOSURE_PENDING,
            ITEM_CLOSURE_REJECTED,
            ITEM_CLOSURE_PENDING,
            ITEM_WRITTEN_OFF
        ]
    );
    let (_, summary) = env
        .get("ledger", "/v1/ledger/summary?district=tongzhou", &dist)
        .await;
    let row = street_row(&summary, "jiukeshu");
    assert_eq!(
        (
            row["open"].as_i64(),
            row["registered_total"].as_i64(),
            row["written_off_total"].as_i64()
        ),
        (Some(0), Some(1), Some(1))
    );
    assert_eq!(row["dynamic_zero"], true);
    assert!(row["zero_since"].is_string(), "{row}");
    assert_eq!(summary["dynamic_zero"], true);
    assert!(summary["zero_since"].is_string());
    for s in summary["streets"].as_array().unwrap() {
        assert_eq!(
            s["open"].as_i64().unwrap(),
            s["registered_total"].as_i64().unwrap() - s["written_off_total"].as_i64().unwrap()
        );
    }

    // Both complaints follow their item.
    for c in [&c1, &c2] {
        eventually("the complaint to be written off", WAIT, || async {
            let (_, v) = env.get("intake", &format!("/v1/complaints/{c}"), &op).await;
            (v["status"] == "written_off").then_some(())
        })
        .await;
    }
    let (_, complaint1) = env
        .get("intake", &format!("/v1/complaints/{c1}"), &op)
        .await;
    assert_eq!(
        complaint1["caller"]["phone"], "*******0000",
        "the phone is masked"
    );

    // The journal (台账流水) holds the registration and the write-off, in order; CSV too.
    let (_, journal) = env
        .get("ledger", "/v1/ledger/entries?district=tongzhou", &dist)
        .await;
    let entries = journal["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{journal}");
    assert_eq!(
        (
            entries[0]["kind"].as_str(),
            entries[0]["complaint_id"].as_str()
        ),
        (Some("registration"), Some(c1.as_str()))
    );
    assert_eq!(
        (
            entries[1]["kind"].as_str(),
            entries[1]["write_off_kind"].as_str()
        ),
        (Some("write_off"), Some("rectified"))
    );
    assert_eq!(entries[1]["closure_id"].as_str(), Some(second.as_str()));
    assert!(entries[0]["position"].as_i64() < entries[1]["position"].as_i64());
    assert_eq!(journal["next_after"], Value::Null);
    let csv = env
        .http
        .get(env.url("ledger", "/v1/ledger/entries?district=tongzhou"))
        .bearer_auth(&dist)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0]
        .trim_start_matches('\u{feff}')
        .starts_with("position,kind,item_id"));
    assert!(lines[2].contains("write_off") && lines[2].contains("rectified"));

    // The NATS stream holds item_registered and item_written_off with the contract's envelope.
    let js = async_nats::jetstream::new(env.nats().await);
    let stream = js.get_stream(env.stream_name()).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subjects: vec![
                format!("{}.ledger.{ITEM_REGISTERED}", env.prefix),
                format!("{}.ledger.{ITEM_WRITTEN_OFF}", env.prefix),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    let mut got = vec![];
    while got.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next())
            .await
            .expect("messages on the stream")
            .unwrap()
            .unwrap();
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        let msg_id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string());
        assert_eq!(
            msg_id.as_deref(),
            body["event_id"].as_str(),
            "Nats-Msg-Id is the event id"
        );
        got.push((m.subject.to_string(), body));
    }
    assert_eq!(got[0].0, format!("{}.ledger.{ITEM_REGISTERED}", env.prefix));
    assert_eq!(
        got[1].0,
        format!("{}.ledger.{ITEM_WRITTEN_OFF}", env.prefix)
    );
    for (_, e) in &got {
        for field in [
            "event_id",
            "event_type",
            "stream",
            "version",
            "occurred_at",
            "actor",
            "correlation_id",
            "causation_id",
            "data",
        ] {
            assert!(
                e.get(field).is_some_and(|v| !v.is_null()),
                "envelope lacks {field}: {e}"
            );
        }
        assert_eq!(e["stream"], format!("item-{item}"));
        assert_eq!(e["data"]["item_id"], item.as_str());
    }
    let reg = &got[0].1["data"];
    assert_eq!(
        (
            reg["district"].as_str(),
            reg["street"].as_str(),
            reg["source"].as_str()
        ),
        (Some("tongzhou"), Some("jiukeshu"), Some("complaint"))
    );
    assert_eq!(reg["complaint_id"].as_str(), Some(c1.as_str()));
    assert_eq!(
        got[0].1["actor"], "operator-tongzhou",
        "the actor is the operator whose call caused it"
    );
    let off = &got[1].1["data"];
    assert_eq!(
        (off["kind"].as_str(), off["closure_id"].as_str()),
        (Some("rectified"), Some(second.as_str()))
    );
    assert_eq!(got[1].1["actor"], "reviewer-tongzhou");
    assert_eq!(got[1].1["version"], 7);

    env.cleanup().await;
}

#[tokio::test]
async fn an_unfounded_complaint_is_written_off_as_unfounded_and_lists_and_filters_work() {
    let env = TestEnv::start().await;
    let st = env.token(Role::Street, "yongshun");
    let rv = env.token(Role::Reviewer, "tongzhou");
    let (_, item) = register(&env, &complaint("yongshun", "财富东方", "1", "B2")).await;
    let (_, other) = register(&env, &complaint("yongshun", "财富东方", "2", "B1")).await;
    assert_ne!(item, other);

    let (_, open) = env.get("ledger", "/v1/ledger/items?status=open", &st).await;
    assert_eq!(open["items"].as_array().unwrap().len(), 2);
    assert_eq!(open["items"][0]["item_id"], other.as_str(), "newest first");
    let (_, page) = env.get("ledger", "/v1/ledger/items?limit=1", &st).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, page2) = env
        .get(
            "ledger",
            &format!("/v1/ledger/items?limit=1&cursor={cursor}"),
            &st,
        )
        .await;
    assert_eq!(page2["items"][0]["item_id"], item.as_str());

    env.post(
        "ledger",
        &format!("/v1/ledger/items/{item}/acknowledge"),
        &st,
        &json!({}),
    )
    .await;
    let mut body = rectified(&item);
    body["outcome"] = json!("unfounded");
    body["checklist"] = json!({"no_illegal_residents": true});
    body["note"] = json!("");
    let (status, p) = env.post("closure", "/v1/closures", &st, &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "note");
    body["note"] = json!("核查不属实:地下室为储物间");
    let closure = request_closure(&env, "yongshun", &body).await;
    let (_, pending) = env.get("closure", "/v1/closures?status=pending", &rv).await;
    assert_eq!(pending["closures"].as_array().unwrap().len(), 1);
    assert_eq!(pending["closures"][0]["closure_id"], closure.as_str());
    let (status, _) = env
        .post(
            "closure",
            &format!("/v1/closures/{closure}/approve"),
            &rv,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let done = item_status(&env, &item, "written_off").await;
    assert_eq!(done["write_off_kind"], "unfounded");
    let (_, written) = env
        .get("ledger", "/v1/ledger/items?status=written_off", &st)
        .await;
    assert_eq!(written["items"].as_array().unwrap().len(), 1);
    let (_, summary) = env.get("ledger", "/v1/ledger/summary", &st).await;
    assert_eq!(
        summary["streets"].as_array().unwrap().len(),
        1,
        "a street sees its own row only"
    );
    assert_eq!(
        (
            summary["open"].as_i64(),
            summary["written_off_total"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let (_, detail) = env
        .get("closure", &format!("/v1/closures/{closure}"), &st)
        .await;
    assert_eq!(detail["status"], "approved");
    assert_eq!(detail["history"].as_array().unwrap().len(), 2);
    env.cleanup().await;
}
