//! The rebuild benchmarks: every service from its own run's history, and the ledger from a
//! generated history.

use super::history::{generate, Svc};
use super::*;

/// `qingling-<service> rebuild` against `url`; the figures it prints.
pub(crate) async fn rebuild_service(service: &str, url: &str) -> anyhow::Result<Value> {
    let out =
        tokio::process::Command::new(qingling_tests::bin_dir().join(format!("qingling-{service}")))
            .arg("rebuild")
            .env("DATABASE_URL", url)
            .env(
                "RUST_LOG",
                "warn,qingling_intake::replay=info,qingling_ledger::replay=info,qingling_closure::replay=info",
            )
            .output()
            .await?;
    let log = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(out.status.success(), "{log}");
    // Where the replay's time went.
    for line in log
        .split(['\n', '\r'])
        .filter(|l| l.contains("replayed the log"))
    {
        let plain: String = strip_ansi(line);
        eprintln!("    {}", plain.trim());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// `s` without its terminal colour codes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Each service's rebuild over its part of a generated history of `events` events (see
/// [`super::history`]), each in a scratch database of its own.
pub(crate) async fn rebuild_generated(events: u64) -> anyhow::Result<Value> {
    let mut all = serde_json::Map::new();
    for service in [Svc::Intake, Svc::Ledger, Svc::Closure] {
        let scratch = TestEnv::new(&[]);
        let url = scratch.database_url();
        // The first run creates the database and the schema (an empty rebuild).
        rebuild_service(service.name(), &url).await?;
        let mut c = scratch.db(service.name()).await;
        let started = Instant::now();
        generate(&mut c, service, events).await?;
        let generated_s = started.elapsed().as_secs_f64();
        drop(c);
        let stats = rebuild_service(service.name(), &url).await?;
        eprintln!(
            "  rebuild of a generated history, {}: {:.0} events/s ({} own + {} applied foreign events in {:.1} s, peak {} MiB; generated in {:.1} s)",
            service.name(),
            stats["events_per_second"].as_f64().unwrap_or(0.0),
            stats["own_events"],
            stats["foreign_events"],
            stats["seconds"].as_f64().unwrap_or(0.0),
            stats["peak_rss_mib"],
            generated_s,
        );
        all.insert(service.name().into(), stats);
        // QINGLING_BENCH_KEEP=1 keeps the generated databases, to profile a rebuild over them.
        if std::env::var("QINGLING_BENCH_KEEP").as_deref() == Ok("1") {
            eprintln!("    kept {url}");
            std::mem::forget(scratch);
        } else {
            scratch.cleanup().await;
        }
    }
    Ok(Value::Object(all))
}
