//! Tokens from the district's OpenID Connect provider (统一身份认证): the provider's keys, from its
//! discovery document and JWKS, cached; refreshed when a token names a key not yet known (at most
//! once per `QINGLING_OIDC_REFRESH_INTERVAL`, so made-up key ids cannot make a service hammer the
//! provider) and in the background once they are older than `QINGLING_OIDC_JWKS_TTL`. Keys once
//! fetched keep working while the provider is down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

/// How a service trusts the provider (`QINGLING_OIDC_*`).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// `iss` of its tokens, and where `/.well-known/openid-configuration` is.
    pub issuer: String,
    /// The `aud` a token must name (`QINGLING_OIDC_AUDIENCE`, default `qingling`).
    pub audience: String,
    pub role_claim: String,
    pub org_claim: String,
    pub name_claim: String,
    /// The console's public client (`QINGLING_OIDC_CLIENT_ID`, default `qingling-console`).
    pub client_id: String,
    /// What the console asks for (`QINGLING_OIDC_SCOPE`).
    pub scope: String,
    /// The resource indicator (RFC 8707) the console asks tokens for, for providers that issue
    /// an audience per resource (`QINGLING_OIDC_RESOURCE`; none by default).
    pub resource: Option<String>,
    /// The least time between two fetches the services start for an unknown key.
    pub refresh_interval: Duration,
    /// How old keys may grow before they are fetched again in the background.
    pub jwks_ttl: Duration,
}

impl OidcConfig {
    /// `None` unless `QINGLING_OIDC_ISSUER` is set.
    pub fn from_env() -> anyhow::Result<Option<OidcConfig>> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let Some(issuer) = var("QINGLING_OIDC_ISSUER") else {
            return Ok(None);
        };
        let duration = |n: &str, default: Duration| -> anyhow::Result<Duration> {
            match var(n) {
                None => Ok(default),
                Some(v) => humantime::parse_duration(v.trim()).with_context(|| format!("{n}={v}")),
            }
        };
        Ok(Some(OidcConfig {
            issuer: issuer.trim().trim_end_matches('/').to_string(),
            audience: var("QINGLING_OIDC_AUDIENCE").unwrap_or_else(|| "qingling".into()),
            role_claim: var("QINGLING_OIDC_ROLE_CLAIM").unwrap_or_else(|| "qingling_role".into()),
            org_claim: var("QINGLING_OIDC_ORG_CLAIM").unwrap_or_else(|| "qingling_org".into()),
            name_claim: var("QINGLING_OIDC_NAME_CLAIM").unwrap_or_else(|| "name".into()),
            client_id: var("QINGLING_OIDC_CLIENT_ID").unwrap_or_else(|| "qingling-console".into()),
            scope: var("QINGLING_OIDC_SCOPE").unwrap_or_else(|| "openid profile qingling".into()),
            resource: var("QINGLING_OIDC_RESOURCE"),
            refresh_interval: duration("QINGLING_OIDC_REFRESH_INTERVAL", Duration::from_secs(30))?,
            jwks_ttl: duration("QINGLING_OIDC_JWKS_TTL", Duration::from_secs(600))?,
        }))
    }

    /// The issuer's origin (`scheme://host[:port]`), for the console's page policy.
    pub fn issuer_origin(&self) -> String {
        let rest = self.issuer.split_once("://");
        match rest {
            Some((scheme, r)) => format!("{scheme}://{}", r.split('/').next().unwrap_or(r)),
            None => self.issuer.clone(),
        }
    }
}

/// A provider key: the algorithm it signs with and the key to check it.
#[derive(Clone)]
pub struct ProviderKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, ProviderKey>,
    /// Keys without a `kid` (a provider with one key may leave it out).
    unnamed: Vec<ProviderKey>,
    fetched_at: Option<Instant>,
}

/// The provider as a service sees it.
pub struct Oidc {
    pub config: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// When a fetch was last started; held while fetching, so one fetch serves all waiters.
    last_fetch: Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Only these: the issue's RS256 and ES256 (never HS256, which is the shared secret's).
const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

impl Oidc {
    /// Fetches the keys once; a provider that is down at start-up is tried again when a token
    /// needs it.
    pub async fn start(config: OidcConfig) -> anyhow::Result<Arc<Oidc>> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()?;
        let oidc = Arc::new(Oidc {
            config,
            http,
            keys: RwLock::new(KeySet::default()),
            last_fetch: Mutex::new(None),
        });
        if let Err(e) = oidc.fetch().await {
            tracing::warn!(issuer = %oidc.config.issuer, error = %format!("{e:#}"), "the identity provider's keys are not available yet");
        }
        Ok(oidc)
    }

    /// The key a token names, fetching the provider's keys again if it is unknown (rate-limited).
    pub async fn key(self: &Arc<Self>, kid: Option<&str>, alg: Algorithm) -> Option<ProviderKey> {
        if let Some(k) = self.cached(kid, alg).await {
            let stale = self
                .keys
                .read()
                .await
                .fetched_at
                .is_none_or(|at| at.elapsed() > self.config.jwks_ttl);
            if stale {
                let me = self.clone();
                tokio::spawn(async move { me.fetch_if_allowed().await });
            }
            return Some(k);
        }
        self.fetch_if_allowed().await;
        self.cached(kid, alg).await
    }

    async fn cached(&self, kid: Option<&str>, alg: Algorithm) -> Option<ProviderKey> {
        let keys = self.keys.read().await;
        let found = match kid {
            Some(kid) => keys.by_kid.get(kid).cloned(),
            None => {
                let mut all = keys.unnamed.iter().chain(keys.by_kid.values());
                let only = all.next().cloned();
                only.filter(|_| all.next().is_none())
            }
        };
        // A key signs with its own algorithm only (no RS256 key checking an ES256 claim).
        found.filter(|k| k.alg == alg)
    }

    async fn fetch_if_allowed(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.config.refresh_interval) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.fetch().await {
            // The keys already known stay in use.
            tracing::warn!(issuer = %self.config.issuer, error = %format!("{e:#}"), "fetching the identity provider's keys failed");
        }
    }

    async fn fetch(&self) -> anyhow::Result<()> {
        let result = self.fetch_unmetered().await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        metrics::counter!("qingling_oidc_key_fetches_total", "outcome" => outcome).increment(1);
        result
    }

    async fn fetch_unmetered(&self) -> anyhow::Result<()> {
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
        let d: Discovery = self
            .http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
            .with_context(|| format!("{url} is not a discovery document"))?;
        anyhow::ensure!(
            d.issuer.trim_end_matches('/') == self.config.issuer,
            "the discovery document names issuer {:?}, not {:?}",
            d.issuer,
            self.config.issuer
        );
        let set: JwkSet = self
            .http
            .get(&d.jwks_uri)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
            .with_context(|| format!("{} is not a JWK set", d.jwks_uri))?;
        let mut keys = KeySet {
            fetched_at: Some(Instant::now()),
            ..KeySet::default()
        };
        for jwk in &set.keys {
            let Some(k) = provider_key(jwk) else { continue };
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), k);
                }
                None => keys.unnamed.push(k),
            }
        }
        tracing::info!(issuer = %self.config.issuer, keys = keys.by_kid.len() + keys.unnamed.len(), "identity provider keys fetched");
        *self.keys.write().await = keys;
        Ok(())
    }
}

/// A signing key of the set, with the one algorithm it is for.
fn provider_key(jwk: &Jwk) -> Option<ProviderKey> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm, PublicKeyUse};
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return None,
    };
    debug_assert!(ALGORITHMS.contains(&alg));
    Some(ProviderKey {
        alg,
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

pub fn is_provider_algorithm(alg: Algorithm) -> bool {
    ALGORITHMS.contains(&alg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuers_origin_is_its_scheme_and_host() {
        let mut c = OidcConfig {
            issuer: "https://idp.example.gov.cn/realms/tongzhou".into(),
            audience: "qingling".into(),
            role_claim: "r".into(),
            org_claim: "o".into(),
            name_claim: "n".into(),
            client_id: "c".into(),
            scope: "openid".into(),
            resource: None,
            refresh_interval: Duration::from_secs(1),
            jwks_ttl: Duration::from_secs(1),
        };
        assert_eq!(c.issuer_origin(), "https://idp.example.gov.cn");
        c.issuer = "http://127.0.0.1:9000".into();
        assert_eq!(c.issuer_origin(), "http://127.0.0.1:9000");
    }
}
