//! Open311 request parameters: form and query fields, read once, checked where used.

use super::*;

// ---------------------------------------------------------------------------------------------
// Request parameters.

/// Query or form fields as sent. A value holding U+0000 is refused up front: PostgreSQL text
/// cannot store it.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn new(fields: Vec<(String, String)>) -> Result<Self, Failure> {
        if let Some((name, _)) = fields
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(Failure::bad_request(format!(
                "{name}: must not contain the NUL character"
            )));
        }
        Ok(Self(fields))
    }

    pub(super) fn from_query(
        q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ) -> Result<Self, Failure> {
        let Query(fields) = q.map_err(|r| Failure::bad_request(r.body_text()))?;
        Self::new(fields)
    }

    /// The first non-blank value of `name`, trimmed.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .find(|v| !v.is_empty())
    }

    /// `jurisdiction_id`, a district code (default tongzhou); 404 when unknown, as the standard says.
    pub(super) fn jurisdiction<'a>(
        &self,
        s: &'a AppState,
    ) -> Result<&'a qingling_shared::orgs::District, Failure> {
        let code = self.get("jurisdiction_id").unwrap_or(DEFAULT_JURISDICTION);
        s.orgs
            .district(code)
            .ok_or_else(|| Failure::not_found(format!("jurisdiction_id {code:?} not found")))
    }

    /// `lat` and `long`, kept as the point's position (WGS-84, as the standard has them).
    fn location(&self) -> Option<qingling_shared::point::LocationInput> {
        let number = |name: &str| {
            self.get(name).map(|v| match v.parse::<f64>() {
                Ok(x) if x.is_finite() => serde_json::json!(x),
                _ => serde_json::json!(v),
            })
        };
        let (lat, long) = (number("lat"), number("long"));
        (lat.is_some() || long.is_some())
            .then_some(qingling_shared::point::LocationInput { lat, long })
    }

    /// The complaint a posted request describes; [`ComplaintInput::parse`] checks it.
    pub(super) fn complaint(&self, district: &str) -> ComplaintInput {
        let owned = |name: &str| self.get(name).map(str::to_string);
        let name = full_name(self.get("first_name"), self.get("last_name"));
        let phone = owned("phone");
        ComplaintInput {
            district: Some(district.to_string()),
            street: owned("attribute[street]"),
            category: owned("service_code"),
            urgency: Some("normal".into()),
            point: Some(PointInput {
                community: owned("attribute[community]"),
                building: owned("attribute[building]"),
                basement: owned("attribute[basement]"),
                address: owned("address_string"),
                point_id: None,
                location: self.location(),
            }),
            caller: (name.is_some() || phone.is_some()).then_some(CallerInput { name, phone }),
            description: owned("description"),
            received_at: None,
        }
    }

    /// The filters of `GET requests`. `service_request_id` overrides every other one; without
    /// dates the last 90 days are listed, and a range may not span more than 90 days.
    pub(super) fn filter(&self, s: &AppState, now: DateTime<Utc>) -> Result<PublicFilter, Failure> {
        let mut f = PublicFilter {
            closed_statuses: CLOSED.iter().map(|s| s.as_str().to_string()).collect(),
            limit: MAX_RESULTS,
            ..PublicFilter::default()
        };
        if let Some(ids) = self.get("service_request_id") {
            let ids: Vec<&str> = ids
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .collect();
            if ids.len() > MAX_RESULTS as usize {
                return Err(Failure::bad_request(format!(
                    "service_request_id: at most {MAX_RESULTS} ids"
                )));
            }
            // An id that is not a UUID names no request: it is simply not found.
            f.ids = Some(ids.iter().filter_map(|x| x.parse().ok()).collect());
            return Ok(f);
        }
        if self.get("jurisdiction_id").is_some() {
            f.district = Some(self.jurisdiction(s)?.code.clone());
        }
        if let Some(codes) = self.get("service_code") {
            let codes: Vec<String> = codes.split(',').map(|c| c.trim().to_string()).collect();
            if let Some(bad) = codes.iter().find(|c| s.catalog.get(c).is_none()) {
                return Err(Failure::bad_request(format!(
                    "service_code: unknown service {bad:?}"
                )));
            }
            f.categories = Some(codes);
        }
        f.closed = match self.get("status") {
            None => None,
            Some("open") => Some(false),
            Some("closed") => Some(true),
            Some(other) => {
                return Err(Failure::bad_request(format!(
                    "status: must be open or closed, not {other:?}"
                )))
            }
        };
        let window = Duration::days(WINDOW_DAYS);
        let (from, to) = match (self.date("start_date")?, self.date("end_date")?) {
            (None, None) => (now - window, None),
            (Some(a), None) => (a, Some(a + window)),
            (None, Some(b)) => (b - window, Some(b)),
            (Some(a), Some(b)) if b < a => {
                return Err(Failure::bad_request("end_date: is before start_date"))
            }
            (Some(a), Some(b)) if b - a > window => {
                return Err(Failure::bad_request(format!(
                    "start_date, end_date: may not span more than {WINDOW_DAYS} days"
                )))
            }
            (Some(a), Some(b)) => (a, Some(b)),
        };
        f.received_from = Some(from);
        f.received_to = to;
        Ok(f)
    }

    /// An RFC 3339 time. A `+` offset sent unencoded arrives as a space; it is read as `+`.
    pub(super) fn date(&self, name: &str) -> Result<Option<DateTime<Utc>>, Failure> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        DateTime::parse_from_rfc3339(v)
            .or_else(|_| DateTime::parse_from_rfc3339(&v.replace(' ', "+")))
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                Failure::bad_request(format!(
                    "{name}: must be a time like 2026-11-28T08:00:00Z, not {v:?}"
                ))
            })
    }
}

/// 张 + 先生 → 张先生, John + Smith → John Smith: a Chinese name puts the family name first, unspaced.
pub(super) fn full_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let cjk = |s: &str| {
        s.chars().any(|c| {
            matches!(c, '\u{3400}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{3134F}')
        })
    };
    match (first, last) {
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => Some(one.to_string()),
        (Some(f), Some(l)) if cjk(f) || cjk(l) => Some(format!("{l}{f}")),
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
    }
}
