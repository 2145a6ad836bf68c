//! A generated history shaped like real traffic, for the rebuild benchmarks: cases (a problem at a
//! point) go through the three services as they do live — a call received and dispatched (some
//! routed by their point), the item registered, a repeat call linked to one case in five, one in
//! ten returned as not the street's area and re-dispatched to another street (its first item
//! written off as returned), acknowledged, overdue flags, extensions approved or rejected, photos
//! and a write-off request (one in six rejected and filed again), approval and write-off, a
//! follow-up for half, a caller's number revealed for one in twenty; one in twenty stays open.
//! Cases overlap in the log (a window of them at a time interleaves step by step).
//!
//! Each service gets its own log and the foreign events it applies (its inbox), in apply order,
//! cut at `events` in all. The history is regenerated for each table written (deterministic ids),
//! so nothing of it is held in memory.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use qingling_events::closure::{
    self, Checklist, ClosureEvent, Evidence, Outcome, Requested, Uploaded,
};
use qingling_events::intake::{
    self, ComplaintEvent, Dispatched, Received, ReturnReason, RoutedBy, Satisfaction, Urgency,
};
use qingling_events::ledger::{
    self, ItemEvent, OverdueKind, Registered, Source, WriteOffKind, WrittenOff,
};
use qingling_events::{Envelope, Event};
use qingling_shared::replay::Csv;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Svc {
    Intake,
    Ledger,
    Closure,
}

impl Svc {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Svc::Intake => "intake",
            Svc::Ledger => "ledger",
            Svc::Closure => "closure",
        }
    }

    /// Whether this service applies `producer`'s events to its projections (the ledger's rebuild
    /// reads its own log only).
    fn applies(self, producer: Svc) -> bool {
        producer == self || (self != Svc::Ledger && producer == Svc::Ledger)
    }
}

enum Ev {
    Intake(ComplaintEvent),
    Ledger(ItemEvent),
    Closure(ClosureEvent),
}

/// One event of a case: its step (cases interleave by step), stream and version.
struct Step {
    step: u8,
    stream: String,
    version: i64,
    actor: &'static str,
    ev: Ev,
}

const STREETS: [&str; 5] = ["jiukeshu", "yongshun", "zhongcang", "xinhua", "songzhuang"];
/// Cases interleaved at a time.
const WINDOW: u64 = 2_000;

fn id(g: u64, kind: u64) -> Uuid {
    Uuid::from_u64_pair(kind << 56 | g, 0x5eed)
}

/// The events of case `g`, `at` standing for the time of its first.
fn case(g: u64, at: DateTime<Utc>) -> Vec<Step> {
    let mut out = vec![];
    let mut versions: HashMap<String, i64> = HashMap::new();
    let mut push = |step: u8, stream: String, actor: &'static str, ev: Ev| {
        let v = versions.entry(stream.clone()).or_default();
        *v += 1;
        out.push(Step {
            step,
            stream,
            version: *v,
            actor,
            ev,
        });
    };
    let district = "tongzhou".to_string();
    let category = "basement_illegal_residence".to_string();
    let mut street = STREETS[(g % 5) as usize].to_string();
    let point_id = id(g, 1);
    let point = serde_json::json!({"community": format!("压测{}", g % 997), "building": (g % 40).to_string(), "basement": format!("B{}", g % 3 + 1)});
    let (a, b) = (id(g, 2), id(g, 3));
    let mut item = id(g, 4);
    let dispatch = |c: Uuid, street: &str, redispatch: bool, routed_by| Dispatched {
        complaint_id: c,
        district: district.clone(),
        street: street.to_string(),
        category: category.clone(),
        urgency: Urgency::Normal,
        point_id,
        point: point.clone(),
        description: "地下室有人居住".into(),
        received_at: at,
        dispatched_at: at,
        respond_by: at + Duration::hours(2),
        resolve_by: at + Duration::days(7),
        redispatch,
        routed_by,
    };
    let received = |c: Uuid| {
        ComplaintEvent::ComplaintReceived(Received {
            complaint_id: c,
            district: district.clone(),
            street: STREETS[(g % 5) as usize].to_string(),
            category: category.clone(),
            urgency: Urgency::Normal,
            point_id,
            point: point.clone(),
            description: "地下室有人居住".into(),
            received_at: at,
        })
    };
    let registered = |item: Uuid, street: &str, complaint: Uuid| {
        ItemEvent::ItemRegistered(Registered {
            item_id: item,
            district: district.clone(),
            street: street.to_string(),
            category: category.clone(),
            point_id,
            point: point.clone(),
            source: Source::Complaint,
            complaint_id: Some(complaint),
            urgency: Urgency::Normal,
            description: "地下室有人居住".into(),
            respond_by: Some(at + Duration::hours(2)),
            resolve_by: Some(at + Duration::days(7)),
            rebound_of: None,
        })
    };
    let written_off = |item: Uuid, street: &str, kind, closure_id| {
        ItemEvent::ItemWrittenOff(WrittenOff {
            item_id: item,
            district: district.clone(),
            street: street.to_string(),
            category: category.clone(),
            point_id,
            kind,
            closure_id,
        })
    };
    let routed = if g.is_multiple_of(3) {
        Some(RoutedBy::Point)
    } else {
        None
    };
    push(1, intake::stream(a), "operator", Ev::Intake(received(a)));
    push(
        1,
        intake::stream(a),
        "operator",
        Ev::Intake(ComplaintEvent::ComplaintDispatched(dispatch(
            a, &street, false, routed,
        ))),
    );
    push(
        2,
        ledger::stream(item),
        "operator",
        Ev::Ledger(registered(item, &street, a)),
    );
    if g.is_multiple_of(5) {
        push(3, intake::stream(b), "operator", Ev::Intake(received(b)));
        push(
            3,
            intake::stream(b),
            "operator",
            Ev::Intake(ComplaintEvent::ComplaintDispatched(dispatch(
                b, &street, false, None,
            ))),
        );
        push(
            4,
            ledger::stream(item),
            "operator",
            Ev::Ledger(ItemEvent::ComplaintLinked {
                item_id: item,
                complaint_id: b,
            }),
        );
    }
    if g % 20 == 1 {
        push(
            4,
            intake::stream(a),
            "street",
            Ev::Intake(ComplaintEvent::CallerRevealed {
                complaint_id: a,
                street: street.clone(),
            }),
        );
    }
    if g % 10 == 3 {
        let reason_code = Some(ReturnReason::NotOurArea);
        push(
            5,
            intake::stream(a),
            "street",
            Ev::Intake(ComplaintEvent::ComplaintReturned {
                complaint_id: a,
                street: street.clone(),
                reason: "不属于本辖区".into(),
                reason_code,
            }),
        );
        push(
            6,
            ledger::stream(item),
            "street",
            Ev::Ledger(written_off(item, &street, WriteOffKind::Returned, None)),
        );
        street = STREETS[((g + 1) % 5) as usize].to_string();
        item = id(g, 5);
        push(
            7,
            intake::stream(a),
            "operator",
            Ev::Intake(ComplaintEvent::ComplaintDispatched(dispatch(
                a, &street, true, None,
            ))),
        );
        push(
            8,
            ledger::stream(item),
            "operator",
            Ev::Ledger(registered(item, &street, a)),
        );
    }
    push(
        9,
        ledger::stream(item),
        "street",
        Ev::Ledger(ItemEvent::ItemAcknowledged {
            item_id: item,
            street: street.clone(),
        }),
    );
    if g.is_multiple_of(10) {
        push(
            10,
            ledger::stream(item),
            "system",
            Ev::Ledger(ItemEvent::ItemOverdue {
                item_id: item,
                street: street.clone(),
                kind: OverdueKind::Resolve,
            }),
        );
    }
    if g % 8 == 1 {
        let (until, reason) = (at + Duration::days(30), "产权复杂".to_string());
        push(
            10,
            ledger::stream(item),
            "street",
            Ev::Ledger(ItemEvent::ExtensionRequested {
                item_id: item,
                street: street.clone(),
                until,
                reason: reason.clone(),
            }),
        );
        let decided = if g % 16 == 1 {
            ItemEvent::ExtensionApproved {
                item_id: item,
                street: street.clone(),
                until,
                reason,
            }
        } else {
            ItemEvent::ExtensionRejected {
                item_id: item,
                street: street.clone(),
                until,
                reason,
            }
        };
        push(11, ledger::stream(item), "reviewer", Ev::Ledger(decided));
    }
    if g % 20 == 7 {
        return out;
    }
    let sha = format!("{:064x}", g);
    push(
        12,
        closure::evidence_stream(&sha),
        "street",
        Ev::Closure(ClosureEvent::EvidenceUploaded(Uploaded {
            sha256: sha.clone(),
            bytes: 180_000 + (g % 1000) as i64,
            content_type: "image/jpeg".into(),
            district: district.clone(),
            street: street.clone(),
            item_id: Some(item),
            taken_at: None,
            lat: None,
            long: None,
        })),
    );
    let request =
        |step: u8, closure_id: Uuid, push: &mut dyn FnMut(u8, String, &'static str, Ev)| {
            push(
                step,
                closure::stream(closure_id),
                "street",
                Ev::Closure(ClosureEvent::ClosureRequested(Requested {
                    closure_id,
                    item_id: item,
                    district: district.clone(),
                    street: street.clone(),
                    category: category.clone(),
                    outcome: Outcome::Rectified,
                    checklist: Checklist {
                        no_illegal_residents: true,
                        no_garbage_or_unsafe_partitions: true,
                        no_illegal_use: true,
                        layout_restored: true,
                    },
                    rooms_cleared: Some((g % 6) as i32 + 1),
                    partition_area_m2: Some(12.5 + (g % 40) as f64),
                    evidence: vec![Evidence {
                        kind: "photo".into(),
                        uri: format!("evidence:{sha}"),
                        sha256: Some(sha.clone()),
                        bytes: None,
                        content_type: None,
                    }],
                    note: String::new(),
                })),
            );
            push(
                step + 1,
                ledger::stream(item),
                "street",
                Ev::Ledger(ItemEvent::ItemClosurePending {
                    item_id: item,
                    street: street.clone(),
                    closure_id,
                    outcome: Outcome::Rectified,
                    rooms_cleared: Some((g % 6) as i32 + 1),
                    partition_area_m2: Some(12.5 + (g % 40) as f64),
                }),
            );
        };
    let mut closure_id = id(g, 6);
    request(13, closure_id, &mut push);
    if g % 6 == 2 {
        let reason = "照片不清".to_string();
        push(
            15,
            closure::stream(closure_id),
            "reviewer",
            Ev::Closure(ClosureEvent::ClosureRejected {
                closure_id,
                item_id: item,
                reviewer: "reviewer".into(),
                reason: reason.clone(),
            }),
        );
        push(
            16,
            ledger::stream(item),
            "reviewer",
            Ev::Ledger(ItemEvent::ItemClosureRejected {
                item_id: item,
                street: street.clone(),
                closure_id,
                reason,
            }),
        );
        closure_id = id(g, 7);
        request(17, closure_id, &mut push);
    }
    push(
        19,
        closure::stream(closure_id),
        "reviewer",
        Ev::Closure(ClosureEvent::ClosureApproved {
            closure_id,
            item_id: item,
            reviewer: "reviewer".into(),
            outcome: Outcome::Rectified,
            note: None,
        }),
    );
    push(
        20,
        ledger::stream(item),
        "reviewer",
        Ev::Ledger(written_off(
            item,
            &street,
            WriteOffKind::Rectified,
            Some(closure_id),
        )),
    );
    if g.is_multiple_of(2) {
        let satisfaction = [
            Satisfaction::Satisfied,
            Satisfaction::BasicallySatisfied,
            Satisfaction::Dissatisfied,
            Satisfaction::Unknown,
        ][(g / 2 % 4) as usize];
        for c in if g.is_multiple_of(5) {
            vec![a, b]
        } else {
            vec![a]
        } {
            push(
                21,
                intake::stream(c),
                "operator",
                Ev::Intake(ComplaintEvent::FollowUpRecorded {
                    complaint_id: c,
                    satisfaction,
                    note: String::new(),
                }),
            );
        }
    }
    out
}

/// Which of a service's tables a pass writes.
#[derive(Clone, Copy, PartialEq)]
enum Table {
    Events,
    Inbox,
}

/// Writes `service`'s log or inbox: the first `events` events it applies.
async fn write(
    c: &mut PgConnection,
    service: Svc,
    table: Table,
    events: u64,
) -> anyhow::Result<()> {
    let copy = match table {
        Table::Events => "copy events (position, event_id, stream, version, event_type, occurred_at, actor, correlation_id, causation_id, data, apply_seq) from stdin (format csv)",
        Table::Inbox => "copy inbox (event_id, apply_seq, envelope, source, position) from stdin (format csv)",
    };
    let mut sink = c.copy_in_raw(copy).await?;
    let base: DateTime<Utc> = "2026-01-01T00:00:00Z".parse()?;
    let (mut seq, mut taken) = (0i64, 0u64);
    let mut positions: HashMap<&str, i64> = HashMap::new();
    let mut csv = Csv::default();
    let mut g0 = 0u64;
    'all: loop {
        let mut window: Vec<(u8, u64, usize, Step)> = vec![];
        for g in g0..g0 + WINDOW {
            let at = base + Duration::milliseconds(30 * (seq + (g - g0) as i64 * 8));
            for (n, s) in case(g, at).into_iter().enumerate() {
                window.push((s.step, g, n, s));
            }
        }
        g0 += WINDOW;
        window.sort_unstable_by_key(|w| (w.0, w.1, w.2));
        for (_, g, n, s) in window {
            seq += 1;
            let (producer, new) = match &s.ev {
                Ev::Intake(e) => (Svc::Intake, e.to_new_event()),
                Ev::Ledger(e) => (Svc::Ledger, e.to_new_event()),
                Ev::Closure(e) => (Svc::Closure, e.to_new_event()),
            };
            let position = positions.entry(producer.name()).or_default();
            *position += 1;
            if !service.applies(producer) {
                continue;
            }
            taken += 1;
            if taken > events {
                break 'all;
            }
            let own = producer == service;
            if own != (table == Table::Events) {
                continue;
            }
            let env = Envelope {
                event_id: Uuid::from_u64_pair(g, n as u64 + 1),
                event_type: new.event_type,
                stream: s.stream,
                version: s.version,
                occurred_at: base + Duration::milliseconds(30 * seq),
                actor: s.actor.to_string(),
                actor_name: None,
                correlation_id: Uuid::from_u64_pair(g, 0),
                causation_id: Uuid::from_u64_pair(g, 0),
                data: new.data,
                position: *position,
            };
            if own {
                csv.num(*position);
                csv.uuid(env.event_id);
                csv.text(&env.stream);
                csv.num(env.version);
                csv.text(&env.event_type);
                csv.time(env.occurred_at);
                csv.text(&env.actor);
                csv.uuid(env.correlation_id);
                csv.uuid(env.causation_id);
                csv.text(&env.data.to_string());
                csv.num(seq);
            } else {
                csv.uuid(env.event_id);
                csv.num(seq);
                csv.text(&serde_json::to_string(&env)?);
                csv.text(producer.name());
                csv.num(*position);
            }
            csv.end();
            if csv.0.len() > 4 << 20 {
                sink.send(std::mem::take(&mut csv.0).as_bytes()).await?;
            }
        }
    }
    sink.send(csv.0.as_bytes()).await?;
    sink.finish().await?;
    Ok(())
}

/// Fills `service`'s (empty) log and inbox with the first `events` events of the history.
pub(crate) async fn generate(
    c: &mut PgConnection,
    service: Svc,
    events: u64,
) -> anyhow::Result<()> {
    write(c, service, Table::Events, events).await?;
    if service != Svc::Ledger {
        write(c, service, Table::Inbox, events).await?;
    }
    sqlx::query("select setval('apply_order', greatest((select max(apply_seq) from events), (select max(apply_seq) from inbox), 1))")
        .execute(&mut *c)
        .await?;
    // As a log that has been there a while: vacuumed (hint bits set, no autovacuum racing the
    // rebuild) and checkpointed (the load's WAL not flushed during the rebuild).
    sqlx::query("vacuum analyze events")
        .execute(&mut *c)
        .await?;
    sqlx::query("vacuum analyze inbox").execute(&mut *c).await?;
    sqlx::query("checkpoint").execute(&mut *c).await?;
    Ok(())
}
