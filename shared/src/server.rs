//! The HTTP server, with the connection limits of CONTRACT §13: a request's headers must arrive
//! within `header` (and a kept-alive connection waiting for its next request closes after it too),
//! its body within `body`, a connection silent both ways for `idle` closes, and at most
//! `max_connections` are open at once (past it, new connections are closed at once).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The connection limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub header: Duration,
    pub body: Duration,
    pub idle: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header: Duration::from_secs(10),
            body: Duration::from_secs(30),
            idle: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

impl Limits {
    /// `QINGLING_HEADER_TIMEOUT`, `QINGLING_BODY_TIMEOUT`, `QINGLING_IDLE_TIMEOUT` (humantime) and
    /// `QINGLING_MAX_CONNECTIONS`, each defaulting to CONTRACT §13's figure.
    pub fn from_env() -> anyhow::Result<Limits> {
        let d = Limits::default();
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let duration = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            match var(name) {
                Some(v) => humantime::parse_duration(&v)
                    .with_context(|| format!("{name}={v:?} is not a duration like 10s")),
                None => Ok(default),
            }
        };
        Ok(Limits {
            header: duration("QINGLING_HEADER_TIMEOUT", d.header)?,
            body: duration("QINGLING_BODY_TIMEOUT", d.body)?,
            idle: duration("QINGLING_IDLE_TIMEOUT", d.idle)?,
            max_connections: match var("QINGLING_MAX_CONNECTIONS") {
                Some(v) => v
                    .parse()
                    .context("QINGLING_MAX_CONNECTIONS must be a number")?,
                None => d.max_connections,
            },
        })
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then lets requests in flight finish
/// (for up to 10 s: a live stream does not finish by itself).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only: HTTP/2 without TLS would escape the header deadline.
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header);
    let builder = Arc::new(builder);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("qingling_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        stream.set_nodelay(true).ok();
        let (io, last) = Watched::new(stream);
        let service = router.clone().map_request(
            move |req: axum::extract::Request<hyper::body::Incoming>| {
                let mut req = req.map(|b| {
                    axum::body::Body::new(DeadlineBody {
                        inner: b,
                        deadline: Box::pin(tokio::time::sleep(limits.body)),
                    })
                });
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        );
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        let idle = limits.idle;
        connections.spawn(async move {
            tokio::select! {
                _ = conn => {}
                () = silent_for(idle, last) => {
                    tracing::debug!(%peer, "closing a connection silent for {idle:?}");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    // Live streams end now; the requests in flight finish.
    DRAINING.send_replace(true);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s of shutdown; closing them");
    }
    connections.abort_all();
    Ok(())
}

static DRAINING: std::sync::LazyLock<tokio::sync::watch::Sender<bool>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(false));

/// Resolves when the server begins to stop: a response that never ends by itself (a live
/// stream) ends then, so that stopping waits only for real requests.
pub async fn draining() {
    let mut rx = DRAINING.subscribe();
    rx.wait_for(|d| *d).await.ok();
}

/// Resolves once nothing was read or written for `idle`.
async fn silent_for(idle: Duration, last: Arc<Activity>) {
    loop {
        let quiet = last.quiet();
        if quiet >= idle {
            return;
        }
        tokio::time::sleep(idle - quiet).await;
    }
}

/// When a connection last moved a byte.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn quiet(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A stream that records its activity, and gives the HTTP layer's own bare error answers (a
/// request line or header it cannot parse: 400, 414, 431, sent before any handler runs) a
/// problem+json body like every other refusal.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    /// A rewritten error answer being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

/// Whether `buf` is a whole bare error answer: a 4xx status line, no body, nothing after.
fn is_bare_error(buf: &[u8]) -> bool {
    buf.starts_with(b"HTTP/1.1 4")
        && buf.len() < 1024
        && buf.windows(4).position(|w| w == b"\r\n\r\n") == Some(buf.len() - 4)
        && buf
            .windows(19)
            .any(|w| w.eq_ignore_ascii_case(b"content-length: 0\r\n"))
}

/// The same answer with a problem+json body.
fn problem_answer(bare: &[u8]) -> Vec<u8> {
    let line = bare.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.splitn(3, ' ').skip(1);
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(400);
    let title = parts.next().unwrap_or("Bad Request").to_string();
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": "the request could not be read as HTTP (its request line or a header is malformed or too long)",
    })
    .to_string();
    format!(
        "HTTP/1.1 {status} {title}\r\nconnection: close\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<S> Watched<S> {
    fn new(inner: S) -> (Self, Arc<Activity>) {
        let activity = Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        });
        (
            Watched {
                inner,
                activity: activity.clone(),
                pending: None,
            },
            activity,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() && is_bare_error(buf) {
            this.pending = Some((problem_answer(buf), 0));
        }
        if let Some((bytes, written)) = this.pending.as_mut() {
            while *written < bytes.len() {
                match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) => *written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            this.pending = None;
            this.activity.touch();
            // The bare answer counts as written: it went out, with its body.
            return Poll::Ready(Ok(buf.len()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that must arrive whole by a deadline (a body dripping a byte at a time would
/// otherwise hold its connection for ever).
struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Some(Err("the request body did not arrive in time".into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The address a request came from (the direct peer; behind a proxy, the proxy).
pub fn peer(req: &axum::extract::Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_layers_bare_errors_get_a_problem_body() {
        let bare = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 16:28:21 GMT\r\n\r\n";
        assert!(is_bare_error(bare));
        let answer = String::from_utf8(problem_answer(bare)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(answer.contains("content-type: application/problem+json"));
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], 400);
        let len: usize = answer
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        // A handler's answers always carry a body, and a body's bytes are never rewritten.
        assert!(!is_bare_error(
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 57\r\n\r\n"
        ));
        assert!(!is_bare_error(
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!is_bare_error(b"{\"HTTP/1.1 400\"}"));
    }
}
