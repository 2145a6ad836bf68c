//! The ledger's command path: load an item's events, decide with the domain, append, project —
//! all in the caller's transaction.

use qingling_shared::store::{self as events, StoreError};
use qingling_shared::{Envelope, EventMeta};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{DomainError, Item, ItemEvent};
use crate::store;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no item {0}")]
    NotFound(Uuid),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for CommandError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(e))
    }
}

pub fn stream_of(item_id: Uuid) -> String {
    format!("item-{item_id}")
}

pub async fn load(c: &mut PgConnection, item_id: Uuid) -> Result<Item, CommandError> {
    let history = events::read_stream(c, &stream_of(item_id)).await?;
    let typed = history
        .iter()
        .map(ItemEvent::from_envelope)
        .collect::<anyhow::Result<Vec<_>>>()?;
    Item::from_events(&typed).ok_or(CommandError::NotFound(item_id))
}

/// Appends `new` to a stream at `expected` and projects each event.
pub async fn record(
    c: &mut PgConnection,
    item_id: Uuid,
    expected: i64,
    new: &[ItemEvent],
    meta: &EventMeta,
) -> Result<Vec<Envelope>, CommandError> {
    let stored = events::append(
        c,
        &stream_of(item_id),
        expected,
        &new.iter().map(ItemEvent::to_new_event).collect::<Vec<_>>(),
        meta,
    )
    .await?;
    for (env, ev) in stored.iter().zip(new) {
        store::project(c, env, ev).await?;
    }
    Ok(stored)
}

/// Runs a command on an existing item.
pub async fn execute(
    c: &mut PgConnection,
    item_id: Uuid,
    meta: &EventMeta,
    decide: impl FnOnce(&Item) -> Result<Vec<ItemEvent>, DomainError>,
) -> Result<Vec<Envelope>, CommandError> {
    let item = load(c, item_id).await?;
    let new = decide(&item)?;
    record(c, item_id, item.version, &new, meta).await
}
