//! Group commit for registrations (接诉): the registrations that arrive while one transaction is
//! being written go together into the next — one append-lock acquisition, a few multi-row
//! statements and one commit for all of them, instead of a dozen statements and a commit each.
//! Nothing waits on purpose: a lone call is written at once, and batches grow only under load.
//! Every caller is answered after its registration committed (or did not).

use std::collections::HashSet;
use std::sync::Arc;

use qingling_shared::store::{self as events, StoreError};
use qingling_shared::Envelope;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use uuid::Uuid;

use crate::domain::Caller;
use crate::{projector, store};

/// Most registrations written in one transaction.
const BATCH: usize = 128;

/// Transactions in flight at once: one writes its rows while another finishes. They take in turn
/// only what they share: the street counters (updated last before the events), the log's lock
/// and the commit.
const WRITERS: usize = 2;

/// One registration, ready to write: its prepared events (received, dispatched) and answer.
pub struct Registration {
    pub complaint_id: Uuid,
    pub actor: String,
    /// `Idempotency-Key` and the request's hash.
    pub key: Option<(String, String)>,
    pub response: Value,
    pub caller: Option<Caller>,
    pub events: Vec<Envelope>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Created,
    /// The idempotency key was used before: answer with the saved response.
    KeyTaken,
}

type Reply = oneshot::Sender<Result<Written, StoreError>>;

#[derive(Clone)]
pub struct Registrar {
    queue: mpsc::Sender<(Registration, Reply)>,
}

impl Registrar {
    /// Starts the writer task; it ends when every `Registrar` clone is dropped.
    pub fn start(pool: PgPool, relay_wake: Arc<Notify>) -> Registrar {
        let (queue, rx) = mpsc::channel(4 * BATCH);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WRITERS {
            let (pool, relay_wake, rx) = (pool.clone(), relay_wake.clone(), rx.clone());
            // A writer that panics takes only its group's answers with it (those callers get an
            // error; nothing of theirs committed): another takes its place.
            tokio::spawn(async move {
                loop {
                    let writer = write_loop(pool.clone(), relay_wake.clone(), rx.clone());
                    match tokio::spawn(writer).await {
                        Err(e) if e.is_panic() => {
                            tracing::error!(error = %e, "registration writer panicked; starting another")
                        }
                        _ => return,
                    }
                }
            });
        }
        Registrar { queue }
    }

    pub async fn register(&self, r: Registration) -> Result<Written, StoreError> {
        let (tx, rx) = oneshot::channel();
        let gone = || StoreError::Corrupt(anyhow::anyhow!("the registration writer stopped"));
        self.queue.send((r, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

async fn write_loop(
    pool: PgPool,
    relay_wake: Arc<Notify>,
    rx: Arc<Mutex<mpsc::Receiver<(Registration, Reply)>>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.lock().await.recv_many(&mut batch, BATCH).await > 0 {
        let regs: Vec<&Registration> = batch.iter().map(|(r, _)| r).collect();
        match write_retrying(&pool, &regs).await {
            Ok(written) => {
                relay_wake.notify_one();
                for ((_, reply), w) in batch.drain(..).zip(written) {
                    let _ = reply.send(Ok(w));
                }
            }
            // One failing registration must not fail its neighbours: each alone, then.
            Err(e) if batch.len() > 1 => {
                tracing::warn!(registrations = batch.len(), error = %e, "group write failed; writing each alone");
                for (r, reply) in batch.drain(..) {
                    let result = write(&pool, &[&r]).await.map(|mut w| w.remove(0));
                    if result.is_ok() {
                        relay_wake.notify_one();
                    }
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                if let Some((_, reply)) = batch.pop() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

/// [`write`], again when PostgreSQL broke a deadlock by aborting it (a consumer batch may lock the
/// same street counters in another order): a group is not split up for that.
async fn write_retrying(pool: &PgPool, regs: &[&Registration]) -> Result<Vec<Written>, StoreError> {
    let mut attempt = 1;
    loop {
        match write(pool, regs).await {
            Err(StoreError::Database(sqlx::Error::Database(db)))
                if attempt < 3 && matches!(db.code().as_deref(), Some("40P01" | "40001")) =>
            {
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Writes `regs` in one transaction: idempotency keys, callers, projections, then the events.
/// Answers, in order, whether each was written or its key was taken.
async fn write(pool: &PgPool, regs: &[&Registration]) -> Result<Vec<Written>, StoreError> {
    let mut tx = pool.begin().await?;
    // Keys repeated within the batch: the first claims, the rest replay its answer.
    let mut seen = HashSet::new();
    let mut claims: Vec<(usize, store::Claim)> = regs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.key.as_ref().map(|k| (i, r, k)))
        .filter(|(_, r, (key, _))| seen.insert((r.actor.as_str(), key.as_str())))
        .map(|(i, r, (key, hash))| {
            let claim = store::Claim {
                actor: &r.actor,
                key,
                request_hash: hash,
                response: &r.response,
            };
            (i, claim)
        })
        .collect();
    // Claimed in one order, so two groups sharing keys queue instead of deadlocking.
    claims.sort_by(|(_, a), (_, b)| (a.actor, a.key).cmp(&(b.actor, b.key)));
    let mut written: Vec<Written> = regs
        .iter()
        .map(|r| match r.key {
            Some(_) => Written::KeyTaken,
            None => Written::Created,
        })
        .collect();
    if !claims.is_empty() {
        let (at, rows): (Vec<usize>, Vec<store::Claim>) = claims.into_iter().unzip();
        let claimed = store::claim_idempotency_keys(&mut tx, &rows, 201).await?;
        for (i, c) in at.iter().zip(&rows) {
            if claimed.iter().any(|(a, k)| a == c.actor && k == c.key) {
                written[*i] = Written::Created;
            }
        }
    }
    let new: Vec<&Registration> = regs
        .iter()
        .zip(&written)
        .filter(|(_, w)| **w == Written::Created)
        .map(|(r, _)| *r)
        .collect();
    if !new.is_empty() {
        let callers: Vec<_> = new
            .iter()
            .filter_map(|r| r.caller.as_ref().map(|c| (r.complaint_id, c)))
            .collect();
        if !callers.is_empty() {
            store::insert_callers(&mut tx, &callers).await?;
        }
        let event_groups: Vec<&[Envelope]> = new.iter().map(|r| r.events.as_slice()).collect();
        projector::project_registrations(&mut tx, &event_groups)
            .await
            .map_err(|e| match e.downcast::<sqlx::Error>() {
                Ok(db) => StoreError::Database(db),
                Err(e) => StoreError::Corrupt(e),
            })?;
        // Written last: the log's lock is held only for this statement and the commit.
        let mut all: Vec<Envelope> = new.iter().flat_map(|r| r.events.clone()).collect();
        events::write(&mut tx, &mut all).await?;
    }
    tx.commit().await?;
    Ok(written)
}
