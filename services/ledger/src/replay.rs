//! The ledger's whole-log replay for a rebuild: the log is read in pages, folded into items in
//! memory, and the items and the journal are written with `COPY`, instead of a few statements per
//! event. It must leave exactly what [`crate::store::project`] leaves event by event; the
//! rebuild test compares the two after a live run.

use std::collections::HashMap;
use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use qingling_shared::Envelope;
use serde_json::Value;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::domain::{ItemEvent, Registered, WrittenOff};

/// An item as its row in `items` will be.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub reg: Registered,
    pub status: &'static str,
    pub complaint_ids: Vec<Uuid>,
    pub registered_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
    pub overdue: Vec<&'static str>,
    pub written_off_at: Option<DateTime<Utc>>,
    pub write_off_kind: Option<String>,
    pub closure_id: Option<Uuid>,
    pub extension: Option<Value>,
    pub updated_at: DateTime<Utc>,
}

/// A line of the journal (台账流水).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub position: i64,
    pub registration: bool,
    pub item_id: Uuid,
    pub district: String,
    pub street: String,
    pub category: String,
    pub point_id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub complaint_id: Option<Uuid>,
    pub closure_id: Option<Uuid>,
    pub write_off_kind: Option<String>,
}

/// The items folded so far. Pure: events in, rows out.
#[derive(Debug, Default)]
pub struct Fold {
    pub items: HashMap<Uuid, Item>,
}

impl Fold {
    /// Applies one event of the log; returns the journal line it adds, if any.
    pub fn apply(&mut self, env: &Envelope, ev: ItemEvent) -> anyhow::Result<Option<Line>> {
        let at = env.occurred_at;
        let line = |item_id, district: &str, street: &str, category: &str, point_id| Line {
            position: env.position,
            registration: true,
            item_id,
            district: district.to_string(),
            street: street.to_string(),
            category: category.to_string(),
            point_id,
            at,
            actor: env.actor.clone(),
            complaint_id: None,
            closure_id: None,
            write_off_kind: None,
        };
        match ev {
            ItemEvent::ItemRegistered(r) => {
                let mut l = line(r.item_id, &r.district, &r.street, &r.category, r.point_id);
                l.complaint_id = r.complaint_id;
                anyhow::ensure!(
                    !self.items.contains_key(&r.item_id),
                    "item {} registered twice (event at position {})",
                    r.item_id,
                    env.position
                );
                self.items.insert(
                    r.item_id,
                    Item {
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
                        reg: r,
                    },
                );
                return Ok(Some(l));
            }
            ItemEvent::ItemWrittenOff(WrittenOff {
                item_id,
                district,
                street,
                category,
                point_id,
                kind,
                closure_id,
            }) => {
                let mut l = line(item_id, &district, &street, &category, point_id);
                l.registration = false;
                l.closure_id = closure_id;
                l.write_off_kind = Some(kind.clone());
                if let Some(i) = self.items.get_mut(&item_id) {
                    i.status = "written_off";
                    i.written_off_at = Some(at);
                    i.write_off_kind = Some(kind);
                    i.closure_id = closure_id;
                    i.updated_at = at;
                }
                return Ok(Some(l));
            }
            _ => {}
        }
        // The other events change an item, if it exists (as the SQL updates would).
        let Some(i) = self.items.get_mut(&ev_item(&ev)) else {
            return Ok(None);
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
            ItemEvent::ItemClosurePending { closure_id, .. } => {
                i.status = "closure_pending";
                i.closure_id = Some(closure_id);
            }
            ItemEvent::ItemClosureRejected { .. } => {
                i.status = "acknowledged";
                i.closure_id = None;
            }
            ItemEvent::ItemOverdue { kind, .. } => {
                if i.overdue.contains(&kind.as_str()) {
                    return Ok(None);
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
            ItemEvent::ItemRegistered(_) | ItemEvent::ItemWrittenOff(_) => unreachable!(),
        }
        i.updated_at = at;
        Ok(None)
    }
}

fn extension(status: &str, until: DateTime<Utc>, reason: &str) -> Value {
    serde_json::json!({"status": status, "until": until, "reason": reason})
}

fn ev_item(ev: &ItemEvent) -> Uuid {
    match ev {
        ItemEvent::ItemRegistered(r) => r.item_id,
        ItemEvent::ItemWrittenOff(w) => w.item_id,
        ItemEvent::ComplaintLinked { item_id, .. }
        | ItemEvent::ComplaintUnlinked { item_id, .. }
        | ItemEvent::ItemAcknowledged { item_id, .. }
        | ItemEvent::ItemClosurePending { item_id, .. }
        | ItemEvent::ItemClosureRejected { item_id, .. }
        | ItemEvent::ItemOverdue { item_id, .. }
        | ItemEvent::ExtensionRequested { item_id, .. }
        | ItemEvent::ExtensionApproved { item_id, .. }
        | ItemEvent::ExtensionRejected { item_id, .. } => *item_id,
    }
}

/// CSV for `COPY … (format csv)`: every value quoted, so only an unquoted empty field is null.
struct Csv(String);

impl Csv {
    fn text(&mut self, s: &str) {
        self.0.push('"');
        self.0.push_str(&s.replace('"', "\"\""));
        self.0.push_str("\",");
    }
    fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.0.push(','),
        }
    }
    fn uuid(&mut self, u: Uuid) {
        let _ = write!(self.0, "{u},");
    }
    fn opt_uuid(&mut self, u: Option<Uuid>) {
        match u {
            Some(u) => self.uuid(u),
            None => self.0.push(','),
        }
    }
    fn int(&mut self, n: i64) {
        let _ = write!(self.0, "{n},");
    }
    /// Microseconds, truncated, as the binary protocol stores them.
    fn time(&mut self, t: DateTime<Utc>) {
        self.0
            .push_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true));
        self.0.push(',');
    }
    fn opt_time(&mut self, t: Option<DateTime<Utc>>) {
        match t {
            Some(t) => self.time(t),
            None => self.0.push(','),
        }
    }
    fn array<T: std::fmt::Display>(&mut self, xs: &[T]) {
        let inner: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
        let _ = write!(self.0, "\"{{{}}}\",", inner.join(","));
    }
    fn end(&mut self) {
        self.0.pop();
        self.0.push('\n');
    }
}

fn item_csv(out: &mut Csv, i: &Item) {
    let r = &i.reg;
    out.uuid(r.item_id);
    out.text(&r.district);
    out.text(&r.street);
    out.text(&r.category);
    out.uuid(r.point_id);
    out.text(&r.point.to_string());
    out.text(&r.description);
    out.text(&r.source);
    out.text(&r.urgency);
    out.text(i.status);
    out.array(&i.complaint_ids);
    out.time(i.registered_at);
    out.opt_time(i.acknowledged_at);
    out.opt_time(r.respond_by);
    out.opt_time(i.resolve_by);
    out.array(&i.overdue);
    out.opt_time(i.written_off_at);
    out.opt_text(i.write_off_kind.as_deref());
    out.opt_uuid(i.closure_id);
    out.opt_uuid(r.rebound_of);
    out.opt_text(i.extension.as_ref().map(|e| e.to_string()).as_deref());
    out.time(i.updated_at);
    out.end();
}

fn line_csv(out: &mut Csv, l: &Line) {
    out.int(l.position);
    out.text(if l.registration {
        "registration"
    } else {
        "write_off"
    });
    out.uuid(l.item_id);
    out.text(&l.district);
    out.text(&l.street);
    out.text(&l.category);
    out.uuid(l.point_id);
    out.time(l.at);
    out.text(&l.actor);
    out.opt_uuid(l.complaint_id);
    out.opt_uuid(l.closure_id);
    out.opt_text(l.write_off_kind.as_deref());
    out.end();
}

const ITEMS_COPY: &str = "copy items (item_id, district, street, category, point_id, point, description, source, urgency, status,
    complaint_ids, registered_at, acknowledged_at, respond_by, resolve_by, overdue, written_off_at, write_off_kind,
    closure_id, rebound_of, extension, updated_at) from stdin (format csv, freeze)";
const JOURNAL_COPY: &str =
    "copy journal (position, kind, item_id, district, street, category, point_id, at, actor,
    complaint_id, closure_id, write_off_kind) from stdin (format csv, freeze)";

const PAGE: i64 = 20_000;
/// Bytes of CSV sent per `COPY` data message batch.
const CHUNK: usize = 4 << 20;

/// Replays the whole log into the (emptied) items and journal; returns the number of events.
/// The dynamic-zero marks are left to [`crate::store::recompute_zero_marks`].
pub async fn replay(
    c: &mut PgConnection,
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<u64> {
    let mut fold = Fold::default();
    let mut after = 0i64;
    let mut done = 0u64;
    let mut csv = Csv(String::with_capacity(CHUNK + 4096));
    loop {
        let rows = sqlx::query(
            "select position, event_id, stream, version, event_type, occurred_at, actor, correlation_id, causation_id, data::text as data
             from events where position > $1 order by position limit $2",
        )
        .bind(after)
        .bind(PAGE)
        .fetch_all(&mut *c)
        .await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let env = Envelope {
                position: r.try_get("position")?,
                event_id: r.try_get("event_id")?,
                stream: r.try_get("stream")?,
                version: r.try_get("version")?,
                event_type: r.try_get("event_type")?,
                occurred_at: r.try_get("occurred_at")?,
                actor: r.try_get("actor")?,
                correlation_id: r.try_get("correlation_id")?,
                causation_id: r.try_get("causation_id")?,
                data: Value::Null,
            };
            let ev = parse(&env, r.try_get("data")?)?;
            after = env.position;
            if let Some(l) = fold.apply(&env, ev)? {
                line_csv(&mut csv, &l);
            }
        }
        done += rows.len() as u64;
        // This page's journal lines, before the next page is read on the same connection.
        if !csv.0.is_empty() {
            let mut copy = c.copy_in_raw(JOURNAL_COPY).await?;
            copy.send(csv.0.as_bytes()).await?;
            copy.finish().await?;
            csv.0.clear();
        }
        progress(done);
    }
    let mut copy = c.copy_in_raw(ITEMS_COPY).await?;
    for i in fold.items.values() {
        item_csv(&mut csv, i);
        if csv.0.len() >= CHUNK {
            copy.send(csv.0.as_bytes()).await?;
            csv.0.clear();
        }
    }
    copy.send(csv.0.as_bytes()).await?;
    copy.finish().await?;
    Ok(done)
}

/// An item event from its type and its data as stored.
fn parse(env: &Envelope, data: &str) -> anyhow::Result<ItemEvent> {
    let doc = format!(
        "{{\"event_type\":{},\"data\":{data}}}",
        Value::String(env.event_type.clone())
    );
    serde_json::from_str(&doc).map_err(|err| {
        anyhow::anyhow!(
            "event {} ({}) does not parse: {err}",
            env.event_id,
            env.event_type
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OverdueKind;

    fn at(h: i64) -> DateTime<Utc> {
        "2026-11-28T08:00:00.123456789Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            + chrono::Duration::hours(h)
    }

    fn env(position: i64) -> Envelope {
        Envelope {
            event_id: Uuid::now_v7(),
            event_type: String::new(),
            stream: String::new(),
            version: position,
            occurred_at: at(position),
            actor: "street:jiukeshu".into(),
            correlation_id: Uuid::nil(),
            causation_id: Uuid::nil(),
            data: Value::Null,
            position,
        }
    }

    fn registered(id: Uuid) -> ItemEvent {
        ItemEvent::ItemRegistered(Registered {
            item_id: id,
            district: "tongzhou".into(),
            street: "jiukeshu".into(),
            category: "basement_illegal_residence".into(),
            point_id: Uuid::nil(),
            point: serde_json::json!({"community": "园景阁\"西区\""}),
            source: "complaint".into(),
            complaint_id: Some(Uuid::from_u128(1)),
            urgency: "normal".into(),
            description: String::new(),
            respond_by: Some(at(24)),
            resolve_by: Some(at(168)),
            rebound_of: None,
        })
    }

    #[test]
    fn a_life_folds_into_one_row_and_two_journal_lines() {
        let id = Uuid::from_u128(7);
        let mut f = Fold::default();
        let events = vec![
            registered(id),
            ItemEvent::ComplaintLinked {
                item_id: id,
                complaint_id: Uuid::from_u128(2),
            },
            ItemEvent::ComplaintUnlinked {
                item_id: id,
                complaint_id: Uuid::from_u128(1),
                street: "jiukeshu".into(),
            },
            ItemEvent::ItemOverdue {
                item_id: id,
                street: "jiukeshu".into(),
                kind: OverdueKind::Respond,
            },
            ItemEvent::ItemOverdue {
                item_id: id,
                street: "jiukeshu".into(),
                kind: OverdueKind::Respond,
            },
            ItemEvent::ItemAcknowledged {
                item_id: id,
                street: "jiukeshu".into(),
            },
            ItemEvent::ExtensionApproved {
                item_id: id,
                street: "jiukeshu".into(),
                until: at(400),
                reason: "产权".into(),
            },
            ItemEvent::ItemClosurePending {
                item_id: id,
                street: "jiukeshu".into(),
                closure_id: Uuid::from_u128(9),
                outcome: "rectified".into(),
            },
            ItemEvent::ItemClosureRejected {
                item_id: id,
                street: "jiukeshu".into(),
                closure_id: Uuid::from_u128(9),
                reason: "照片".into(),
            },
            ItemEvent::ItemWrittenOff(WrittenOff {
                item_id: id,
                district: "tongzhou".into(),
                street: "jiukeshu".into(),
                category: "basement_illegal_residence".into(),
                point_id: Uuid::nil(),
                kind: "rectified".into(),
                closure_id: Some(Uuid::from_u128(10)),
            }),
            // An event of an item the log never registered changes nothing.
            ItemEvent::ItemAcknowledged {
                item_id: Uuid::from_u128(8),
                street: "x".into(),
            },
        ];
        let mut lines = vec![];
        for (n, ev) in events.into_iter().enumerate() {
            lines.extend(f.apply(&env(n as i64 + 1), ev).unwrap());
        }
        assert_eq!(f.items.len(), 1);
        let i = &f.items[&id];
        assert_eq!(i.complaint_ids, vec![Uuid::from_u128(2)]);
        assert_eq!(i.overdue, vec!["respond"]);
        assert_eq!(
            (i.status, i.closure_id),
            ("written_off", Some(Uuid::from_u128(10)))
        );
        assert_eq!(i.resolve_by, Some(at(400)));
        assert_eq!(i.extension.as_ref().unwrap()["status"], "approved");
        assert_eq!(
            (i.acknowledged_at, i.written_off_at),
            (Some(at(6)), Some(at(10)))
        );
        assert_eq!(i.updated_at, at(10));
        assert_eq!(lines.len(), 2);
        assert!(lines[0].registration && !lines[1].registration);
        assert_eq!((lines[0].position, lines[1].position), (1, 10));
        assert_eq!(lines[0].complaint_id, Some(Uuid::from_u128(1)));
        assert_eq!(lines[1].write_off_kind.as_deref(), Some("rectified"));

        // The row as COPY reads it: quotes doubled, nulls as empty fields, microseconds.
        let mut csv = Csv(String::new());
        item_csv(&mut csv, i);
        assert!(
            csv.0.contains(r#""{""community"":""园景阁\""西区\""""}""#),
            "{}",
            csv.0
        );
        assert!(csv.0.contains("2026-11-28T09:00:00.123456Z"), "{}", csv.0);
        assert!(csv.0.contains(",\"{respond}\","), "{}", csv.0);
        assert!(csv.0.ends_with('\n') && !csv.0.contains(",,,,,"));
    }

    #[test]
    fn a_second_registration_of_an_item_is_refused() {
        let id = Uuid::from_u128(7);
        let mut f = Fold::default();
        f.apply(&env(1), registered(id)).unwrap();
        assert!(f.apply(&env(2), registered(id)).is_err());
    }
}
