use std::time::Duration;

use anyhow::{bail, Context};

/// The fixed secret used with `QINGLING_DEV=1`. Never for production.
pub const DEV_JWT_SECRET: &str = "qingling-dev-secret-do-not-use-in-production";

/// Time limits for 响应 (acknowledge) and 办结 (write-off), normal and urgent.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub respond_within: Duration,
    pub respond_within_urgent: Duration,
    pub resolve_within: Duration,
    pub resolve_within_urgent: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            respond_within: Duration::from_secs(24 * 3600),
            respond_within_urgent: Duration::from_secs(2 * 3600),
            resolve_within: Duration::from_secs(7 * 24 * 3600),
            resolve_within_urgent: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    pub nats_url: String,
    pub nats_prefix: String,
    pub nats_replicas: usize,
    /// HS256 secret (`QINGLING_JWT_SECRET`); none when only the identity provider signs tokens.
    pub jwt_secret: Option<Vec<u8>>,
    /// The district's identity provider (`QINGLING_OIDC_ISSUER` and the rest).
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// The longest a token may still be valid for (`QINGLING_MAX_TOKEN_TTL`, default 30 days).
    pub max_token_ttl: Duration,
    pub dev: bool,
    pub limits: Limits,
    pub listen_addr: String,
}

impl Config {
    /// Reads the common environment of CONTRACT §1; `addr_var` names the service's own
    /// listen-address variable.
    pub fn from_env(addr_var: &str, default_addr: &str) -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let dev = var("QINGLING_DEV").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        let oidc = crate::oidc::OidcConfig::from_env()?;
        let jwt_secret = match var("QINGLING_JWT_SECRET") {
            Some(s) if s.len() < crate::auth::MIN_SECRET_BYTES => bail!(
                "QINGLING_JWT_SECRET is {} bytes: at least {} are needed",
                s.len(),
                crate::auth::MIN_SECRET_BYTES
            ),
            Some(s) => Some(s.into_bytes()),
            None if dev => Some(DEV_JWT_SECRET.as_bytes().to_vec()),
            None if oidc.is_some() => None,
            None => bail!(
                "QINGLING_JWT_SECRET is not set (set QINGLING_OIDC_ISSUER to trust an identity provider, or QINGLING_DEV=1 to use the development secret)"
            ),
        };
        let duration = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            match var(name) {
                Some(v) => humantime::parse_duration(&v)
                    .with_context(|| format!("{name}={v:?} is not a duration like 90s, 2h or 7d")),
                None => Ok(default),
            }
        };
        let d = Limits::default();
        let limits = Limits {
            respond_within: duration("QINGLING_RESPOND_WITHIN", d.respond_within)?,
            respond_within_urgent: duration(
                "QINGLING_RESPOND_WITHIN_URGENT",
                d.respond_within_urgent,
            )?,
            resolve_within: duration("QINGLING_RESOLVE_WITHIN", d.resolve_within)?,
            resolve_within_urgent: duration(
                "QINGLING_RESOLVE_WITHIN_URGENT",
                d.resolve_within_urgent,
            )?,
        };
        let prefix = var("QINGLING_NATS_PREFIX").unwrap_or_else(|| "qingling".into());
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bail!("QINGLING_NATS_PREFIX={prefix:?} may hold only letters, digits, '_' and '-'");
        }
        let nats_replicas = match var("QINGLING_NATS_REPLICAS") {
            Some(v) => v
                .parse()
                .context("QINGLING_NATS_REPLICAS must be a number")?,
            None => 1,
        };
        let max_token_ttl = duration("QINGLING_MAX_TOKEN_TTL", crate::auth::DEFAULT_MAX_TOKEN_TTL)?;
        Ok(Self {
            max_token_ttl,
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/qingling".into()),
            nats_url: var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            nats_prefix: prefix,
            nats_replicas,
            jwt_secret,
            oidc,
            dev,
            limits,
            listen_addr: var(addr_var).unwrap_or_else(|| default_addr.into()),
        })
    }
}
