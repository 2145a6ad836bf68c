//! CONTRACT §12: the ledger's log is a Merkle tree with signed checkpoints; every entry provable,
//! every checkpoint consistent with the last, checked by two verifiers (the `tlog_tiles` crate's
//! and one written here from RFC 9162); tampering with the event rows is caught.

use std::time::Duration;

use base64::prelude::*;
use qingling_shared::tlog;
use qingling_shared::Role;
use qingling_tests::rfc6962;
use qingling_tests::{bin_dir, complaint, eventually, TestEnv};
use reqwest::StatusCode;
use serde_json::Value;

use crate::{register, write_off, WAIT};

fn h(s: &str) -> rfc6962::Hash {
    BASE64_STANDARD.decode(s).unwrap().try_into().unwrap()
}

/// A proof's hashes, as the API gives them (base64).
fn hashes(list: &Value) -> Vec<rfc6962::Hash> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|x| h(x.as_str().unwrap()))
        .collect()
}

async fn text(env: &TestEnv, path: &str) -> (StatusCode, String) {
    let r = env.http.get(env.url("ledger", path)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The verifier keys the ledger publishes.
async fn keys(env: &TestEnv) -> Vec<String> {
    let (status, k) = text(env, "/v1/ledger/log/key").await;
    assert_eq!(status, StatusCode::OK);
    k.lines().map(String::from).collect()
}

/// The latest checkpoint once it covers every ledger event: (note, size, root).
async fn checkpoint_of_all(env: &TestEnv) -> (String, u64, rfc6962::Hash) {
    let keys = keys(env).await;
    eventually("a checkpoint of the whole log", WAIT, || async {
        let events: i64 = sqlx::query_scalar("select count(*) from events")
            .fetch_one(&mut env.db("ledger").await)
            .await
            .ok()?;
        let (status, note) = text(env, "/v1/ledger/log/checkpoint").await;
        if status != StatusCode::OK {
            return None;
        }
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (_, size, root) = tlog::verify_checkpoint(&note, &refs).ok()?;
        (size as i64 == events && events > 0).then_some((note, size, root.0))
    })
    .await
}

async fn entries(env: &TestEnv) -> Vec<Value> {
    let t = env.token(Role::Reviewer, "tongzhou");
    let (status, v) = env
        .get("ledger", "/v1/ledger/log/entries?from=0&limit=10000", &t)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_entry_is_provable_and_checkpoints_grow_consistently() {
    let mut env = TestEnv::start().await;
    let rev = env.token(Role::Reviewer, "tongzhou");
    let (_, item) = register(&env, &complaint("jiukeshu", "日志小区", "1", "B1")).await;
    let (note1, size1, root1) = checkpoint_of_all(&env).await;
    // A checkpoint is a C2SP signed note, parsed here by the note library.
    let lines: Vec<&str> = note1.lines().collect();
    assert_eq!(lines[0], "qingling.test/ledger");
    assert_eq!(lines[1], size1.to_string());
    assert_eq!(lines[3], "");
    assert!(lines[4].starts_with("— qingling.test/ledger "));
    let parsed = signed_note::Note::from_bytes(note1.as_bytes()).unwrap();
    assert_eq!(
        std::str::from_utf8(parsed.text()).unwrap(),
        format!(
            "qingling.test/ledger\n{size1}\n{}\n",
            BASE64_STANDARD.encode(root1)
        )
    );

    // Checkpoints under load: registrations run while checkpoints are taken.
    let load = async {
        for i in 0..20 {
            register(
                &env,
                &complaint("yongshun", &format!("负载小区{i}"), "1", "B1"),
            )
            .await;
        }
    };
    let watch = async {
        let mut seen = vec![];
        for _ in 0..20 {
            let (status, note) = text(&env, "/v1/ledger/log/checkpoint").await;
            assert_eq!(status, StatusCode::OK);
            seen.push(note);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        seen
    };
    let ((), seen) = tokio::join!(load, watch);
    write_off(&env, "jiukeshu", &item).await;
    // A restart between checkpoints: the log continues where it was.
    env.restart("ledger", &[]).await;
    let (note2, size2, root2) = checkpoint_of_all(&env).await;
    assert!(size2 > size1);

    // Every entry: its canonical bytes give the leaf, the leaves give the signed root.
    let all = entries(&env).await;
    assert_eq!(all.len() as u64, size2);
    let leaves: Vec<rfc6962::Hash> = all
        .iter()
        .enumerate()
        .map(|(i, e)| {
            assert_eq!(e["index"], i as u64);
            let leaf = rfc6962::leaf(&tlog::canonical_value(&e["event"]));
            assert_eq!(
                BASE64_STANDARD.encode(leaf),
                e["leaf_hash"].as_str().unwrap()
            );
            leaf
        })
        .collect();
    assert_eq!(rfc6962::root(&leaves), root2);
    assert_eq!(rfc6962::root(&leaves[..size1 as usize]), root1);

    // Inclusion of every entry, by both verifiers.
    for index in 0..size2 {
        let (status, p) = env
            .get(
                "ledger",
                &format!("/v1/ledger/log/proof/inclusion?index={index}&tree_size={size2}"),
                &rev,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{p}");
        let proof: Vec<rfc6962::Hash> = hashes(&p["hashes"]);
        assert_eq!(h(p["root"].as_str().unwrap()), root2);
        let leaf = leaves[index as usize];
        assert!(
            rfc6962::verify_inclusion(index, size2, &leaf, &proof, &root2),
            "entry {index}"
        );
        let crate_proof: Vec<tlog_tiles::Hash> =
            proof.iter().map(|x| tlog_tiles::Hash(*x)).collect();
        tlog_tiles::check_record(
            &crate_proof,
            size2,
            tlog_tiles::Hash(root2),
            index,
            tlog_tiles::Hash(leaf),
        )
        .unwrap();
        // A wrong leaf does not pass.
        assert!(!rfc6962::verify_inclusion(
            index,
            size2,
            &rfc6962::leaf(b"forged"),
            &proof,
            &root2
        ));
    }
    // Consistency between every pair of checkpoints seen under load, and across the restart.
    let mut sizes: Vec<(u64, rfc6962::Hash)> = vec![(size1, root1)];
    for note in &seen {
        let k = keys(&env).await;
        let (_, s, r) =
            tlog::verify_checkpoint(note, &k.iter().map(String::as_str).collect::<Vec<_>>())
                .unwrap();
        sizes.push((s, r.0));
    }
    sizes.push((size2, root2));
    sizes.dedup_by_key(|x| x.0);
    assert!(
        sizes.len() >= 3,
        "checkpoints were signed while registrations ran: {sizes:?}"
    );
    for w in sizes.windows(2) {
        let ((a, ra), (b, rb)) = (w[0], w[1]);
        assert!(b >= a, "checkpoints only grow");
        if a == b {
            continue;
        }
        let (status, p) = env
            .get(
                "ledger",
                &format!("/v1/ledger/log/proof/consistency?from_size={a}&to_size={b}"),
                &rev,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{p}");
        let proof: Vec<rfc6962::Hash> = hashes(&p["hashes"]);
        assert!(
            rfc6962::verify_consistency(a, b, &ra, &rb, &proof),
            "{a} → {b}"
        );
        let crate_proof: Vec<tlog_tiles::Hash> =
            proof.iter().map(|x| tlog_tiles::Hash(*x)).collect();
        tlog_tiles::check_tree(
            &crate_proof,
            b,
            tlog_tiles::Hash(rb),
            a,
            tlog_tiles::Hash(ra),
        )
        .unwrap();
        assert!(!rfc6962::verify_consistency(
            a,
            b,
            &rfc6962::leaf(b"x"),
            &rb,
            &proof
        ));
    }
    for bad in [
        format!("/v1/ledger/log/proof/inclusion?index={size2}&tree_size={size2}"),
        format!(
            "/v1/ledger/log/proof/inclusion?index=0&tree_size={}",
            size2 + 1
        ),
        format!(
            "/v1/ledger/log/proof/consistency?from_size={}&to_size={size1}",
            size1 + 1
        ),
        "/v1/ledger/log/proof/consistency?from_size=0".to_string(),
    ] {
        let (status, _) = env.get("ledger", &bad, &rev).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let (status, _) = env
        .get(
            "ledger",
            "/v1/ledger/log/entries",
            &env.token(Role::Street, "jiukeshu"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The item's receipt: its 上账 and 销账, each provably in the checkpoint.
    let (status, receipt) = env
        .get(
            "ledger",
            &format!("/v1/ledger/items/{item}/receipt"),
            &env.token(Role::Street, "jiukeshu"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    let k = keys(&env).await;
    let (_, rsize, rroot) = tlog::verify_checkpoint(
        receipt["checkpoint"].as_str().unwrap(),
        &k.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .unwrap();
    let kinds: Vec<&str> = receipt["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["item_registered", "item_written_off"]);
    for e in receipt["entries"].as_array().unwrap() {
        let proof: Vec<rfc6962::Hash> = hashes(&e["inclusion"]);
        let leaf = rfc6962::leaf(&tlog::canonical_value(&e["event"]));
        assert!(rfc6962::verify_inclusion(
            e["index"].as_u64().unwrap(),
            rsize,
            &leaf,
            &proof,
            &rroot.0
        ));
    }

    // The same log as C2SP tlog-tiles: the level-0 tile holds the leaves, the entry bundle the bytes.
    let (status, note) = text(&env, "/tlog/checkpoint").await;
    assert_eq!(status, StatusCode::OK);
    let (_, tsize, _) =
        tlog::verify_checkpoint(&note, &k.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let w = tsize.min(256);
    let r = env
        .http
        .get(env.url("ledger", &format!("/tlog/tile/0/000.p/{w}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tile = r.bytes().await.unwrap();
    assert_eq!(tile.len() as u64, 32 * w);
    for (i, chunk) in tile.chunks(32).enumerate() {
        assert_eq!(chunk, leaves[i].as_slice(), "tile hash {i}");
    }
    let bundle = env
        .http
        .get(env.url("ledger", &format!("/tlog/tile/entries/000.p/{w}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut at = 0;
    for (i, leaf) in leaves.iter().take(w as usize).enumerate() {
        let len = u16::from_be_bytes([bundle[at], bundle[at + 1]]) as usize;
        assert_eq!(
            &rfc6962::leaf(&bundle[at + 2..at + 2 + len]),
            leaf,
            "entry {i}"
        );
        at += 2 + len;
    }
    assert_eq!(at, bundle.len());
    let r = env
        .http
        .get(env.url("ledger", &format!("/tlog/tile/0/000.p/{}", w + 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "beyond the checkpoint");

    // A rebuild never re-signs history.
    let signed: i64 = sqlx::query_scalar("select count(*) from log_checkpoints")
        .fetch_one(&mut env.db("ledger").await)
        .await
        .unwrap();
    crate::rebuild::rebuild_all(&env).await;
    let after: Vec<(i64, String)> =
        sqlx::query_as("select size, note from log_checkpoints order by size")
            .fetch_all(&mut env.db("ledger").await)
            .await
            .unwrap();
    assert!(after.len() as i64 >= signed);
    assert!(after.iter().any(|(s, n)| *s as u64 == size2 && *n == note2));

    // Export → verify, offline, by the admin tool; a changed entry is named.
    let dir = std::env::temp_dir().join(format!("qingling-verify-{}", env.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let (export, cp, old_cp) = (
        dir.join("log.jsonl"),
        dir.join("checkpoint.txt"),
        dir.join("old.txt"),
    );
    let admin = |args: Vec<String>| {
        let env = &env;
        async move {
            tokio::process::Command::new(bin_dir().join("qingling-admin"))
                .args(&args)
                .env("QINGLING_JWT_SECRET", qingling_tests::SECRET)
                .env("DATABASE_URL", env.database_url())
                .output()
                .await
                .unwrap()
        }
    };
    let out = admin(vec![
        "log-export".into(),
        export.display().to_string(),
        "--ledger".into(),
        env.svc("ledger").url.clone(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, latest) = text(&env, "/v1/ledger/log/checkpoint").await;
    std::fs::write(&cp, &latest).unwrap();
    std::fs::write(&old_cp, &note1).unwrap();
    let mut verify_args = vec![
        export.display().to_string(),
        "--checkpoint".into(),
        cp.display().to_string(),
        "--old-checkpoint".into(),
        old_cp.display().to_string(),
    ];
    for key in &k {
        verify_args.extend(["--key".to_string(), key.clone()]);
    }
    let out = admin([vec!["verify".to_string()], verify_args.clone()].concat()).await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Change entry 3's event in the export: named.
    let text_export = std::fs::read_to_string(&export).unwrap();
    let mut lines: Vec<String> = text_export.lines().map(String::from).collect();
    let mut e: Value = serde_json::from_str(&lines[3]).unwrap();
    e["event"]["actor"] = Value::String("someone-else".into());
    lines[3] = e.to_string();
    std::fs::write(&export, lines.join("\n") + "\n").unwrap();
    let out = admin([vec!["verify".to_string()], verify_args.clone()].concat()).await;
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["entry"], 3, "{report}");
    // The same with its recorded leaf hash changed too: the export no longer adds up.
    e["leaf_hash"] =
        Value::String(BASE64_STANDARD.encode(rfc6962::leaf(&tlog::canonical_value(&e["event"]))));
    lines[3] = e.to_string();
    std::fs::write(&export, lines.join("\n") + "\n").unwrap();
    let out = admin([vec!["verify".to_string()], verify_args].concat()).await;
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).ok();
    env.cleanup().await;
}

/// How the event rows are tampered with.
#[derive(Debug, Clone, Copy)]
enum Tampering {
    Changed,
    Deleted,
    Inserted,
    Reordered,
}

async fn tamper_and_restart(kind: Tampering) {
    let mut env = TestEnv::start().await;
    for i in 0..4 {
        register(
            &env,
            &complaint("jiukeshu", &format!("篡改小区{i}"), "1", "B1"),
        )
        .await;
    }
    let (_, size, _) = checkpoint_of_all(&env).await;
    assert!(size >= 4);
    // Stopped, so nothing is appended meanwhile; then the rows are changed with SQL.
    env.svc_mut("ledger").child.kill().await.unwrap();
    let mut c = env.db("ledger").await;
    let sql = match kind {
        Tampering::Changed => "update events set data = jsonb_set(data, '{street}', '\"xinhua\"') where position = 2",
        Tampering::Deleted => "delete from events where position = 2",
        Tampering::Inserted => "update events set position = position + 1000 where position >= 2;
             update events set position = position - 999 where position >= 1002;
             insert into events (position, event_id, stream, version, event_type, occurred_at, actor, correlation_id, causation_id, data)
             select 2, gen_random_uuid(), stream || '-x', 1, event_type, occurred_at, actor, correlation_id, causation_id, data
             from events where position = 1",
        Tampering::Reordered => "update events set position = -2 where position = 2;
             update events set position = 2 where position = 3;
             update events set position = 3 where position = -2",
    };
    for s in sql.split(';').filter(|s| !s.trim().is_empty()) {
        sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&mut c)
            .await
            .unwrap();
    }
    drop(c);
    let new = env.spawn_with("ledger", &[]).await;
    *env.svc_mut("ledger") = new;
    let detail = eventually(&format!("{kind:?} to be caught"), WAIT, || async {
        let (status, v) = env.get("ledger", "/v1/ledger/log/checkpoint", "").await;
        (status == StatusCode::SERVICE_UNAVAILABLE && v["detail"].as_str()?.contains("disagrees"))
            .then(|| v["detail"].as_str().unwrap().to_string())
    })
    .await;
    assert!(detail.contains("from entry 1"), "{kind:?}: {detail}");
    let metrics = text(&env, "/metrics").await.1;
    assert!(
        metrics.contains("qingling_log_tamper_detected 1"),
        "{kind:?}"
    );
    // No new checkpoint is signed while registrations go on.
    let signed: i64 = sqlx::query_scalar("select max(size) from log_checkpoints")
        .fetch_one(&mut env.db("ledger").await)
        .await
        .unwrap();
    register(&env, &complaint("jiukeshu", "篡改之后", "1", "B1")).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let still: i64 = sqlx::query_scalar("select max(size) from log_checkpoints")
        .fetch_one(&mut env.db("ledger").await)
        .await
        .unwrap();
    assert_eq!(still, signed, "{kind:?}: nothing signed after tampering");
    // qingling-admin check names the entry.
    let out = tokio::process::Command::new(bin_dir().join("qingling-admin"))
        .arg("check")
        .env("DATABASE_URL", env.database_url())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{kind:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let log = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"].as_str().unwrap().contains("verifiable log"))
        .unwrap()
        .clone();
    assert_eq!(log["ok"], false);
    assert_eq!(log["entry"], 1, "{kind:?}: {log}");
    env.cleanup().await;
}

#[tokio::test]
async fn tampering_with_the_event_rows_is_caught_at_start_and_by_check() {
    // One after the other: four environments at once would take too many database connections.
    for kind in [
        Tampering::Changed,
        Tampering::Deleted,
        Tampering::Inserted,
        Tampering::Reordered,
    ] {
        tamper_and_restart(kind).await;
    }
}

/// With a second key configured (the audit office's), every checkpoint carries both signatures.
#[tokio::test]
async fn a_co_signer_signs_every_checkpoint_too() {
    let (audit, audit_verifier) = tlog::generate_key("audit.tongzhou");
    let path = std::env::temp_dir().join(format!("qingling-audit-{}.key", uuid::Uuid::now_v7()));
    std::fs::write(&path, audit).unwrap();
    let env = TestEnv::start_with(&[("QINGLING_LOG_COSIGNER_KEY", path.to_str().unwrap())]).await;
    register(&env, &complaint("jiukeshu", "会签小区", "1", "B1")).await;
    let (note, size, _) = checkpoint_of_all(&env).await;
    let keys = keys(&env).await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1], audit_verifier);
    assert_eq!(note.matches("\n— ").count(), 2, "{note}");
    assert!(note.contains("\n— audit.tongzhou "));
    // Each key alone verifies its own line; together they verify the note.
    let (_, s, _) = tlog::verify_checkpoint(&note, &[&keys[0], &keys[1]]).unwrap();
    assert_eq!(s, size);
    let (_, s, _) = tlog::verify_checkpoint(&note, &[&audit_verifier]).unwrap();
    assert_eq!(s, size);
    std::fs::remove_file(&path).ok();
    env.cleanup().await;
}
