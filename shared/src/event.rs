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

    /// Typed view of `data`.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_value(self.data.clone())
            .map_err(|e| anyhow::anyhow!("{} {}: bad data: {e}", self.event_type, self.event_id))
    }
}

/// An event to append: its type and data.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub data: Value,
}

impl NewEvent {
    pub fn new(event_type: impl Into<String>, data: Value) -> Self {
        Self {
            event_type: event_type.into(),
            data,
        }
    }
}

/// Who and what caused the events being appended.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub actor: String,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
}

tokio::task_local! {
    /// The correlation id of the HTTP request being served (from `X-Correlation-Id`, or new).
    pub static CORRELATION_ID: Uuid;
}

/// The correlation id of the request this task serves, if any.
pub fn current_correlation_id() -> Option<Uuid> {
    CORRELATION_ID.try_with(|id| *id).ok()
}

impl EventMeta {
    /// Events caused directly by a request: caused by `request_id`, correlated with the request's
    /// correlation id (so a client's `X-Correlation-Id` follows its events through every service).
    pub fn from_request(actor: impl Into<String>, request_id: Uuid) -> Self {
        Self {
            actor: actor.into(),
            correlation_id: current_correlation_id().unwrap_or(request_id),
            causation_id: request_id,
        }
    }

    /// Events caused by consuming `cause`: same actor and correlation, caused by that event.
    pub fn caused_by(cause: &Envelope) -> Self {
        Self {
            actor: cause.actor.clone(),
            correlation_id: cause.correlation_id,
            causation_id: cause.event_id,
        }
    }
}
