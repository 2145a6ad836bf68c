//! The event envelope of CONTRACT §7.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A stored event, as published on NATS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub event_id: Uuid,
    pub event_type: String,
    pub stream: String,
    pub version: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    /// The person's display name, where the token gave one (not every event has it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub data: Value,
    /// Global position in the owning service's log (not part of the published body).
    #[serde(skip)]
    pub position: i64,
}

impl Envelope {
    /// The id inside `stream` after its `<kind>-` prefix, e.g. the item id of `item-<id>`.
    pub fn stream_id(&self) -> Option<Uuid> {
        self.stream
            .split_once('-')
            .and_then(|(_, id)| id.parse().ok())
    }

    /// A typed view of `data`, for a part of it (an id) that several event types share.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_value(self.data.clone())
            .map_err(|e| anyhow::anyhow!("{} {}: bad data: {e}", self.event_type, self.event_id))
    }
}

/// An event to append: its type and data. Built from a family's enum ([`crate::Event`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub data: Value,
}
