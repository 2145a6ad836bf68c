//! The verifiable log, for those who do not trust the running system (CONTRACT §12):
//! `log-key` makes a signing key, `log-export` saves the log's entries as JSON lines, and
//! `verify` checks such an export against a checkpoint and the public key, offline, and a newer
//! checkpoint against an older one.

use std::io::{BufRead, Write};
use std::time::Instant;

use anyhow::{bail, Context};
use qingling_shared::tlog::{self, Frontier};
use serde_json::{json, Value};

use crate::Opts;

/// `qingling-admin log-key <name>`: a new Ed25519 key pair; the signer key on stdout (keep it in
/// the file QINGLING_LOG_KEY names), the verifier key on stderr (publish it).
pub fn log_key(args: &[String]) -> anyhow::Result<()> {
    let name = args
        .first()
        .context("log-key needs a key name, e.g. qingling.tongzhou.gov.cn/ledger")?;
    anyhow::ensure!(
        !name.is_empty() && !name.contains(['+', ' ']),
        "a key name has no spaces or plus signs"
    );
    let (signer, verifier) = tlog::generate_key(name);
    println!("{signer}");
    eprintln!("verifier key (publish it): {verifier}");
    Ok(())
}

/// `qingling-admin log-export <entries.jsonl> [--ledger URL] [--dev]`: every entry of the log as
/// `{"index", "leaf_hash", "event"}`, one per line, in order.
pub async fn log_export(args: &[String]) -> anyhow::Result<()> {
    let o = Opts::parse(args, &["--ledger", "--district"])?;
    let out = o
        .positional
        .first()
        .context("log-export needs an output file")?;
    let ledger = o
        .get("--ledger")
        .unwrap_or("http://127.0.0.1:8082")
        .trim_end_matches('/');
    let token = crate::mint(
        &crate::keys(o.dev)?,
        qingling_shared::Role::District,
        o.get("--district").unwrap_or("tongzhou"),
        "qingling-admin",
        std::time::Duration::from_secs(3600),
    );
    let http = reqwest::Client::new();
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut from = 0u64;
    let mut n = 0u64;
    loop {
        let page: Value = http
            .get(format!(
                "{ledger}/v1/ledger/log/entries?from={from}&limit=10000"
            ))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for e in page["entries"]
            .as_array()
            .context("no entries in the answer")?
        {
            serde_json::to_writer(&mut file, e)?;
            file.write_all(b"\n")?;
            n += 1;
        }
        match page["next_from"].as_u64() {
            Some(next) => from = next,
            None => break,
        }
    }
    file.flush()?;
    eprintln!("log-export: {n} entries to {out}");
    Ok(())
}

/// `qingling-admin verify <entries.jsonl> --checkpoint <file> --key <verifier key> [--key …]
/// [--old-checkpoint <file>]`: exits 1 naming the first entry that does not match.
pub fn verify(args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let o = Opts::parse(args, &["--checkpoint", "--key", "--old-checkpoint"])?;
    let entries_file = o
        .positional
        .first()
        .context("verify needs the exported entries (JSON lines)")?;
    let keys: Vec<&str> = o
        .flags
        .iter()
        .filter(|(f, _)| f == "--key")
        .map(|(_, v)| v.as_str())
        .collect();
    anyhow::ensure!(
        !keys.is_empty(),
        "verify needs --key <verifier key> (GET /v1/ledger/log/key)"
    );
    let read_note = |flag: &str| -> anyhow::Result<Option<(String, u64, tlog::Hash)>> {
        match o.get(flag) {
            None => Ok(None),
            Some(path) => {
                let note =
                    std::fs::read_to_string(path).with_context(|| format!("{flag} {path}"))?;
                Ok(Some(
                    tlog::verify_checkpoint(&note, &keys)
                        .with_context(|| format!("{flag} {path}"))?,
                ))
            }
        }
    };
    let (origin, size, root) = read_note("--checkpoint")?.context("verify needs --checkpoint")?;
    let old = read_note("--old-checkpoint")?;
    if let Some((old_origin, old_size, _)) = &old {
        if *old_origin != origin {
            bail!("the checkpoints are of two logs: {old_origin:?} and {origin:?}");
        }
        if *old_size > size {
            bail!("the old checkpoint ({old_size}) is larger than the new one ({size})");
        }
    }

    let mut computed = Frontier::default();
    let mut recorded = Frontier::default();
    let mut first_changed: Option<u64> = None;
    let mut recorded_complete = true;
    let mut old_root_from_entries = None;
    let mut old_root_recorded = None;
    let reader = std::io::BufReader::new(
        std::fs::File::open(entries_file).with_context(|| entries_file.clone())?,
    );
    for (line_no, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: Value =
            serde_json::from_str(&line).with_context(|| format!("line {}", line_no + 1))?;
        let index = entry["index"]
            .as_u64()
            .with_context(|| format!("line {}: no index", line_no + 1))?;
        if index != computed.size {
            fail(json!({"ok": false, "entry": computed.size,
                "reason": format!("entry {} is missing: line {} holds entry {index}", computed.size, line_no + 1)}));
        }
        if index >= size {
            break;
        }
        let leaf = tlog::leaf_hash(&tlog::canonical_value(&entry["event"]));
        computed.push(leaf);
        match entry["leaf_hash"].as_str().and_then(tlog::from_b64) {
            Some(h) => {
                if h != leaf && first_changed.is_none() {
                    first_changed = Some(index);
                }
                recorded.push(h);
            }
            None => recorded_complete = false,
        }
        if let Some((_, old_size, _)) = &old {
            if computed.size == *old_size {
                old_root_from_entries = Some(tlog::tree_root(&computed));
                old_root_recorded = recorded_complete.then(|| tlog::tree_root(&recorded));
            }
        }
    }
    if computed.size < size {
        fail(json!({"ok": false, "entry": computed.size,
            "reason": format!("the export ends at entry {}: the checkpoint covers {size}", computed.size)}));
    }
    let ms = started.elapsed().as_millis() as u64;
    if tlog::tree_root(&computed) != root {
        let authentic = recorded_complete && tlog::tree_root(&recorded) == root;
        match (first_changed, authentic) {
            (Some(i), true) => fail(json!({"ok": false, "entry": i,
                "reason": format!("entry {i} does not match the log: its event differs from what the signed tree holds")})),
            _ => fail(json!({"ok": false, "entry": Value::Null,
                "reason": "the entries do not give the checkpoint's root: this export is not the signed log"})),
        }
    }
    if let Some((_, old_size, old_root)) = &old {
        if old_root_from_entries != Some(*old_root) && *old_size > 0 {
            let which = match (old_root_recorded == Some(*old_root), first_changed) {
                (true, Some(i)) => json!(i),
                _ => Value::Null,
            };
            fail(json!({"ok": false, "entry": which,
                "reason": format!("the log was rewritten: its first {old_size} entries no longer give the old checkpoint's root")}));
        }
    }
    println!(
        "{}",
        json!({"ok": true, "origin": origin, "entries": size, "root": tlog::b64(&root),
               "old_checkpoint": old.map(|o| o.1), "ms": ms})
    );
    Ok(())
}

fn fail(report: Value) -> ! {
    println!("{report}");
    eprintln!(
        "verify: {}",
        report["reason"].as_str().unwrap_or("mismatch")
    );
    std::process::exit(1)
}
