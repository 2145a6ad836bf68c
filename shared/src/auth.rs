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
}

#[derive(Clone)]
pub struct JwtKeys(Arc<(EncodingKey, DecodingKey)>);

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        Self(Arc::new((
            EncodingKey::from_secret(secret),
            DecodingKey::from_secret(secret),
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
        Claims {
            sub: "u1".into(),
            role,
            org: org.into(),
            exp,
        }
    }

    fn caller(role: Role, org: &str) -> Caller {
        Caller {
            sub: "u1".into(),
            role,
            org: org.into(),
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
