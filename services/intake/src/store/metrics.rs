//! The monthly street metrics (响应率, 解决率, 满意率): each complaint's flags and the street
//! counters they add up to.

use super::*;

/// Changes a complaint's metric flags (and, with `new_street`, the street it counts for), moving
/// its contribution between street counters in the same transaction.
pub async fn update_metrics(
    c: &mut PgConnection,
    id: Uuid,
    new_street: Option<&str>,
    change: impl FnOnce(&mut MetricFlags),
) -> sqlx::Result<()> {
    let row: (String, String, String, bool, bool, bool, bool, Option<String>) = sqlx::query_as(
        "select district, month, street, counted, responded_on_time, resolved, overdue, satisfaction
         from complaints where complaint_id = $1 for update",
    )
    .bind(id)
    .fetch_one(&mut *c)
    .await?;
    let (district, month, street, counted, responded_on_time, resolved, overdue, satisfaction) =
        row;
    let old = MetricFlags {
        counted,
        responded_on_time,
        resolved,
        overdue,
        satisfaction: satisfaction.as_deref().and_then(Satisfaction::parse),
    };
    let mut new = old.clone();
    change(&mut new);
    let to_street = new_street.unwrap_or(&street);
    if old == new && to_street == street {
        return Ok(());
    }
    bump(
        c,
        &district,
        &month,
        &street,
        &Counters::default().minus(&old.counters()),
    )
    .await?;
    bump(c, &district, &month, to_street, &new.counters()).await?;
    sqlx::query(
        "update complaints set street = $2, counted = $3, responded_on_time = $4, resolved = $5, overdue = $6, satisfaction = $7
         where complaint_id = $1",
    )
    .bind(id)
    .bind(to_street)
    .bind(new.counted)
    .bind(new.responded_on_time)
    .bind(new.resolved)
    .bind(new.overdue)
    .bind(new.satisfaction.map(|s| s.as_str()))
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn bump(
    c: &mut PgConnection,
    district: &str,
    month: &str,
    street: &str,
    d: &Counters,
) -> sqlx::Result<()> {
    if *d == Counters::default() {
        return Ok(());
    }
    sqlx::query(
        "insert into street_metrics as m (district, month, street, received, responded_on_time, resolved, followed_up,
            satisfied, basically_satisfied, dissatisfied, unknown, overdue)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         on conflict (district, month, street) do update set
            received = m.received + excluded.received,
            responded_on_time = m.responded_on_time + excluded.responded_on_time,
            resolved = m.resolved + excluded.resolved,
            followed_up = m.followed_up + excluded.followed_up,
            satisfied = m.satisfied + excluded.satisfied,
            basically_satisfied = m.basically_satisfied + excluded.basically_satisfied,
            dissatisfied = m.dissatisfied + excluded.dissatisfied,
            unknown = m.unknown + excluded.unknown,
            overdue = m.overdue + excluded.overdue",
    )
    .bind(district)
    .bind(month)
    .bind(street)
    .bind(d.received)
    .bind(d.responded_on_time)
    .bind(d.resolved)
    .bind(d.followed_up)
    .bind(d.satisfied)
    .bind(d.basically_satisfied)
    .bind(d.dissatisfied)
    .bind(d.unknown)
    .bind(d.overdue)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn street_metrics(
    c: &mut PgConnection,
    district: &str,
    month: &str,
) -> sqlx::Result<Vec<(String, Counters)>> {
    type Row = (String, i64, i64, i64, i64, i64, i64, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "select street, received, responded_on_time, resolved, followed_up, satisfied, basically_satisfied, dissatisfied, unknown, overdue
         from street_metrics where district = $1 and month = $2",
    )
    .bind(district)
    .bind(month)
    .fetch_all(c)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.0,
                Counters {
                    received: r.1,
                    responded_on_time: r.2,
                    resolved: r.3,
                    followed_up: r.4,
                    satisfied: r.5,
                    basically_satisfied: r.6,
                    dissatisfied: r.7,
                    unknown: r.8,
                    overdue: r.9,
                },
            )
        })
        .collect())
}
