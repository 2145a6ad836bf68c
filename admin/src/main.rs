//! `qingling-admin`: operator tasks.
//! - `token`: mint a bearer token for a role and org;
//! - `rebuild`: rebuild projections from the logs (runs `qingling-<service> rebuild`);
//! - `import`: register the open rows of an existing ledger (CSV or .xlsx) as items;
//! - `export`: the journal as .xlsx;
//! - `check`: recompute invariants from the logs and report any mismatch, the verifiable log's
//!   agreement with its events included;
//! - `log-key`, `log-export`, `verify`: the verifiable log, checked offline.

use qingling_events::{closure::types::*, intake::types::*, ledger::types::*};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::NaiveDate;
use qingling_shared::{config::DEV_JWT_SECRET, Claims, JwtKeys, Orgs, Role};
use serde_json::{json, Value};

mod check;
mod import;
mod verify;

use check::check;
use import::import;

const USAGE: &str = "usage:
  qingling-admin token --role <operator|street|reviewer|district> --org <code|*> [--sub <id>] [--ttl <12h>] [--dev]
  qingling-admin rebuild [intake|ledger|closure|all]          (DATABASE_URL)
  qingling-admin import <ledger.csv|ledger.xlsx> [--district tongzhou] [--ledger http://127.0.0.1:8082] [--dev]
  qingling-admin export <journal.xlsx> [--district tongzhou] [--ledger http://127.0.0.1:8082] [--dev]
  qingling-admin check                                          (DATABASE_URL)
  qingling-admin log-key <key name>                             (signer key to stdout, verifier key to stderr)
  qingling-admin log-export <entries.jsonl> [--ledger http://127.0.0.1:8082] [--district tongzhou] [--dev]
  qingling-admin verify <entries.jsonl> --checkpoint <file> --key <verifier key> [--key …] [--old-checkpoint <file>]
The token secret is QINGLING_JWT_SECRET, or the development secret with --dev or QINGLING_DEV=1.";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("token") => token(rest),
        Some("rebuild") => rebuild(rest),
        Some("import") => rt.block_on(import(rest)),
        Some("export") => rt.block_on(export(rest)),
        Some("check") => rt.block_on(check()),
        Some("log-key") => verify::log_key(rest),
        Some("log-export") => rt.block_on(verify::log_export(rest)),
        Some("verify") => verify::verify(rest),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

/// `--flag value` options and the positional arguments.
struct Opts {
    flags: Vec<(String, String)>,
    dev: bool,
    positional: Vec<String>,
}

impl Opts {
    fn parse(args: &[String], with_value: &[&str]) -> anyhow::Result<Opts> {
        let mut o = Opts {
            flags: vec![],
            dev: false,
            positional: vec![],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--dev" {
                o.dev = true;
            } else if with_value.contains(&a.as_str()) {
                let v = it
                    .next()
                    .with_context(|| format!("{a} needs a value\n{USAGE}"))?;
                o.flags.push((a.clone(), v.clone()));
            } else if a.starts_with("--") {
                bail!("unknown option {a}\n{USAGE}");
            } else {
                o.positional.push(a.clone());
            }
        }
        o.dev |= std::env::var("QINGLING_DEV").is_ok_and(|v| v == "1");
        Ok(o)
    }

    fn get(&self, flag: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }
}

fn keys(dev: bool) -> anyhow::Result<JwtKeys> {
    let secret = match std::env::var("QINGLING_JWT_SECRET") {
        Ok(s) if !s.is_empty() => s,
        _ if dev => DEV_JWT_SECRET.to_string(),
        _ => bail!("set QINGLING_JWT_SECRET, or pass --dev for the development secret"),
    };
    Ok(JwtKeys::new(secret.as_bytes()))
}

fn mint(keys: &JwtKeys, role: Role, org: &str, sub: &str, ttl: Duration) -> String {
    keys.mint(&Claims::new(
        sub,
        role,
        org,
        chrono::Utc::now().timestamp() + ttl.as_secs() as i64,
    ))
}

fn token(args: &[String]) -> anyhow::Result<()> {
    let o = Opts::parse(args, &["--role", "--org", "--sub", "--ttl"])?;
    let role: Role = serde_json::from_value(Value::String(o.get("--role").context(USAGE)?.into()))
        .context("unknown role")?;
    let org = o.get("--org").context(USAGE)?;
    let sub = o
        .get("--sub")
        .map(String::from)
        .unwrap_or_else(|| format!("{}-{org}", role.as_str()));
    let ttl = humantime::parse_duration(o.get("--ttl").unwrap_or("12h")).context("bad --ttl")?;
    println!("{}", mint(&keys(o.dev)?, role, org, &sub, ttl));
    Ok(())
}

/// The service binaries sit next to this one (release or debug build, or an install).
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn rebuild(args: &[String]) -> anyhow::Result<()> {
    let o = Opts::parse(args, &[])?;
    let which = o.positional.first().map(String::as_str).unwrap_or("all");
    let services: Vec<&str> = match which {
        "all" => vec!["intake", "ledger", "closure"],
        s @ ("intake" | "ledger" | "closure") => vec![s],
        other => bail!("unknown service {other}\n{USAGE}"),
    };
    for svc in services {
        // The service's own rebuild draws the progress bar and prints its figures.
        let status = std::process::Command::new(sibling(&format!("qingling-{svc}")))
            .arg("rebuild")
            .status()
            .with_context(|| format!("cannot run qingling-{svc} rebuild"))?;
        if !status.success() {
            bail!("qingling-{svc} rebuild failed ({status})");
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------ export

async fn export(args: &[String]) -> anyhow::Result<()> {
    let o = Opts::parse(args, &["--district", "--ledger"])?;
    let path = PathBuf::from(o.positional.first().context(USAGE)?);
    let district = o.get("--district").unwrap_or("tongzhou");
    let ledger = o
        .get("--ledger")
        .map(String::from)
        .or_else(|| std::env::var("QINGLING_LEDGER_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8082".into());
    let token = mint(
        &keys(o.dev)?,
        Role::District,
        district,
        "qingling-admin-export",
        Duration::from_secs(600),
    );
    let r = reqwest::Client::new()
        .get(format!(
            "{ledger}/v1/ledger/entries?district={district}&format=xlsx"
        ))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach the ledger at {ledger}"))?;
    if !r.status().is_success() {
        bail!("the ledger answered {}: {}", r.status(), r.text().await?);
    }
    let bytes = r.bytes().await?;
    std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "export: the journal of {district} written to {} ({} bytes)",
        path.display(),
        bytes.len()
    );
    Ok(())
}
