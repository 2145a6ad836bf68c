//! Who and what caused an event. The envelope itself and the events are `qingling-events`.

use uuid::Uuid;

pub use qingling_events::{Envelope, NewEvent};

/// Who and what caused the events being appended.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub actor: String,
    /// The person's display name, if the token gave one.
    pub actor_name: Option<String>,
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
            actor_name: None,
            correlation_id: current_correlation_id().unwrap_or(request_id),
            causation_id: request_id,
        }
    }

    /// Events caused by a request of `caller`: its `sub` as the actor, with its display name.
    pub fn for_caller(caller: &crate::Caller, request_id: Uuid) -> Self {
        Self {
            actor_name: caller.name.clone(),
            ..Self::from_request(&caller.sub, request_id)
        }
    }

    /// Events caused by consuming `cause`: same actor and correlation, caused by that event.
    pub fn caused_by(cause: &Envelope) -> Self {
        Self {
            actor: cause.actor.clone(),
            actor_name: cause.actor_name.clone(),
            correlation_id: cause.correlation_id,
            causation_id: cause.event_id,
        }
    }
}
