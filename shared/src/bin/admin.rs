//! `qingling-admin`: operator tasks. `token` mints a bearer token for local use.

use anyhow::{bail, Context};
use qingling_shared::{config::DEV_JWT_SECRET, Claims, JwtKeys, Role};

const USAGE: &str = "usage: qingling-admin token --role <operator|street|reviewer|district> --org <code|*> [--sub <id>] [--ttl <duration, default 12h>] [--dev]
  The secret is QINGLING_JWT_SECRET, or the development secret with --dev or QINGLING_DEV=1.";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("token") if args.iter().any(|a| a == "--help" || a == "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("token") => token(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

fn token(args: &[String]) -> anyhow::Result<()> {
    let (mut role, mut org, mut sub, mut ttl, mut dev) =
        (None, None, None, "12h".to_string(), false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--role" => role = Some(val()?),
            "--org" => org = Some(val()?),
            "--sub" => sub = Some(val()?),
            "--ttl" => ttl = val()?,
            "--dev" => dev = true,
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    let role: Role = serde_json::from_value(serde_json::Value::String(role.context(USAGE)?))
        .context("unknown role")?;
    let org = org.context(USAGE)?;
    let sub = sub.unwrap_or_else(|| format!("{}-{org}", role.as_str()));
    let ttl = humantime::parse_duration(&ttl).context("bad --ttl")?;
    dev |= std::env::var("QINGLING_DEV").is_ok_and(|v| v == "1");
    let secret = match std::env::var("QINGLING_JWT_SECRET") {
        Ok(s) if !s.is_empty() => s,
        _ if dev => DEV_JWT_SECRET.to_string(),
        _ => bail!("set QINGLING_JWT_SECRET, or pass --dev for the development secret"),
    };
    let exp = chrono::Utc::now().timestamp() + ttl.as_secs() as i64;
    println!(
        "{}",
        JwtKeys::new(secret.as_bytes()).mint(&Claims {
            sub,
            role,
            org,
            exp
        })
    );
    Ok(())
}
