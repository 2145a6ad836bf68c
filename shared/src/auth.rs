//! Bearer-token auth (CONTRACT §2): HS256 JWTs with `sub`, `role`, `org`, `exp`.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

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
        }
    }
}

/// How far ahead of this clock an issuer's may be (`iat`, `nbf`).
const CLOCK_SKEW: i64 = 60;

/// The shortest signing secret a service accepts (CONTRACT §13).
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest a token may still be valid for, unless `QINGLING_MAX_TOKEN_TTL` says otherwise.
pub const DEFAULT_MAX_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

#[derive(Clone)]
pub struct JwtKeys(Arc<(EncodingKey, DecodingKey, i64)>);

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        Self::with_max_ttl(secret, DEFAULT_MAX_TOKEN_TTL)
    }

    /// Keys that refuse a token valid for longer than `max_ttl` from now.
    pub fn with_max_ttl(secret: &[u8], max_ttl: std::time::Duration) -> Self {
        Self(Arc::new((
            EncodingKey::from_secret(secret),
            DecodingKey::from_secret(secret),
            max_ttl.as_secs().min(i64::MAX as u64) as i64,
        )))
    }

    pub fn mint(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.0 .0)
            .expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let mut v = Validation::new(Algorithm::HS256);
        // Expired means expired (CONTRACT §2): no grace period.
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.0 .1, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Unauthorized("the bearer token has expired".into())
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    ApiError::Unauthorized("the bearer token's signature is not valid".into())
                }
                _ => ApiError::Unauthorized(
                    "the bearer token is malformed or its claims are invalid".into(),
                ),
            })?;
        let now = chrono::Utc::now().timestamp();
        let refuse = |what: &str| Err(ApiError::Unauthorized(format!("the bearer token {what}")));
        if claims.exp > now.saturating_add(self.0 .2) {
            return refuse("is valid for longer than this service accepts");
        }
        if claims
            .iat
            .into_iter()
            .chain(claims.nbf)
            .any(|t| t > now + CLOCK_SKEW)
        {
            return refuse("is not valid yet (iat or nbf lies in the future)");
        }
        if [&claims.sub, &claims.org]
            .iter()
            .any(|s| s.chars().any(char::is_control))
        {
            return refuse("holds control characters in sub or org");
        }
        // `*` covers every district, which only a hotline operator may.
        if claims.org == "*" && claims.role != Role::Operator {
            return Err(ApiError::Forbidden(format!(
                "a {} may not hold org \"*\"",
                claims.role.as_str()
            )));
        }
        Ok(claims)
    }
}

/// The authenticated caller of a request. Handlers take it as an argument.
#[derive(Debug, Clone)]
pub struct Caller {
    pub sub: String,
    pub role: Role,
    pub org: String,
    /// When the token expires (Unix seconds): a live stream ends then.
    pub exp: i64,
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
    pub fn from_headers(
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
        Caller::from_token(keys, token)
    }

    /// The caller a bare token names (for clients that cannot send headers, such as EventSource).
    pub fn from_token(keys: &JwtKeys, token: &str) -> Result<Caller, ApiError> {
        let claims = keys.verify(token)?;
        if claims.sub.trim().is_empty() || claims.org.trim().is_empty() {
            return Err(ApiError::Unauthorized(
                "the bearer token lacks sub or org".into(),
            ));
        }
        Ok(Caller {
            exp: claims.exp,
            sub: claims.sub,
            role: claims.role,
            org: claims.org,
        })
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    JwtKeys: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Caller::from_headers(&JwtKeys::from_ref(state), &parts.headers)
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
