//! The ledger's whole-log replay for a rebuild: the log is read in pages, folded into items and
//! dynamic-zero marks in memory, and the items are written with `COPY`, instead of a few
//! statements per event. It must leave exactly what [`crate::store::project`] leaves event by event; the
//! rebuild test compares the two after a live run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use qingling_shared::rebuild;
use qingling_shared::replay::Csv;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::domain::ItemEvent;
use qingling_events::Event;

/// An item as its row in `items` will be. Compact, since a city's log holds millions: the names
/// (district, street, …) are shared, the point is kept as its JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub item_id: Uuid,
    pub district: Arc<str>,
    pub street: Arc<str>,
    pub category: Arc<str>,
    pub source: Arc<str>,
    pub urgency: Arc<str>,
    pub point_id: Uuid,
    pub point: Box<str>,
    pub description: Box<str>,
    pub respond_by: Option<DateTime<Utc>>,
    pub rebound_of: Option<Uuid>,
    pub status: &'static str,
    pub complaint_ids: Vec<Uuid>,
    pub registered_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
    pub overdue: Vec<&'static str>,
    pub written_off_at: Option<DateTime<Utc>>,
    pub write_off_kind: Option<Arc<str>>,
    pub closure_id: Option<Uuid>,
    /// JSON text.
    pub extension: Option<Box<str>>,
    pub updated_at: DateTime<Utc>,
    pub rooms_cleared: Option<i32>,
    pub partition_area_m2: Option<f64>,
}

/// Where an event stands in the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Logged {
    pub position: i64,
    pub at: DateTime<Utc>,
}

/// An area's dynamic-zero mark, as its row in `zero_marks` will be.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Mark {
    pub open: i64,
    pub zero_since: Option<DateTime<Utc>>,
}

/// (district, street or `''` for the whole district, category).
pub type Area = (String, String, String);

/// The items folded so far. Pure: events in, rows out.
#[derive(Debug, Default)]
pub struct Fold {
    /// Boxed: the table doubles as it grows, and empty slots then cost a pointer, not an item.
    pub items: HashMap<Uuid, Box<Item>>,
    pub marks: HashMap<Area, Mark>,
    names: HashSet<Arc<str>>,
}

impl Fold {
    fn name(&mut self, s: &str) -> Arc<str> {
        if let Some(n) = self.names.get(s) {
            return n.clone();
        }
        let n: Arc<str> = s.into();
        self.names.insert(n.clone());
        n
    }

    /// Applies one event of the log.
    pub fn apply(&mut self, env: &Logged, ev: ItemEvent) -> anyhow::Result<()> {
        let at = env.at;
        match ev {
            ItemEvent::ItemRegistered(r) => {
                anyhow::ensure!(
                    !self.items.contains_key(&r.item_id),
                    "item {} registered twice (event at position {})",
                    r.item_id,
                    env.position
                );
                for street in [r.street.as_str(), ""] {
                    let area = (r.district.clone(), street.to_string(), r.category.clone());
                    let m = self.marks.entry(area).or_default();
                    m.open += 1;
                    m.zero_since = None;
                }
                let item = Item {
                    item_id: r.item_id,
                    district: self.name(&r.district),
                    street: self.name(&r.street),
                    category: self.name(&r.category),
                    source: self.name(r.source.as_str()),
                    urgency: self.name(r.urgency.as_str()),
                    point_id: r.point_id,
                    point: r.point.to_string().into(),
                    description: r.description.into(),
                    respond_by: r.respond_by,
                    rebound_of: r.rebound_of,
                    status: "registered",
                    complaint_ids: r.complaint_id.into_iter().collect(),
                    registered_at: at,
                    acknowledged_at: None,
                    resolve_by: r.resolve_by,
                    overdue: vec![],
                    written_off_at: None,
                    write_off_kind: None,
                    closure_id: None,
                    extension: None,
                    updated_at: at,
                    rooms_cleared: None,
                    partition_area_m2: None,
                };
                self.items.insert(r.item_id, Box::new(item));
                return Ok(());
            }
            ItemEvent::ItemWrittenOff(w) => {
                // Dynamic zero reached for the street, and perhaps the district, at this moment.
                for street in [w.street.as_str(), ""] {
                    let area = (w.district.clone(), street.to_string(), w.category.clone());
                    if let Some(m) = self.marks.get_mut(&area) {
                        if m.open == 1 {
                            m.zero_since = Some(at);
                        }
                        m.open -= 1;
                    }
                }
                let kind = self.name(w.kind.as_str());
                if let Some(i) = self.items.get_mut(&w.item_id) {
                    i.status = "written_off";
                    i.written_off_at = Some(at);
                    i.write_off_kind = Some(kind);
                    i.closure_id = w.closure_id;
                    i.updated_at = at;
                }
                return Ok(());
            }
            _ => {}
        }
        // The other events change an item, if it exists (as the SQL updates would).
        let Some(i) = self.items.get_mut(&ev.item_id()) else {
            return Ok(());
        };
        match ev {
            ItemEvent::ComplaintLinked { complaint_id, .. } => i.complaint_ids.push(complaint_id),
            ItemEvent::ComplaintUnlinked { complaint_id, .. } => {
                i.complaint_ids.retain(|c| *c != complaint_id)
            }
            ItemEvent::ItemAcknowledged { .. } => {
                i.status = "acknowledged";
                i.acknowledged_at = Some(at);
            }
            ItemEvent::ItemClosurePending {
                closure_id,
                rooms_cleared,
                partition_area_m2,
                ..
            } => {
                i.status = "closure_pending";
                i.closure_id = Some(closure_id);
                i.rooms_cleared = rooms_cleared;
                i.partition_area_m2 = partition_area_m2;
            }
            ItemEvent::ItemClosureRejected { .. } => {
                i.status = "acknowledged";
                i.closure_id = None;
            }
            ItemEvent::ItemOverdue { kind, .. } => {
                if i.overdue.contains(&kind.as_str()) {
                    return Ok(());
                }
                i.overdue.push(kind.as_str());
            }
            ItemEvent::ExtensionRequested { until, reason, .. } => {
                i.extension = Some(extension("pending", until, &reason))
            }
            ItemEvent::ExtensionRejected { until, reason, .. } => {
                i.extension = Some(extension("rejected", until, &reason))
            }
            ItemEvent::ExtensionApproved { until, reason, .. } => {
                i.extension = Some(extension("approved", until, &reason));
                i.resolve_by = Some(until);
            }
            ItemEvent::ExtensionWithdrawn { until, reason, .. } => {
                i.extension = Some(extension("withdrawn", until, &reason))
            }
            // The item does not change (nor its updated_at, as live).
            ItemEvent::ComplaintReturnRefused { .. } => return Ok(()),
            ItemEvent::ItemRegistered(_) | ItemEvent::ItemWrittenOff(_) => unreachable!(),
        }
        i.updated_at = at;
        Ok(())
    }
}

fn extension(status: &str, until: DateTime<Utc>, reason: &str) -> Box<str> {
    serde_json::json!({"status": status, "until": until, "reason": reason})
        .to_string()
        .into()
}

fn item_csv(out: &mut Csv, i: &Item) {
    out.uuid(i.item_id);
    out.text(&i.district);
    out.text(&i.street);
    out.text(&i.category);
    out.uuid(i.point_id);
    out.text(&i.point);
    out.text(&i.description);
    out.text(&i.source);
    out.text(&i.urgency);
    out.text(i.status);
    out.array(&i.complaint_ids);
    out.time(i.registered_at);
    out.opt_time(i.acknowledged_at);
    out.opt_time(i.respond_by);
    out.opt_time(i.resolve_by);
    out.array(&i.overdue);
    out.opt_time(i.written_off_at);
    out.opt_text(i.write_off_kind.as_deref());
    out.opt_uuid(i.closure_id);
    out.opt_uuid(i.rebound_of);
    out.opt_text(i.extension.as_deref());
    out.time(i.updated_at);
    out.opt_num(i.rooms_cleared);
    out.opt_num(i.partition_area_m2);
    out.end();
}

const ITEMS_COPY: &str = "copy items (item_id, district, street, category, point_id, point, description, source, urgency, status,
    complaint_ids, registered_at, acknowledged_at, respond_by, resolve_by, overdue, written_off_at, write_off_kind,
    closure_id, rebound_of, extension, updated_at, rooms_cleared, partition_area_m2) from stdin (format csv, freeze)";
const PAGE: i64 = 5_000;
/// Bytes of CSV sent per `COPY` data message batch.
const CHUNK: usize = 4 << 20;

/// One page of the log, parsed.
type Page = Vec<(Logged, ItemEvent)>;

/// Replays the whole log into the (emptied) items, zero marks and street tallies; returns the
/// number of events.
///
/// The log is read and parsed on a second connection while this one folds: the rebuild holds the
/// log locked against writers, so both see the same events. The items' secondary indexes are
/// dropped for the load and built once at the end.
pub async fn replay(
    pool: &PgPool,
    c: &mut PgConnection,
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<u64> {
    let started = Instant::now();
    // Three stages on their own tasks: PostgreSQL sends the next page while the last is parsed
    // and the one before is folded.
    let (rows_tx, rows) = tokio::sync::mpsc::channel(2);
    let (pages_tx, mut pages) = tokio::sync::mpsc::channel::<anyhow::Result<Page>>(2);
    let reader = tokio::spawn(read_log(pool.clone(), rows_tx));
    let parser = tokio::spawn(parse_pages(rows, pages_tx));
    let indexes = rebuild::drop_secondary_indexes(c, "items").await?;
    let mut fold = Fold::default();
    let mut done = 0u64;
    while let Some(page) = pages.recv().await {
        let page = page?;
        done += page.len() as u64;
        for (logged, ev) in page {
            fold.apply(&logged, ev)?;
        }
        progress(done);
    }
    reader.await??;
    parser.await?;
    let log_s = started.elapsed().as_secs_f64();
    for ((district, street, category), m) in &fold.marks {
        sqlx::query("insert into zero_marks (district, street, category, open, zero_since) values ($1, $2, $3, $4, $5)")
            .bind(district)
            .bind(street)
            .bind(category)
            .bind(m.open)
            .bind(m.zero_since)
            .execute(&mut *c)
            .await?;
    }
    let items = fold.items.len();
    // The rows are written out on another thread while PostgreSQL takes the previous chunk; in
    // key order, so the primary key grows at its right edge instead of all over.
    let (chunks_tx, mut chunks) = tokio::sync::mpsc::channel::<String>(2);
    let writer = tokio::task::spawn_blocking(move || {
        let mut rows: Vec<&Item> = fold.items.values().map(|i| &**i).collect();
        rows.sort_unstable_by_key(|i| i.item_id);
        let mut csv = Csv(String::with_capacity(CHUNK + 4096));
        for i in rows {
            item_csv(&mut csv, i);
            if csv.0.len() >= CHUNK {
                let full = std::mem::replace(&mut csv.0, String::with_capacity(CHUNK + 4096));
                if chunks_tx.blocking_send(full).is_err() {
                    return;
                }
            }
        }
        let _ = chunks_tx.blocking_send(csv.0);
    });
    // The street tallies are counted once after the load, not fed every row through the trigger.
    sqlx::query("alter table items disable trigger items_tally_insert")
        .execute(&mut *c)
        .await?;
    let mut copy = c.copy_in_raw(ITEMS_COPY).await?;
    while let Some(chunk) = chunks.recv().await {
        copy.send(chunk.as_bytes()).await?;
    }
    writer.await?;
    copy.finish().await?;
    sqlx::query("alter table items enable trigger items_tally_insert")
        .execute(&mut *c)
        .await?;
    sqlx::query("select count_street_tallies()")
        .execute(&mut *c)
        .await?;
    let items_s = started.elapsed().as_secs_f64() - log_s;
    rebuild::build_indexes(c, indexes).await?;
    tracing::info!(
        events = done,
        items,
        log_s,
        items_s,
        indexes_s = started.elapsed().as_secs_f64() - log_s - items_s,
        "replayed the log"
    );
    Ok(done)
}

/// Reads the log in pages, until the end or the receiver is gone.
async fn read_log(
    pool: PgPool,
    pages: tokio::sync::mpsc::Sender<Vec<PgRow>>,
) -> anyhow::Result<()> {
    let mut c = pool.acquire().await?;
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(
            "select position, event_id, event_type, occurred_at, data::text as data
             from events where position > $1 order by position limit $2",
        )
        .bind(after)
        .bind(PAGE)
        .fetch_all(&mut *c)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.try_get("position")?;
        if pages.send(rows).await.is_err() {
            return Ok(());
        }
    }
}

/// Parses pages of rows into events; stops at the first error, which it passes on.
async fn parse_pages(
    mut rows: tokio::sync::mpsc::Receiver<Vec<PgRow>>,
    pages: tokio::sync::mpsc::Sender<anyhow::Result<Page>>,
) {
    while let Some(raw) = rows.recv().await {
        let page = raw
            .iter()
            .map(|r| {
                let logged = Logged {
                    position: r.try_get("position")?,
                    at: r.try_get("occurred_at")?,
                };
                let ev = ItemEvent::from_stored(
                    r.try_get("event_id")?,
                    r.try_get("event_type")?,
                    r.try_get("data")?,
                )?
                .ok_or_else(|| {
                    anyhow::anyhow!("the ledger's log holds an event of another service")
                })?;
                Ok((logged, ev))
            })
            .collect::<anyhow::Result<Page>>();
        let failed = page.is_err();
        if pages.send(page).await.is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
