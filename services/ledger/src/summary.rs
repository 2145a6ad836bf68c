//! 动态清零: the summary of a district's ledger, per street, from one database snapshot.

use chrono::{DateTime, Utc};
use qingling_shared::Orgs;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::store::{self, StreetCounts};

/// 动态清零 of a district: its totals and every street's. A street office sees its own row, and
/// totals that are its row's.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub district: String,
    pub category: String,
    #[serde(flatten)]
    pub totals: Tally,
    pub as_of: DateTime<Utc>,
    pub streets: Vec<StreetSummary>,
}

/// One street's (or township's) row of the summary.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StreetSummary {
    pub street: String,
    pub name: String,
    #[serde(flatten)]
    pub tally: Tally,
}

/// The counts of a street, or of the district.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Tally {
    /// Items on the ledger not written off.
    pub open: i64,
    pub registered_total: i64,
    pub written_off_total: i64,
    pub acknowledged: i64,
    pub closure_pending: i64,
    pub overdue: i64,
    /// Rebounds (反弹); the OpenAPI text is written from `REBOUND_WINDOW_DAYS` (see
    /// `http::describe_rebounds`).
    pub rebounds: i64,
    /// No open item (动态清零).
    pub dynamic_zero: bool,
    /// Since when at zero (null while open, or if it never had an item).
    pub zero_since: Option<DateTime<Utc>>,
}

impl Tally {
    /// `mark`: when the street (or district) last reached zero.
    fn of(k: &StreetCounts, mark: Option<DateTime<Utc>>) -> Tally {
        let open = k.registered_total - k.written_off_total;
        Tally {
            open,
            registered_total: k.registered_total,
            written_off_total: k.written_off_total,
            acknowledged: k.acknowledged,
            closure_pending: k.closure_pending,
            overdue: k.overdue,
            rebounds: k.rebounds,
            dynamic_zero: open == 0,
            zero_since: if open == 0 { mark } else { None },
        }
    }
}

/// The district's summary with every street. Callers restricted to one street use [`for_street`].
pub async fn compute(
    pool: &PgPool,
    orgs: &Orgs,
    district: &str,
    category: &str,
) -> Result<Value, sqlx::Error> {
    let mut c = pool.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *c).await?;
    // One snapshot for counts and marks, so open = registered_total - written_off_total holds.
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let counts = store::street_counts(&mut tx, district, category).await?;
    let marks = store::zero_marks(&mut tx, district, category).await?;
    tx.commit().await?;
    let mark = |street: &str| {
        marks
            .iter()
            .find(|(s, _)| s == street)
            .and_then(|(_, z)| *z)
    };
    let mut streets = Vec::new();
    let mut total = StreetCounts::default();
    for st in orgs
        .district(district)
        .map(|d| d.streets.as_slice())
        .unwrap_or_default()
    {
        let k = counts
            .iter()
            .find(|k| k.street == st.code)
            .cloned()
            .unwrap_or_default();
        total.registered_total += k.registered_total;
        total.written_off_total += k.written_off_total;
        total.acknowledged += k.acknowledged;
        total.closure_pending += k.closure_pending;
        total.overdue += k.overdue;
        total.rebounds += k.rebounds;
        streets.push(StreetSummary {
            street: st.code.clone(),
            name: st.name.clone(),
            tally: Tally::of(&k, mark(&st.code)),
        });
    }
    Ok(serde_json::to_value(Summary {
        district: district.to_string(),
        category: category.to_string(),
        totals: Tally::of(&total, mark("")),
        as_of: Utc::now(),
        streets,
    })
    .unwrap_or_default())
}

/// What a street office sees: its own row, and totals that are its row's.
pub fn for_street(full: &Value, street: &str) -> Value {
    let mut v = full.clone();
    let row = full["streets"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["street"] == street))
        .cloned()
        .unwrap_or(Value::Null);
    for k in [
        "open",
        "registered_total",
        "written_off_total",
        "acknowledged",
        "closure_pending",
        "overdue",
        "rebounds",
        "dynamic_zero",
        "zero_since",
    ] {
        v[k] = row[k].clone();
    }
    v["streets"] = json!([row]);
    v
}
