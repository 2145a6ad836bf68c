//! CONTRACT §9: photos a street uploads, kept by the system, cited by a write-off request, shown to
//! those who may see them; bad uploads refused, leaving nothing.

use qingling_shared::Role;
use qingling_tests::{complaint, TestEnv};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{acknowledge, register, request_closure};

pub(crate) fn jpeg(n: u8, len: usize) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    b.extend(std::iter::repeat_n(n, len.saturating_sub(6)));
    b.extend([0xFF, 0xD9]);
    b
}

fn png(n: u8) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend([n; 40]);
    b.extend(b"IEND");
    b.extend([0xAE, 0x42, 0x60, 0x82]);
    b
}

/// A part of an upload: its name, its file name if a file, its bytes.
type Part<'a> = (&'a str, Option<&'a str>, Vec<u8>);

/// A multipart body by hand: `(name, filename, bytes)` parts.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "qingling-test-boundary-7d3f";
    let mut body = vec![];
    for (name, filename, bytes) in parts {
        body.extend(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes(),
            ),
            None => body.extend(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend(*bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub(crate) async fn upload(
    env: &TestEnv,
    token: Option<&str>,
    parts: &[(&str, Option<&str>, &[u8])],
) -> (StatusCode, Value) {
    let (ct, body) = multipart(parts);
    let mut r = env
        .http
        .post(env.url("closure", "/v1/evidence"))
        .header("content-type", ct)
        .body(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    qingling_tests::read(r.send().await.unwrap()).await
}

async fn events(env: &TestEnv) -> i64 {
    env.count_events("closure").await
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing() {
    let env = TestEnv::start_with(&[("QINGLING_EVIDENCE_MAX_BYTES", "4096")]).await;
    let st = env.token(Role::Street, "jiukeshu");
    let before = events(&env).await;
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    let cases: Vec<(&str, Vec<Part>, StatusCode)> = vec![
        (
            "svg",
            vec![("file", Some("a.jpg"), svg.to_vec())],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "html",
            vec![(
                "file",
                Some("a.png"),
                b"<html><body>x</body></html>".to_vec(),
            )],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "script",
            vec![("file", Some("photo.jpg"), b"#!/bin/sh\nrm -rf /\n".to_vec())],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "too large",
            vec![("file", Some("a.jpg"), jpeg(1, 5000))],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "cut short",
            vec![("file", Some("a.jpg"), jpeg(2, 400)[..300].to_vec())],
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty",
            vec![("file", Some("a.jpg"), vec![])],
            StatusCode::BAD_REQUEST,
        ),
        (
            "no file",
            vec![("item_id", None, b"x".to_vec())],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "two files",
            vec![
                ("file", Some("a.jpg"), jpeg(3, 100)),
                ("file", Some("b.jpg"), jpeg(4, 100)),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            "many parts",
            (0..10).map(|_| ("note", None, b"x".to_vec())).collect(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, parts, expected) in cases {
        let parts: Vec<(&str, Option<&str>, &[u8])> = parts
            .iter()
            .map(|(n, f, b)| (*n, *f, b.as_slice()))
            .collect();
        let (status, v) = upload(&env, Some(&st), &parts).await;
        assert_eq!(status, expected, "{what}: {v}");
        assert_eq!(v["status"], expected.as_u16(), "{what}: problem+json {v}");
    }
    let (status, _) = upload(&env, None, &[("file", Some("a.jpg"), &jpeg(5, 100))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = upload(
        &env,
        Some(&env.token(Role::Reviewer, "tongzhou")),
        &[("file", Some("a.jpg"), &jpeg(5, 100))],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only streets upload");
    assert_eq!(events(&env).await, before, "nothing recorded");
    let blobs: i64 = sqlx::query_scalar("select count(*) from evidence_blobs")
        .fetch_one(&mut env.db("closure").await)
        .await
        .unwrap();
    assert_eq!(blobs, 0, "nothing kept");
    env.cleanup().await;
}

#[tokio::test]
async fn a_kept_photo_is_cited_once_stored_and_shown_only_to_those_who_may_see_it() {
    let env = TestEnv::start().await;
    let st = env.token(Role::Street, "jiukeshu");
    let photo = jpeg(7, 2000);
    let sha = hex::encode(Sha256::digest(&photo));
    let (status, kept) = upload(
        &env,
        Some(&st),
        &[
            ("file", Some("after.jpg"), &photo),
            ("taken_at", None, b"2026-11-28T08:00:00Z"),
            ("lat", None, b"39.909"),
            ("long", None, b"116.656"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{kept}");
    assert_eq!(kept["evidence_id"], sha.as_str());
    assert_eq!(kept["sha256"], sha.as_str());
    assert_eq!(kept["bytes"], photo.len());
    assert_eq!(kept["content_type"], "image/jpeg");
    assert_eq!(kept["uri"], format!("/v1/evidence/{sha}"));
    // The same bytes again: the same evidence, nothing new.
    let before = events(&env).await;
    let (status, again) = upload(&env, Some(&st), &[("file", Some("copy.jpg"), &photo)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["evidence_id"], sha.as_str());
    assert_eq!(events(&env).await, before);
    let (status, png_kept) = upload(&env, Some(&st), &[("file", Some("x"), &png(1))]).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(png_kept["content_type"], "image/png");

    // The uploader sees it; another street does not; nobody without a token.
    let get = |token: Option<String>| {
        let mut r = env
            .http
            .get(env.url("closure", &format!("/v1/evidence/{sha}")));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = get(Some(st.clone())).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let body = r.bytes().await.unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        sha,
        "the photo the street uploaded"
    );
    assert_eq!(
        get(Some(env.token(Role::Street, "yongshun")))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(get(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let reviewer = env.token(Role::Reviewer, "tongzhou");
    assert_eq!(
        get(Some(reviewer.clone())).await.unwrap().status(),
        StatusCode::FORBIDDEN,
        "no write-off request cites it yet"
    );

    // A write-off request cites it by id; an unknown id is refused.
    let (_, item) = register(&env, &complaint("jiukeshu", "证据小区", "1", "B1")).await;
    acknowledge(&env, "jiukeshu", &item).await;
    let mut body = qingling_tests::rectified(&item);
    body["evidence"] = json!([{"evidence_id": "0".repeat(64)}]);
    let (status, v) = env.post("closure", "/v1/closures", &st, &body).await;
    assert!(
        status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::CONFLICT,
        "{status} {v}"
    );
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        assert!(v.to_string().contains("evidence[0].evidence_id"), "{v}");
    }
    body["evidence"] = json!([{"evidence_id": sha}, {"evidence_id": png_kept["evidence_id"]}]);
    let closure = request_closure(&env, "jiukeshu", &body).await;
    let (_, detail) = env
        .get("closure", &format!("/v1/closures/{closure}"), &reviewer)
        .await;
    let cited = detail["evidence"].as_array().unwrap();
    assert_eq!(cited.len(), 2, "{detail}");
    assert_eq!(cited[0]["sha256"], sha.as_str());
    assert_eq!(cited[0]["bytes"], photo.len());
    assert_eq!(cited[0]["content_type"], "image/jpeg");
    assert_eq!(cited[0]["uri"], format!("/v1/evidence/{sha}"));
    // Now the district's reviewer and office see it; the log carries no bytes.
    let r = get(Some(reviewer)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(hex::encode(Sha256::digest(r.bytes().await.unwrap())), sha);
    assert_eq!(
        get(Some(env.token(Role::District, "tongzhou")))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let largest: i64 = sqlx::query_scalar("select max(length(data::text))::bigint from events")
        .fetch_one(&mut env.db("closure").await)
        .await
        .unwrap();
    assert!(
        largest < 2000,
        "an event holding the photo? {largest} characters"
    );
    env.cleanup().await;
}

/// `QINGLING_EVIDENCE_STORE=s3://…`: the bytes go to an S3-compatible bucket (moto here), keyed by
/// their SHA-256 under the prefix; the database keeps the records only. A bucket that is down is
/// a 503 that leaves nothing.
#[tokio::test]
async fn photos_kept_in_an_s3_compatible_bucket() {
    let bucket = "qingling-evidence";
    let mut moto = qingling_tests::moto::Moto::start(bucket).await;
    let env = TestEnv::start_with(&[
        ("QINGLING_EVIDENCE_STORE", "s3://qingling-evidence/photos/"),
        ("AWS_ENDPOINT_URL", &moto.url),
        ("AWS_ACCESS_KEY_ID", "qingling-test"),
        ("AWS_SECRET_ACCESS_KEY", "qingling-test-secret"),
        ("AWS_REGION", "us-east-1"),
    ])
    .await;
    let st = env.token(Role::Street, "jiukeshu");
    let photo = jpeg(9, 50_000);
    let sha = hex::encode(Sha256::digest(&photo));
    let (status, kept) = upload(&env, Some(&st), &[("file", Some("a.jpg"), &photo)]).await;
    assert_eq!(status, StatusCode::CREATED, "{kept}");
    assert_eq!(kept["sha256"], sha.as_str());
    let in_bucket = moto
        .object(bucket, &format!("photos/{sha}"))
        .await
        .expect("the photo is in the bucket under its hash");
    assert_eq!(in_bucket, photo);
    let rows: i64 = sqlx::query_scalar("select count(*) from evidence_blobs")
        .fetch_one(&mut env.db("closure").await)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the bytes are not in the database");
    let (status, again) = upload(&env, Some(&st), &[("file", Some("b.jpg"), &photo)]).await;
    assert_eq!(status, StatusCode::OK, "{again}");

    let fetch = || {
        env.http
            .get(env.url("closure", &format!("/v1/evidence/{sha}")))
            .bearer_auth(&st)
            .send()
    };
    let r = fetch().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(hex::encode(Sha256::digest(r.bytes().await.unwrap())), sha);

    // The bucket goes away: an upload is refused as unavailable and leaves no record or event.
    moto.stop().await;
    let before = events(&env).await;
    let other = jpeg(10, 3000);
    let (status, v) = upload(&env, Some(&st), &[("file", Some("c.jpg"), &other)]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["status"], 503);
    assert_eq!(events(&env).await, before);
    let records: i64 = sqlx::query_scalar("select count(*) from evidence")
        .fetch_one(&mut env.db("closure").await)
        .await
        .unwrap();
    assert_eq!(records, 1);
    assert_eq!(
        fetch().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    env.cleanup().await;
}
