//! Intake's domain: parsing a complaint (接诉) at the edge, the point identity, deadlines, the
//! dispatch (派单) decision and the complaint status as the ledger moves. Pure: no I/O.

use chrono::{DateTime, Utc};
pub use qingling_events::intake::{
    ComplaintEvent, Dispatched, Received, ReturnReason, RoutedBy, Satisfaction, Urgency,
};
use qingling_events::ledger::{ItemEvent, WriteOffKind};
use qingling_shared::config::Limits;
use qingling_shared::point::{Location, LocationInput};
use qingling_shared::{Catalog, FieldError, Orgs};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The body of `POST /v1/complaints`, as sent. Required fields are options here so that a missing
/// one is reported with the others (422), not as a parse failure.
#[derive(Debug, Deserialize, Serialize, Clone, utoipa::ToSchema)]
pub struct ComplaintInput {
    pub district: Option<String>,
    pub street: Option<String>,
    pub category: Option<String>,
    pub urgency: Option<String>,
    pub point: Option<PointInput>,
    pub caller: Option<CallerInput>,
    pub description: Option<String>,
    pub received_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, Serialize, Clone, utoipa::ToSchema)]
pub struct PointInput {
    pub community: Option<String>,
    pub building: Option<String>,
    pub basement: Option<String>,
    pub address: Option<String>,
    pub point_id: Option<Uuid>,
    /// WGS-84 position (CONTRACT §11).
    pub location: Option<LocationInput>,
}

#[derive(Debug, Deserialize, Serialize, Clone, utoipa::ToSchema)]
pub struct CallerInput {
    pub name: Option<String>,
    pub phone: Option<String>,
}

/// 点位: one basement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub community: String,
    pub building: String,
    pub basement: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub name: Option<String>,
    pub phone: Option<String>,
}

/// A complaint that passed every check: only valid values from here on.
#[derive(Debug, Clone, PartialEq)]
pub struct Complaint {
    pub district: String,
    pub street: String,
    pub category: String,
    pub urgency: Urgency,
    pub point: Point,
    pub point_id: Uuid,
    pub caller: Option<Caller>,
    pub description: String,
    pub received_at: DateTime<Utc>,
    /// How `street` was chosen: by the operator, or by routing when the request named none.
    pub routed_by: RoutedBy,
}

const MAX_TEXT: usize = 2000;

/// A required text field, cleaned of invisible characters and NFKC-folded first (CONTRACT §13), so
/// that a value of zero-width characters alone is missing.
fn text(errors: &mut Vec<FieldError>, field: &str, v: Option<&String>, max: usize) -> String {
    let cleaned = v.map(|s| qingling_shared::point::clean(s));
    match cleaned.as_deref().map(str::trim) {
        None | Some("") => {
            errors.push(FieldError::new(field, "is required"));
            String::new()
        }
        Some(s) if s.chars().count() > max => {
            errors.push(FieldError::new(
                field,
                format!("is longer than {max} characters"),
            ));
            String::new()
        }
        Some(s) => s.to_string(),
    }
}

impl ComplaintInput {
    /// Parses the request into a [`Complaint`], or every field error at once.
    pub fn parse(
        self,
        orgs: &Orgs,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> Result<Complaint, Vec<FieldError>> {
        let mut errors = Vec::new();
        let district = text(&mut errors, "district", self.district.as_ref(), 64);
        // No street: the call is routed (by its point, or its community) before it is dispatched.
        let street = match self
            .street
            .as_ref()
            .map(|s| qingling_shared::point::clean(s))
        {
            Some(s) if !s.trim().is_empty() => text(&mut errors, "street", Some(&s), 64),
            _ => String::new(),
        };
        let routed_by = RoutedBy::Operator;
        if !district.is_empty() && orgs.district(&district).is_none() {
            errors.push(FieldError::new(
                "district",
                format!("unknown district {district:?}"),
            ));
        } else if !district.is_empty()
            && !street.is_empty()
            && orgs.street(&district, &street).is_none()
        {
            errors.push(FieldError::new(
                "street",
                format!("{street:?} is not a street or township of {district}"),
            ));
        }
        let category = text(&mut errors, "category", self.category.as_ref(), 64);
        if !category.is_empty() && catalog.get(&category).is_none() {
            errors.push(FieldError::new(
                "category",
                format!("unknown category {category:?} (see GET /v1/catalog)"),
            ));
        }
        let urgency = match self.urgency.as_deref() {
            None | Some("normal") => Urgency::Normal,
            Some("urgent") => Urgency::Urgent,
            Some(other) => {
                errors.push(FieldError::new(
                    "urgency",
                    format!("must be normal or urgent, not {other:?}"),
                ));
                Urgency::Normal
            }
        };
        let description = match self.description.as_deref().map(str::trim) {
            Some(d) if d.chars().count() > MAX_TEXT => {
                errors.push(FieldError::new(
                    "description",
                    format!("is longer than {MAX_TEXT} characters"),
                ));
                String::new()
            }
            d => d.unwrap_or("").to_string(),
        };
        let (point, given_id) = match self.point {
            None => {
                errors.push(FieldError::new("point", "is required"));
                (None, None)
            }
            Some(p) => {
                let point = Point {
                    community: text(&mut errors, "point.community", p.community.as_ref(), 200),
                    building: text(&mut errors, "point.building", p.building.as_ref(), 100),
                    basement: text(&mut errors, "point.basement", p.basement.as_ref(), 100),
                    address: p
                        .address
                        .map(|a| a.trim().chars().take(MAX_TEXT).collect())
                        .filter(|a: &String| !a.is_empty()),
                    location: match &p.location {
                        None => None,
                        Some(l) => {
                            let bbox = orgs.district(&district).and_then(|d| d.bbox);
                            match l.check(bbox) {
                                Ok(l) => Some(l),
                                Err(m) => {
                                    errors.push(FieldError::new("point.location", m));
                                    None
                                }
                            }
                        }
                    },
                };
                (Some(point), p.point_id)
            }
        };
        let caller = self.caller.map(|c| {
            let phone = c
                .phone
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty());
            if let Some(p) = &phone {
                let ok = p.len() <= 20
                    && p.chars()
                        .all(|ch| ch.is_ascii_digit() || "+- ()".contains(ch))
                    && p.chars().filter(char::is_ascii_digit).count() >= 3;
                if !ok {
                    errors.push(FieldError::new(
                        "caller.phone",
                        "must be a telephone number",
                    ));
                }
            }
            let name = c
                .name
                .map(|n| n.trim().chars().take(100).collect::<String>())
                .filter(|n| !n.is_empty());
            Caller { name, phone }
        });
        let received_at = self.received_at.unwrap_or(now);
        if received_at > now + chrono::Duration::minutes(5) {
            errors.push(FieldError::new("received_at", "lies in the future"));
        } else if received_at < now - chrono::Duration::days(366) {
            errors.push(FieldError::new("received_at", "is more than a year ago"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let point = point.expect("checked above");
        let point_id = given_id.unwrap_or_else(|| point_id(&district, &point));
        Ok(Complaint {
            district,
            street,
            category,
            urgency,
            point,
            point_id,
            caller,
            description,
            received_at,
            routed_by,
        })
    }
}

/// The point's id (see [`qingling_shared::point`]).
pub fn point_id(district: &str, point: &Point) -> Uuid {
    qingling_shared::point::point_id(district, &point.community, &point.building, &point.basement)
}

/// Respond-by and resolve-by for a dispatch at `at`.
pub fn deadlines(
    limits: &Limits,
    urgency: Urgency,
    at: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let (respond, resolve) = match urgency {
        Urgency::Normal => (limits.respond_within, limits.resolve_within),
        Urgency::Urgent => (limits.respond_within_urgent, limits.resolve_within_urgent),
    };
    let d = |s: std::time::Duration| {
        chrono::Duration::from_std(s).unwrap_or(chrono::Duration::days(3650))
    };
    (at + d(respond), at + d(resolve))
}

/// 接诉 and 派单: a new complaint is received and dispatched to its street at once.
pub fn register(
    id: Uuid,
    c: &Complaint,
    limits: &Limits,
    now: DateTime<Utc>,
) -> (Vec<ComplaintEvent>, Dispatch) {
    let (respond_by, resolve_by) = deadlines(limits, c.urgency, now);
    let point = serde_json::to_value(&c.point).expect("a point serialises");
    let received = Received {
        complaint_id: id,
        district: c.district.clone(),
        street: c.street.clone(),
        category: c.category.clone(),
        urgency: c.urgency,
        point_id: c.point_id,
        point: point.clone(),
        description: c.description.clone(),
        received_at: c.received_at,
    };
    let dispatched = Dispatched {
        complaint_id: id,
        district: c.district.clone(),
        street: c.street.clone(),
        category: c.category.clone(),
        urgency: c.urgency,
        point_id: c.point_id,
        point,
        description: c.description.clone(),
        received_at: c.received_at,
        dispatched_at: now,
        respond_by,
        resolve_by,
        redispatch: false,
        routed_by: Some(c.routed_by),
    };
    (
        vec![
            ComplaintEvent::ComplaintReceived(received),
            ComplaintEvent::ComplaintDispatched(dispatched),
        ],
        Dispatch {
            dispatched_at: now,
            respond_by,
            resolve_by,
        },
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dispatch {
    pub dispatched_at: DateTime<Utc>,
    pub respond_by: DateTime<Utc>,
    pub resolve_by: DateTime<Utc>,
}

/// Where a complaint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Dispatched,
    Registered,
    Returned,
    WrittenOff,
    FollowedUp,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Dispatched => "dispatched",
            Status::Registered => "registered",
            Status::Returned => "returned",
            Status::WrittenOff => "written_off",
            Status::FollowedUp => "followed_up",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.into())).ok()
    }

    /// The status after a ledger event about the complaint's item; `None` leaves it unchanged.
    pub fn after_ledger_event(self, event: &ItemEvent) -> Option<Status> {
        match (self, event) {
            (
                Status::Dispatched,
                ItemEvent::ItemRegistered(_) | ItemEvent::ComplaintLinked { .. },
            ) => Some(Status::Registered),
            (Status::Dispatched | Status::Registered, ItemEvent::ItemWrittenOff(w))
                if w.kind != WriteOffKind::Returned =>
            {
                Some(Status::WrittenOff)
            }
            _ => None,
        }
    }
}

/// Phones show at most their last 4 digits (CONTRACT §13): `*******0000`. A number of 4 digits or
/// fewer (a short service number) shows none.
pub fn mask_phone(phone: &str) -> String {
    let mut digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    // +86 / 0086: the country code is not part of the number.
    if digits.len() == 13 && digits.starts_with(&['8', '6']) {
        digits.drain(..2);
    } else if digits.len() == 15 && digits.starts_with(&['0', '0', '8', '6']) {
        digits.drain(..4);
    }
    if digits.len() <= 4 {
        return "*".repeat(digits.len());
    }
    let tail: String = digits[digits.len() - 4..].iter().collect();
    format!("{}{tail}", "*".repeat(digits.len() - 4))
}

/// A caller's name as a street sees it: the family name only (张先生 → 张**).
pub fn mask_name(name: &str) -> String {
    let mut chars = name.trim().chars();
    match chars.next() {
        Some(first) => format!("{first}{}", "*".repeat(chars.count().max(1))),
        None => String::new(),
    }
}

/// The calendar month (Asia/Shanghai, UTC+8 all year) a complaint counts in: `2026-11`.
pub fn month_of(at: DateTime<Utc>) -> String {
    (at + chrono::Duration::hours(8))
        .format("%Y-%m")
        .to_string()
}

/// One complaint's part in its street's monthly metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricFlags {
    /// Counted as received by its street (false while returned: 退单 is not the street's case).
    pub counted: bool,
    /// Its item was acknowledged (响应) by the complaint's respond-by.
    pub responded_on_time: bool,
    /// Its item was written off as rectified or unfounded (解决).
    pub resolved: bool,
    /// Its item was flagged overdue.
    pub overdue: bool,
    pub satisfaction: Option<Satisfaction>,
}

/// Counters of a street's month; the sum of its complaints' flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub received: i64,
    pub responded_on_time: i64,
    pub resolved: i64,
    pub followed_up: i64,
    pub satisfied: i64,
    pub basically_satisfied: i64,
    pub dissatisfied: i64,
    pub unknown: i64,
    pub overdue: i64,
}

impl MetricFlags {
    pub fn counters(&self) -> Counters {
        if !self.counted {
            return Counters::default();
        }
        let n = |b: bool| b as i64;
        let is = |s: Satisfaction| n(self.satisfaction == Some(s));
        Counters {
            received: 1,
            responded_on_time: n(self.responded_on_time),
            resolved: n(self.resolved),
            followed_up: n(self.satisfaction.is_some()),
            satisfied: is(Satisfaction::Satisfied),
            basically_satisfied: is(Satisfaction::BasicallySatisfied),
            dissatisfied: is(Satisfaction::Dissatisfied),
            unknown: is(Satisfaction::Unknown),
            overdue: n(self.overdue),
        }
    }
}

impl Counters {
    /// Field by field `self + sign * o`.
    fn combine(&self, o: &Counters, sign: i64) -> Counters {
        Counters {
            received: self.received + sign * o.received,
            responded_on_time: self.responded_on_time + sign * o.responded_on_time,
            resolved: self.resolved + sign * o.resolved,
            followed_up: self.followed_up + sign * o.followed_up,
            satisfied: self.satisfied + sign * o.satisfied,
            basically_satisfied: self.basically_satisfied + sign * o.basically_satisfied,
            dissatisfied: self.dissatisfied + sign * o.dissatisfied,
            unknown: self.unknown + sign * o.unknown,
            overdue: self.overdue + sign * o.overdue,
        }
    }

    pub fn plus(&self, o: &Counters) -> Counters {
        self.combine(o, 1)
    }

    /// What to add to move from `o` to `self`.
    pub fn minus(&self, o: &Counters) -> Counters {
        self.combine(o, -1)
    }

    /// The monthly rates (CONTRACT §4). A rate is null where its denominator is 0.
    pub fn rates(&self) -> Rates {
        let ratio = |a: i64, b: i64| (b > 0).then(|| a as f64 / b as f64);
        let known = self.satisfied + self.basically_satisfied + self.dissatisfied;
        // 满意 5, 基本满意 3, 不满意 0; an unknown answer counts as the mean of the known ones, so
        // the mean over all answers equals the mean over the known ones.
        let score = ratio(5 * self.satisfied + 3 * self.basically_satisfied, known);
        Rates {
            response_rate: ratio(self.responded_on_time, self.received),
            resolution_rate: ratio(self.resolved, self.received),
            satisfaction_score: score,
            satisfaction_rate: ratio(self.satisfied + self.basically_satisfied, known),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub response_rate: Option<f64>,
    pub resolution_rate: Option<f64>,
    pub satisfaction_score: Option<f64>,
    pub satisfaction_rate: Option<f64>,
}

/// 退单: only the street it is dispatched to, only before the item is acknowledged.
pub fn can_return(status: Status, acknowledged: bool) -> Result<(), String> {
    match status {
        Status::Dispatched | Status::Registered if !acknowledged => Ok(()),
        Status::Dispatched | Status::Registered => {
            Err("the item was already acknowledged (签收); it can no longer be returned".into())
        }
        other => Err(format!(
            "the complaint is {}; only a dispatched complaint can be returned",
            other.as_str()
        )),
    }
}

/// 回访: once, after the write-off.
pub fn can_follow_up(status: Status) -> Result<(), String> {
    match status {
        Status::WrittenOff => Ok(()),
        Status::FollowedUp => Err("the complaint was already followed up".into()),
        other => Err(format!(
            "the complaint is {}; follow-up comes after its item is written off",
            other.as_str()
        )),
    }
}

#[cfg(test)]
mod tests;
