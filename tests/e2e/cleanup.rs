//! A test leaves nothing behind, passed or failed: its database, its JetStream stream and the
//! services' durable consumers go when its `TestEnv` does.

use qingling_tests::{complaint, is_test_stream, pg_base, TestEnv};
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;

use crate::register;

/// (database, stream) of an environment whose services have run and made their consumers.
async fn started() -> (TestEnv, String, String) {
    let env = TestEnv::start().await;
    register(&env, &complaint("jiukeshu", "园景阁", "3", "B1")).await;
    let js = async_nats::jetstream::new(env.nats().await);
    let mut stream = js.get_stream(env.stream_name()).await.unwrap();
    assert!(stream.info().await.unwrap().state.consumer_count >= 3);
    assert!(is_test_stream(&env.stream_name()), "{}", env.stream_name());
    assert!(database_exists(&env.db_name).await);
    let (db, stream) = (env.db_name.clone(), env.stream_name());
    (env, db, stream)
}

async fn database_exists(name: &str) -> bool {
    let opts: PgConnectOptions = format!("{}/postgres", pg_base()).parse().unwrap();
    let mut c = opts.connect().await.unwrap();
    sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
        .bind(name)
        .fetch_one(&mut c)
        .await
        .unwrap()
}

async fn assert_gone(db: &str, stream: &str) {
    assert!(!database_exists(db).await, "database {db} is left");
    let js = async_nats::jetstream::new(
        async_nats::connect(qingling_tests::nats_url())
            .await
            .unwrap(),
    );
    let err = js.get_stream(stream).await.err();
    assert!(err.is_some(), "stream {stream} is left");
}

#[tokio::test]
async fn a_test_environment_is_removed_when_dropped_and_when_its_test_fails() {
    // Dropped at the end of a passing test.
    let (env, db, stream) = started().await;
    drop(env);
    assert_gone(&db, &stream).await;

    // A failing test: the panic unwinds through the environment.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let failed = tokio::spawn(async move {
        let (env, db, stream) = started().await;
        tx.send((db, stream)).unwrap();
        assert_eq!(env.services.len(), 0, "the test fails");
    })
    .await;
    assert!(failed.unwrap_err().is_panic());
    let (db, stream) = rx.await.unwrap();
    assert_gone(&db, &stream).await;
}

#[test]
fn only_test_streams_are_swept() {
    assert!(is_test_stream("QINGLING_TEST_0123456789ABCDEF_EVENTS"));
    for other in [
        "QINGLING_EVENTS",
        "QINGLING_TEST__EVENTS",
        "QINGLING_TEST_0123456789ABCDEF_OTHER",
        "QINGLING_TEST_0123456789ABCDEFG_EVENTS",
        "QINGLING_TEST_0123456789abcdef_EVENTS",
        "T0123456789ABCDEF_EVENTS",
        "KV_QINGLING_TEST_0123456789ABCDEF_EVENTS",
    ] {
        assert!(!is_test_stream(other), "{other}");
    }
}
