//! The ledger's command path: load an item's events, decide with the domain, append, project —
//! all in the caller's transaction.

use qingling_events::Event;
use qingling_shared::store::{self as events, StoreError};
use qingling_shared::{Envelope, EventMeta};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{DomainError, Item, ItemEvent, Registered};
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

pub use qingling_events::ledger::stream as stream_of;

pub async fn load(c: &mut PgConnection, item_id: Uuid) -> Result<Item, CommandError> {
    let history = events::read_stream(c, &stream_of(item_id)).await?;
    let typed = history
        .iter()
        .map(ItemEvent::from_own)
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

/// Registers several new items in one write (their streams are new: version 0).
pub async fn record_new(
    c: &mut PgConnection,
    new: &[(Registered, EventMeta)],
) -> Result<(), CommandError> {
    if new.is_empty() {
        return Ok(());
    }
    let mut all = Vec::with_capacity(new.len());
    for (r, meta) in new {
        let ev = ItemEvent::ItemRegistered(r.clone()).to_new_event();
        all.extend(events::prepare(&stream_of(r.item_id), 0, &[ev], meta));
    }
    events::write(c, &mut all).await?;
    let items: Vec<_> = all.iter().zip(new).map(|(e, (r, _))| (e, r)).collect();
    store::project_registered(c, &items).await?;
    Ok(())
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
