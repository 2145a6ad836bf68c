//! Bearer-token auth (CONTRACT §2): HS256 JWTs with `sub`, `role`, `org`, `exp`.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::oidc::Oidc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 12345 hotline operator (接线员).
    Operator,
    /// A street office (街道) or township (乡镇).
    Street,
    /// District reviewer of write-off requests.
    Reviewer,
    /// District office, a read-only watcher.
    District,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Operator, Role::Street, Role::Reviewer, Role::District]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Street => "street",
            Role::Reviewer => "reviewer",
            Role::District => "district",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub org: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The person's display name, shown beside `sub` in histories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Claims {
    pub fn new(sub: &str, role: Role, org: &str, exp: i64) -> Claims {
        Claims {
            sub: sub.into(),
            role,
            org: org.into(),
            exp,
            iat: None,
            nbf: None,
            name: None,
        }
    }
}

/// How far ahead of this clock an issuer's may be (`iat`, `nbf`).
const CLOCK_SKEW: i64 = 60;

/// The shortest signing secret a service accepts (CONTRACT §13).
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest a token may still be valid for, unless `QINGLING_MAX_TOKEN_TTL` says otherwise.
pub const DEFAULT_MAX_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// What checks a bearer token: the shared secret's HS256 tokens (machines, development, tests),
/// the district's identity provider's RS256/ES256 tokens (people), or both.
#[derive(Clone)]
pub struct JwtKeys(Arc<Keys>);

struct Keys {
    shared: Option<(EncodingKey, DecodingKey)>,
    max_ttl: i64,
    provider: Option<Arc<Oidc>>,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        Self::with_max_ttl(secret, DEFAULT_MAX_TOKEN_TTL)
    }

    /// Keys that refuse a token valid for longer than `max_ttl` from now.
    pub fn with_max_ttl(secret: &[u8], max_ttl: std::time::Duration) -> Self {
        Self::from_parts(Some(secret), max_ttl, None)
    }

    /// The shared secret (if any) and the identity provider (if any).
    pub fn from_parts(
        secret: Option<&[u8]>,
        max_ttl: std::time::Duration,
        provider: Option<Arc<Oidc>>,
    ) -> Self {
        Self(Arc::new(Keys {
            shared: secret.map(|s| (EncodingKey::from_secret(s), DecodingKey::from_secret(s))),
            max_ttl: max_ttl.as_secs().min(i64::MAX as u64) as i64,
            provider,
        }))
    }

    /// The identity provider, if one is trusted.
    pub fn provider(&self) -> Option<&Arc<Oidc>> {
        self.0.provider.as_ref()
    }

    /// An HS256 token. Panics without a shared secret (the admin tool and tests have one).
    pub fn mint(&self, claims: &Claims) -> String {
        let (key, _) = self
            .0
            .shared
            .as_ref()
            .expect("minting needs QINGLING_JWT_SECRET");
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, key)
            .expect("HS256 signing cannot fail")
    }

    /// Checks an HS256 token signed with the shared secret.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let Some((_, key)) = &self.0.shared else {
            return Err(ApiError::Unauthorized(
                "tokens signed with a shared secret are not accepted here: sign in with the identity provider".into(),
            ));
        };
        let mut v = Validation::new(Algorithm::HS256);
        // Expired means expired (CONTRACT §2): no grace period.
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &v)
            .map(|d| d.claims)
            .map_err(refusal)?;
        self.check_times(claims.exp, claims.iat, claims.nbf)?;
        check_identity(&claims.sub, claims.role, &claims.org)?;
        Ok(claims)
    }

    fn check_times(&self, exp: i64, iat: Option<i64>, nbf: Option<i64>) -> Result<(), ApiError> {
        let now = chrono::Utc::now().timestamp();
        let refuse = |what: &str| Err(ApiError::Unauthorized(format!("the bearer token {what}")));
        if exp > now.saturating_add(self.0.max_ttl) {
            return refuse("is valid for longer than this service accepts");
        }
        if iat.into_iter().chain(nbf).any(|t| t > now + CLOCK_SKEW) {
            return refuse("is not valid yet (iat or nbf lies in the future)");
        }
        Ok(())
    }

    /// The caller a bearer token names: by its algorithm, checked with the shared secret (HS256)
    /// or with the identity provider's keys (RS256, ES256). A refusal is logged with its reason,
    /// never with the token.
    pub async fn caller(&self, token: &str) -> Result<Caller, ApiError> {
        let result = self.caller_unlogged(token).await;
        if let Err(e) = &result {
            tracing::info!(refusal = %e, "bearer token refused");
        }
        result
    }

    async fn caller_unlogged(&self, token: &str) -> Result<Caller, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            ApiError::Unauthorized(
                "the bearer token is malformed or its algorithm is not accepted".into(),
            )
        })?;
        if header.alg == Algorithm::HS256 {
            let claims = self.verify(token)?;
            return Ok(Caller {
                exp: claims.exp,
                sub: claims.sub,
                role: claims.role,
                org: claims.org,
                name: claims
                    .name
                    .map(|n| display_name(&n))
                    .filter(|n| !n.is_empty()),
            });
        }
        let Some(provider) = &self.0.provider else {
            return Err(ApiError::Unauthorized(format!(
                "{:?} tokens are not accepted here (no identity provider is configured)",
                header.alg
            )));
        };
        if !crate::oidc::is_provider_algorithm(header.alg) {
            return Err(ApiError::Unauthorized(format!(
                "the bearer token's algorithm {:?} is not accepted (RS256, ES256)",
                header.alg
            )));
        }
        let key = provider
            .key(header.kid.as_deref(), header.alg)
            .await
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "the bearer token is signed with a key the identity provider does not publish"
                        .into(),
                )
            })?;
        let cfg = &provider.config;
        let mut v = Validation::new(key.alg);
        v.leeway = 0;
        v.set_issuer(&[&cfg.issuer]);
        v.set_audience(&[&cfg.audience]);
        v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let claims =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &v)
                .map(|d| d.claims)
                .map_err(refusal)?;
        let int = |n: &str| claims.get(n).and_then(serde_json::Value::as_i64);
        let exp = int("exp").ok_or_else(|| {
            ApiError::Unauthorized("the bearer token's exp is not a number".into())
        })?;
        self.check_times(exp, int("iat"), int("nbf"))?;
        let sub = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ApiError::Unauthorized("the bearer token lacks sub".into()))?
            .to_string();
        let forbidden = |what: String| {
            ApiError::Forbidden(format!(
            "the identity provider's token {what}: ask the administrator of the identity provider to give this account a Qingling role and organisation"
        ))
        };
        let role = match claims.get(&cfg.role_claim) {
            None => return Err(forbidden(format!("carries no {} claim", cfg.role_claim))),
            Some(serde_json::Value::String(r)) => Role::parse(r).ok_or_else(|| {
                forbidden(format!(
                    "claims role {r:?} in {}, which is none of operator, street, reviewer, district",
                    cfg.role_claim
                ))
            })?,
            Some(_) => return Err(forbidden(format!("has a {} claim that is not a string", cfg.role_claim))),
        };
        let org = match claims.get(&cfg.org_claim) {
            None => return Err(forbidden(format!("carries no {} claim", cfg.org_claim))),
            Some(serde_json::Value::String(o)) if !o.trim().is_empty() => o.clone(),
            Some(_) => {
                return Err(forbidden(format!(
                    "has a {} claim that is not an organisation code",
                    cfg.org_claim
                )))
            }
        };
        check_identity(&sub, role, &org)?;
        let name = claims
            .get(&cfg.name_claim)
            .and_then(|v| v.as_str())
            .map(display_name)
            .filter(|n| !n.is_empty());
        Ok(Caller {
            sub,
            role,
            org,
            exp,
            name,
        })
    }
}

fn refusal(e: jsonwebtoken::errors::Error) -> ApiError {
    use jsonwebtoken::errors::ErrorKind;
    ApiError::Unauthorized(
        match e.kind() {
            ErrorKind::ExpiredSignature => "the bearer token has expired",
            ErrorKind::ImmatureSignature => "the bearer token is not valid yet",
            ErrorKind::InvalidSignature => "the bearer token's signature is not valid",
            ErrorKind::InvalidIssuer => "the bearer token is from another issuer",
            ErrorKind::InvalidAudience => "the bearer token is meant for another audience",
            ErrorKind::InvalidAlgorithm => "the bearer token's algorithm does not match its key",
            _ => "the bearer token is malformed or its claims are invalid",
        }
        .into(),
    )
}

/// The checks every token's identity passes, whoever signed it.
fn check_identity(sub: &str, role: Role, org: &str) -> Result<(), ApiError> {
    if sub.trim().is_empty() || org.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "the bearer token lacks sub or org".into(),
        ));
    }
    if [sub, org].iter().any(|s| s.chars().any(char::is_control)) {
        return Err(ApiError::Unauthorized(
            "the bearer token holds control characters in sub or org".into(),
        ));
    }
    // `*` covers every district, which only a hotline operator may.
    if org == "*" && role != Role::Operator {
        return Err(ApiError::Forbidden(format!(
            "a {} may not hold org \"*\"",
            role.as_str()
        )));
    }
    Ok(())
}

/// A person's name as events and histories show it: no control characters, at most 100 characters.
fn display_name(n: &str) -> String {
    n.chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect::<String>()
        .trim()
        .to_string()
}

/// The authenticated caller of a request. Handlers take it as an argument.
#[derive(Debug, Clone)]
pub struct Caller {
    pub sub: String,
    pub role: Role,
    pub org: String,
    /// When the token expires (Unix seconds): a live stream ends then.
    pub exp: i64,
    /// The display name the token gives, if any.
    pub name: Option<String>,
}

impl Caller {
    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            let allowed: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::Forbidden(format!(
                "role {} may not do this (allowed: {})",
                self.role.as_str(),
                allowed.join(", ")
            )))
        }
    }

    /// Whether the caller's org covers a street of a district: a street office only its own street,
    /// reviewers, the district office and district operators their district, `*` operators all.
    pub fn covers(&self, district: &str, street: &str) -> bool {
        match self.role {
            Role::Street => self.org == street,
            Role::Operator => self.org == "*" || self.org == district,
            Role::Reviewer | Role::District => self.org == district,
        }
    }

    /// Whether the caller may see a whole district (every street of it).
    pub fn covers_district(&self, district: &str) -> bool {
        match self.role {
            Role::Street => false,
            Role::Operator => self.org == "*" || self.org == district,
            Role::Reviewer | Role::District => self.org == district,
        }
    }

    /// Which street a read is narrowed to: a street office always to its own, and asking for
    /// another is refused (403); other roles to the street they ask for, if any (whether it is
    /// theirs to read is the caller's district's question).
    /// `verb` says what the read is, for the refusal: `list`, `read`.
    pub fn street_scope(
        &self,
        verb: &str,
        asked: Option<String>,
    ) -> Result<Option<String>, ApiError> {
        let asked = asked.filter(|s| !s.is_empty());
        match (self.role, asked) {
            (Role::Street, Some(st)) if st != self.org => Err(ApiError::Forbidden(format!(
                "street {} may not {verb} street {st}",
                self.org
            ))),
            (Role::Street, _) => Ok(Some(self.org.clone())),
            (_, asked) => Ok(asked),
        }
    }

    pub fn ensure_covers(&self, district: &str, street: &str) -> Result<(), ApiError> {
        if self.covers(district, street) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{} {} may not act on street {street} of district {district}",
                self.role.as_str(),
                self.org
            )))
        }
    }
}

impl Caller {
    /// The caller of a request bearing `Authorization: Bearer <token>`.
    pub async fn from_headers(
        keys: &JwtKeys,
        headers: &axum::http::HeaderMap,
    ) -> Result<Caller, ApiError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthorized("an Authorization: Bearer token is required".into())
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be 'Bearer <token>'".into())
            })?;
        keys.caller(token).await
    }

    pub async fn from_token(keys: &JwtKeys, token: &str) -> Result<Caller, ApiError> {
        keys.caller(token).await
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    JwtKeys: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Caller::from_headers(&JwtKeys::from_ref(state), &parts.headers).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: Role, org: &str, exp: i64) -> Claims {
        Claims::new("u1", role, org, exp)
    }

    fn caller(role: Role, org: &str) -> Caller {
        Caller {
            sub: "u1".into(),
            role,
            org: org.into(),
            exp: i64::MAX,
            name: None,
        }
    }

    #[test]
    fn a_street_office_reads_its_own_street_only() {
        let street = caller(Role::Street, "jiukeshu");
        let own = Some("jiukeshu".to_string());
        assert_eq!(street.street_scope("read", None).unwrap(), own);
        assert_eq!(
            street.street_scope("read", Some(String::new())).unwrap(),
            own
        );
        assert_eq!(street.street_scope("read", own.clone()).unwrap(), own);
        assert!(matches!(
            street.street_scope("read", Some("songzhuang".into())),
            Err(ApiError::Forbidden(_))
        ));
        for role in [Role::Operator, Role::Reviewer, Role::District] {
            let c = caller(role, "tongzhou");
            assert_eq!(c.street_scope("read", None).unwrap(), None);
            assert_eq!(
                c.street_scope("read", Some("songzhuang".into()))
                    .unwrap()
                    .as_deref(),
                Some("songzhuang")
            );
        }
    }

    #[test]
    fn items_are_covered_by_their_street_and_district() {
        assert!(caller(Role::Street, "jiukeshu").covers("tongzhou", "jiukeshu"));
        assert!(!caller(Role::Street, "jiukeshu").covers("tongzhou", "songzhuang"));
        for role in [Role::Reviewer, Role::District] {
            assert!(caller(role, "tongzhou").covers("tongzhou", "songzhuang"));
            assert!(!caller(role, "tongzhou").covers("chaoyang", "x"));
            assert!(
                !caller(role, "*").covers("tongzhou", "x"),
                "only operators have *"
            );
        }
        assert!(caller(Role::Operator, "*").covers("chaoyang", "x"));
        assert!(!caller(Role::Operator, "tongzhou").covers("chaoyang", "x"));
    }

    #[test]
    fn tokens_from_the_future_or_for_too_long_or_with_control_characters_are_refused() {
        let keys = JwtKeys::with_max_ttl(b"secret", std::time::Duration::from_secs(3600));
        let now = chrono::Utc::now().timestamp();
        let refused =
            |c: Claims| matches!(keys.verify(&keys.mint(&c)), Err(ApiError::Unauthorized(_)));
        assert!(!refused(claims(Role::Street, "jiukeshu", now + 3500)));
        assert!(
            refused(claims(Role::Street, "jiukeshu", now + 3700)),
            "exp too far ahead"
        );
        assert!(
            refused(claims(Role::Street, "jiukeshu", i64::MAX / 2)),
            "exp in the year 292 billion"
        );
        let mut c = claims(Role::Street, "jiukeshu", now + 60);
        c.iat = Some(now + 30);
        assert!(!refused(c.clone()), "a little clock skew is fine");
        c.iat = Some(now + 86_400);
        assert!(refused(c.clone()), "iat a day ahead");
        c.iat = None;
        c.nbf = Some(now + 86_400);
        assert!(refused(c), "nbf a day ahead");
        let mut c = claims(Role::Street, "jiukeshu", now + 60);
        c.sub = "a\u{0}b".into();
        assert!(refused(c), "a NUL in sub");
    }

    #[test]
    fn tokens_round_trip_and_refuse_forgery_and_expiry() {
        let keys = JwtKeys::new(b"secret");
        let now = chrono::Utc::now().timestamp();
        let t = keys.mint(&claims(Role::Street, "jiukeshu", now + 60));
        assert_eq!(keys.verify(&t).unwrap().org, "jiukeshu");
        let forged = JwtKeys::new(b"other").mint(&claims(Role::Street, "jiukeshu", now + 60));
        assert!(matches!(
            keys.verify(&forged),
            Err(ApiError::Unauthorized(_))
        ));
        let expired = keys.mint(&claims(Role::Street, "jiukeshu", now - 3600));
        assert!(
            matches!(keys.verify(&expired), Err(ApiError::Unauthorized(m)) if m.contains("expired"))
        );
        assert!(keys.verify("not.a.token").is_err());
    }

    #[test]
    fn org_coverage_follows_roles() {
        let c = |role, org: &str| Caller {
            sub: "u".into(),
            role,
            org: org.into(),
            exp: i64::MAX,
            name: None,
        };
        assert!(c(Role::Street, "jiukeshu").covers("tongzhou", "jiukeshu"));
        assert!(!c(Role::Street, "jiukeshu").covers("tongzhou", "yongshun"));
        assert!(c(Role::Operator, "*").covers("chaoyang", "x"));
        assert!(!c(Role::Operator, "tongzhou").covers("chaoyang", "x"));
        assert!(c(Role::Reviewer, "tongzhou").covers_district("tongzhou"));
        assert!(!c(Role::Reviewer, "tongzhou").covers_district("chaoyang"));
        assert!(!c(Role::Street, "jiukeshu").covers_district("tongzhou"));
    }
}
