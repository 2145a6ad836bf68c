//! The events of Qingling (CONTRACT §7), in one place: the envelope every event travels in, and one
//! serde-tagged enum per producing service with typed payloads. Producers build events only through
//! these enums and consumers `match` on them, so an event type is spelt once, here.
//!
//! The wire format is the contract: `event_type` is the enum's tag, `data` its payload, exactly as
//! earlier releases wrote them (`tests/wire.rs` replays their shapes).

pub mod closure;
pub mod envelope;
pub mod intake;
pub mod ledger;

pub use envelope::{Envelope, NewEvent};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// A family of events: the events one service produces on its streams.
pub trait Event: Serialize + DeserializeOwned + Sized {
    /// Every `event_type` of the family, as on the wire.
    const TYPES: &'static [&'static str];

    /// The event's `event_type`.
    fn event_type(&self) -> &'static str;

    /// Whether `event_type` belongs to this family.
    fn knows(event_type: &str) -> bool {
        Self::TYPES.contains(&event_type)
    }

    /// The event to append.
    fn to_new_event(&self) -> NewEvent {
        let mut v = serde_json::to_value(self).expect("events serialise");
        let data = v.get_mut("data").map(Value::take).unwrap_or(Value::Null);
        NewEvent {
            event_type: self.event_type().to_string(),
            data,
        }
    }

    /// A stored or published event of this family; `None` when its type is not of this family
    /// (another service's, or a newer release's that this one does not know).
    fn from_envelope(e: &Envelope) -> anyhow::Result<Option<Self>> {
        Self::parse(e.event_id, &e.event_type, &e.data)
    }

    /// An event of a service's own log, which holds only its own family.
    fn from_own(e: &Envelope) -> anyhow::Result<Self> {
        Self::from_envelope(e)?.ok_or_else(|| {
            anyhow::anyhow!(
                "event {} has a type of another family: {}",
                e.event_id,
                e.event_type
            )
        })
    }

    /// Like [`Event::from_envelope`], from the type and the data.
    fn parse(event_id: Uuid, event_type: &str, data: &Value) -> anyhow::Result<Option<Self>> {
        if !Self::knows(event_type) {
            return Ok(None);
        }
        serde_json::from_value(serde_json::json!({"event_type": event_type, "data": data}))
            .map(Some)
            .map_err(|err| unparsable(event_id, event_type, err))
    }

    /// From an event's type and its data as JSON text, as the log stores them (no `Value` in
    /// between: a rebuild parses millions).
    fn from_stored(event_id: Uuid, event_type: &str, data: &str) -> anyhow::Result<Option<Self>> {
        if !Self::knows(event_type) {
            return Ok(None);
        }
        let doc = format!(
            "{{\"event_type\":{},\"data\":{data}}}",
            Value::String(event_type.to_string())
        );
        serde_json::from_str(&doc)
            .map(Some)
            .map_err(|err| unparsable(event_id, event_type, err))
    }
}

fn unparsable(event_id: Uuid, event_type: &str, err: serde_json::Error) -> anyhow::Error {
    anyhow::anyhow!("event {event_id} ({event_type}) does not parse: {err}")
}

/// Implements [`Event`] for an enum whose variants are listed with their wire names once; the
/// serde tag of each variant is pinned to the same name by a test of the family.
macro_rules! event_family {
    ($enum:ident { $($variant:ident => $name:expr),+ $(,)? }) => {
        impl $crate::Event for $enum {
            const TYPES: &'static [&'static str] = &[$($name),+];

            fn event_type(&self) -> &'static str {
                match self {
                    $($enum::$variant { .. } => $name),+
                }
            }
        }
    };
}
pub(crate) use event_family;

#[cfg(test)]
pub(crate) fn assert_tag_matches<E: Event>(e: &E) {
    let v = serde_json::to_value(e).unwrap();
    assert_eq!(v["event_type"], e.event_type(), "serde tag of {e:?}", e = v);
}

/// Events as tests of every crate build them: complete, with plain values.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use crate::intake::{Dispatched, Urgency};
    use crate::ledger::{ItemEvent, Registered, Source};

    /// `item_registered` for a complaint's item at a new point of tongzhou's `street`.
    pub fn item_registered(item_id: Uuid, street: &str, complaint_id: Option<Uuid>) -> ItemEvent {
        ItemEvent::ItemRegistered(Registered {
            item_id,
            district: "tongzhou".into(),
            street: street.into(),
            category: "basement_illegal_residence".into(),
            point_id: Uuid::now_v7(),
            point: serde_json::json!({}),
            source: if complaint_id.is_some() {
                Source::Complaint
            } else {
                Source::Inspection
            },
            complaint_id,
            urgency: Urgency::Normal,
            description: String::new(),
            respond_by: None,
            resolve_by: None,
            rebound_of: None,
        })
    }

    /// `complaint_dispatched` of a new complaint to tongzhou's `street`, at `point_id`.
    pub fn dispatched(
        complaint_id: Uuid,
        street: &str,
        point_id: Uuid,
        now: DateTime<Utc>,
    ) -> Dispatched {
        Dispatched {
            complaint_id,
            district: "tongzhou".into(),
            street: street.into(),
            category: "basement_illegal_residence".into(),
            urgency: Urgency::Normal,
            point_id,
            point: serde_json::json!({"community": "小堡村"}),
            description: String::new(),
            received_at: now,
            dispatched_at: now,
            respond_by: now + chrono::Duration::days(1),
            resolve_by: now + chrono::Duration::days(7),
            redispatch: false,
            routed_by: None,
        }
    }
}
