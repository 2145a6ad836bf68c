//! Whole-log replays for rebuilds: the log (and the foreign events a service applied) read in
//! pages on a second connection, parsed on another task, folded in memory by the service, and the
//! rows written with `COPY` — instead of a few statements per event.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::mpsc;
use uuid::Uuid;

/// A foreign event's envelope, its data left as text.
#[derive(serde::Deserialize)]
struct Wire<'a> {
    event_type: String,
    stream: String,
    occurred_at: DateTime<Utc>,
    actor: String,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

impl Logged {
    /// A foreign event as read holds its whole envelope in `data`: its fields taken out.
    fn opened(self) -> anyhow::Result<Logged> {
        if self.own {
            return Ok(self);
        }
        let w: Wire = serde_json::from_str(&self.data)
            .map_err(|e| anyhow::anyhow!("inbox event {}: {e}", self.event_id))?;
        Ok(Logged {
            own: false,
            event_id: self.event_id,
            stream: w.stream,
            event_type: w.event_type,
            occurred_at: w.occurred_at,
            actor: w.actor,
            data: w.data.get().to_string(),
        })
    }
}

/// One event as a replay reads it: the service's own, or a foreign one it applied (its inbox).
#[derive(Debug, Clone)]
pub struct Logged {
    pub own: bool,
    pub event_id: Uuid,
    pub stream: String,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    /// The event's data as JSON text.
    pub data: String,
}

const PAGE: i64 = 5_000;

/// Reads the own log and the inbox merged in apply order (the order a rebuild must follow), and
/// passes each event through `parse` on a task of its own while the caller folds the previous
/// page. `fold` gets the events in order; the numbers of own and foreign events read are returned.
pub async fn fold_log<T: Send + 'static>(
    pool: &PgPool,
    parse: fn(Logged) -> anyhow::Result<T>,
    mut fold: impl FnMut(T) -> anyhow::Result<()>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<(u64, u64)> {
    let (rows_tx, mut rows) = mpsc::channel::<Vec<Logged>>(2);
    let (pages_tx, mut pages) = mpsc::channel::<anyhow::Result<Vec<(bool, T)>>>(2);
    let reader = tokio::spawn(read_log(pool.clone(), rows_tx));
    let parser = tokio::spawn(async move {
        while let Some(raw) = rows.recv().await {
            let page = raw
                .into_iter()
                .map(|l| Ok((l.own, parse(l.opened()?)?)))
                .collect::<anyhow::Result<Vec<(bool, T)>>>();
            let failed = page.is_err();
            if pages_tx.send(page).await.is_err() || failed {
                return;
            }
        }
    });
    let (mut own, mut foreign) = (0u64, 0u64);
    let folded = async {
        while let Some(page) = pages.recv().await {
            for (is_own, ev) in page? {
                if is_own {
                    own += 1;
                } else {
                    foreign += 1;
                }
                fold(ev)?;
            }
            progress(own + foreign);
        }
        anyhow::Ok(())
    }
    .await;
    // A failed fold drops the receiver: the reader and parser stop at their next send.
    drop(pages);
    let read = reader.await?;
    parser.await?;
    folded?;
    read?;
    Ok((own, foreign))
}

/// The own log and the inbox, merged by apply order, in pages. Each is read by its own index in
/// key order (one query over both would sort what remains of them for every page).
async fn read_log(pool: PgPool, pages: mpsc::Sender<Vec<Logged>>) -> anyhow::Result<()> {
    let mut c = pool.acquire().await?;
    let mut own = Source::new(
        "select apply_seq, true as own, event_id, stream, event_type, occurred_at, actor, data::text as data
         from events where apply_seq > $1 order by apply_seq limit $2",
    );
    // The envelope whole, as text, opened by the parser: cheaper for PostgreSQL than taking it apart.
    let mut inbox = Source::new(
        "select apply_seq, false as own, event_id, '' as stream, '' as event_type, now() as occurred_at, '' as actor,
                envelope::text as data
         from inbox where apply_seq > $1 order by apply_seq limit $2",
    );
    loop {
        own.refill(&mut c).await?;
        inbox.refill(&mut c).await?;
        let mut page = Vec::with_capacity(PAGE as usize);
        loop {
            let next = match (own.rows.front(), inbox.rows.front()) {
                (Some(a), Some(b)) if a.0 < b.0 => &mut own,
                (Some(_), Some(_)) => &mut inbox,
                (Some(_), None) if inbox.done => &mut own,
                (None, Some(_)) if own.done => &mut inbox,
                _ => break,
            };
            page.extend(next.rows.pop_front().map(|(_, l)| l));
        }
        if page.is_empty() {
            return Ok(());
        }
        if pages.send(page).await.is_err() {
            return Ok(());
        }
    }
}

/// One table read in key order, a page ahead.
struct Source {
    sql: &'static str,
    after: i64,
    done: bool,
    rows: std::collections::VecDeque<(i64, Logged)>,
}

impl Source {
    fn new(sql: &'static str) -> Self {
        Source {
            sql,
            after: -1,
            done: false,
            rows: Default::default(),
        }
    }

    /// The next page, once the last is used up.
    async fn refill(&mut self, c: &mut PgConnection) -> anyhow::Result<()> {
        if self.done || !self.rows.is_empty() {
            return Ok(());
        }
        let rows = sqlx::query(self.sql)
            .bind(self.after)
            .bind(PAGE)
            .fetch_all(&mut *c)
            .await?;
        self.done = (rows.len() as i64) < PAGE;
        for r in rows {
            let seq: i64 = r.try_get("apply_seq")?;
            self.after = seq;
            self.rows.push_back((
                seq,
                Logged {
                    own: r.try_get("own")?,
                    event_id: r.try_get("event_id")?,
                    stream: r.try_get("stream")?,
                    event_type: r.try_get("event_type")?,
                    occurred_at: r.try_get("occurred_at")?,
                    actor: r.try_get("actor")?,
                    data: r.try_get("data")?,
                },
            ));
        }
        Ok(())
    }
}

/// CSV for `COPY … (format csv)`: every value quoted, so only an unquoted empty field is null.
#[derive(Default)]
pub struct Csv(pub String);

impl Csv {
    pub fn text(&mut self, s: &str) {
        self.0.push('"');
        for (n, part) in s.split('"').enumerate() {
            if n > 0 {
                self.0.push_str("\"\"");
            }
            self.0.push_str(part);
        }
        self.0.push_str("\",");
    }
    pub fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.0.push(','),
        }
    }
    /// A number, in Rust's shortest round-trip form (PostgreSQL reads back the same value).
    pub fn opt_num<T: std::fmt::Display>(&mut self, n: Option<T>) {
        match n {
            Some(n) => {
                let _ = write!(self.0, "{n},");
            }
            None => self.0.push(','),
        }
    }
    pub fn num<T: std::fmt::Display>(&mut self, n: T) {
        let _ = write!(self.0, "{n},");
    }
    pub fn bool(&mut self, b: bool) {
        self.0.push_str(if b { "t," } else { "f," });
    }
    pub fn uuid(&mut self, u: Uuid) {
        let _ = write!(self.0, "{u},");
    }
    pub fn opt_uuid(&mut self, u: Option<Uuid>) {
        match u {
            Some(u) => self.uuid(u),
            None => self.0.push(','),
        }
    }
    /// Microseconds, truncated, as the binary protocol stores them.
    pub fn time(&mut self, t: DateTime<Utc>) {
        self.0
            .push_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true));
        self.0.push(',');
    }
    pub fn opt_time(&mut self, t: Option<DateTime<Utc>>) {
        match t {
            Some(t) => self.time(t),
            None => self.0.push(','),
        }
    }
    pub fn array<T: std::fmt::Display>(&mut self, xs: &[T]) {
        let inner: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
        let _ = write!(self.0, "\"{{{}}}\",", inner.join(","));
    }
    pub fn end(&mut self) {
        self.0.pop();
        self.0.push('\n');
    }
}

/// Bytes of CSV sent per `COPY` data message batch.
const CHUNK: usize = 4 << 20;

/// Writes `rows` with `copy` (a `COPY … from stdin (format csv)`), each row made by `write` on a
/// thread of its own while PostgreSQL takes the previous chunk. Returns the rows written.
pub async fn copy_rows<R: Send + Sync + 'static>(
    c: &mut PgConnection,
    copy: &'static str,
    rows: Vec<R>,
    write: fn(&mut Csv, &R),
) -> anyhow::Result<u64> {
    let n = rows.len() as u64;
    if rows.is_empty() {
        return Ok(0);
    }
    let (chunks_tx, mut chunks) = mpsc::channel::<String>(2);
    let writer = tokio::task::spawn_blocking(move || {
        let mut csv = Csv(String::with_capacity(CHUNK + 4096));
        for r in &rows {
            write(&mut csv, r);
            if csv.0.len() >= CHUNK {
                let full = std::mem::replace(&mut csv.0, String::with_capacity(CHUNK + 4096));
                if chunks_tx.blocking_send(full).is_err() {
                    return;
                }
            }
        }
        let _ = chunks_tx.blocking_send(csv.0);
    });
    let mut sink = c.copy_in_raw(copy).await?;
    while let Some(chunk) = chunks.recv().await {
        sink.send(chunk.as_bytes()).await?;
    }
    writer.await?;
    sink.finish().await?;
    Ok(n)
}
