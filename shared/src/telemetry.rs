//! What every metric means (the HELP text `promtool check metrics` asks for), and the gauges of
//! the dependencies' health, refreshed in the background so an alert needs no probe of `/healthz`.

use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use sqlx::PgPool;
use tokio::sync::watch;

/// Describes every metric the services export.
pub fn describe() {
    describe_counter!(
        "qingling_http_requests_total",
        "HTTP requests answered, by method, route and status."
    );
    describe_histogram!(
        "qingling_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by method and route."
    );
    describe_counter!(
        "qingling_http_connections_refused_total",
        "Connections closed at once because the service already held QINGLING_MAX_CONNECTIONS."
    );
    describe_counter!(
        "qingling_events_appended_total",
        "Events appended to the service's own log (PostgreSQL), by type."
    );
    describe_counter!(
        "qingling_events_published_total",
        "Events the outbox relay published to JetStream, by type."
    );
    describe_counter!(
        "qingling_events_republished_total",
        "Events published again because the bus lost them (found by a consumer's watchdog)."
    );
    describe_counter!(
        "qingling_events_consumed_total",
        "Foreign events applied to the service's projections, by source and type."
    );
    describe_counter!(
        "qingling_consumer_heals_total",
        "Times a consumer found a hole in a source's log and asked for it again."
    );
    describe_gauge!(
        "qingling_relay_lag_events",
        "Events stored in the service's log and not yet published to JetStream."
    );
    describe_gauge!(
        "qingling_consumer_lag_events",
        "Events of a source's log not yet applied by this service, by source."
    );
    describe_gauge!(
        "qingling_leader",
        "1 while this instance holds a leader role (relay, deadlines, log), else 0."
    );
    describe_gauge!(
        "qingling_dependency_up",
        "1 while a dependency (database, nats) answers, else 0; checked every 5 seconds."
    );
    describe_gauge!(
        "qingling_open_items",
        "Open ledger items (动态台账), by district and street."
    );
    describe_counter!(
        "qingling_items_overdue_total",
        "Time limits missed (督办): items flagged overdue for response or resolution."
    );
    describe_gauge!(
        "qingling_live_streams",
        "Live dashboard streams (Server-Sent Events) open on this instance."
    );
    describe_counter!(
        "qingling_oidc_key_fetches_total",
        "Fetches of the identity provider's keys, by outcome."
    );
    describe_gauge!(
        "qingling_log_size",
        "Events in the ledger's verifiable log (leaves of its Merkle tree)."
    );
    describe_gauge!(
        "qingling_log_checkpoint_size",
        "Events covered by the latest signed checkpoint of the ledger's log."
    );
    describe_gauge!(
        "qingling_log_tamper_detected",
        "1 when the ledger's stored log disagrees with the tree it signed (nothing more is signed)."
    );
}

/// Keeps `qingling_dependency_up` current until the service stops.
pub async fn watch_dependencies(
    pool: PgPool,
    nats: async_nats::Client,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let db = tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("select 1").execute(&pool),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        metrics::gauge!("qingling_dependency_up", "dependency" => "database")
            .set(f64::from(u8::from(db)));
        metrics::gauge!("qingling_dependency_up", "dependency" => "nats")
            .set(f64::from(u8::from(crate::nats::is_connected(&nats))));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
    }
}
