//! Open311 api keys: which keys may post requests, and as whom.

use super::*;

// ---------------------------------------------------------------------------------------------
// Api keys.

/// Open311 api keys (`QINGLING_OPEN311_KEYS`, `key=sub,…`): each acts as a hotline operator for
/// every district (org `*`) named `sub`. Kept as SHA-256 digests, so a lookup's timing tells
/// nothing about the keys.
#[derive(Clone, Default)]
pub struct ApiKeys(Arc<HashMap<[u8; 32], String>>);

impl ApiKeys {
    pub fn from_env() -> anyhow::Result<Self> {
        let raw = std::env::var("QINGLING_OPEN311_KEYS").unwrap_or_default();
        let keys = Self::parse(&raw).map_err(|e| anyhow::anyhow!("QINGLING_OPEN311_KEYS: {e}"))?;
        if keys.0.is_empty() {
            tracing::info!("no Open311 api keys configured: Open311 POST requests is refused");
        } else {
            tracing::info!(keys = keys.0.len(), "Open311 api keys loaded");
        }
        Ok(keys)
    }

    /// Parses `key=sub` pairs, comma-separated. A key may itself end in `=` (base64).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut keys = HashMap::new();
        let entries = raw.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (i, entry) in entries.enumerate() {
            let (key, sub) = entry
                .rsplit_once('=')
                .map(|(k, s)| (k.trim(), s.trim()))
                .filter(|(k, s)| !k.is_empty() && !s.is_empty())
                .ok_or_else(|| format!("entry {} is not key=sub", i + 1))?;
            if keys.insert(digest(key), sub.to_string()).is_some() {
                return Err(format!("entry {} repeats a key", i + 1));
            }
        }
        Ok(Self(Arc::new(keys)))
    }

    /// The operator an api key stands for; 403 for a missing or unknown key.
    pub(super) fn caller(&self, key: Option<&str>) -> Result<Caller, Failure> {
        let forbidden = |d: &str| Failure::new(StatusCode::FORBIDDEN, d);
        if self.0.is_empty() {
            return Err(forbidden(
                "this server accepts no service requests: no api keys are configured",
            ));
        }
        let key = key.ok_or_else(|| forbidden("api_key: is required"))?;
        let sub = self
            .0
            .get(&digest(key))
            .ok_or_else(|| forbidden("api_key: is not valid"))?;
        Ok(Caller {
            sub: sub.clone(),
            role: Role::Operator,
            org: "*".into(),
            exp: i64::MAX,
            name: None,
        })
    }
}

pub(super) fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}
