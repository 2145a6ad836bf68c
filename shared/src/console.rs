//! Where the work console (CONTRACT §10) lives and whom it calls: the console is served by the
//! ledger and calls intake and closure across origins, which allow it by CORS.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The default listen addresses of CONTRACT §1.
pub const INTAKE_ADDR: (&str, &str) = ("QINGLING_INTAKE_ADDR", "127.0.0.1:8081");
pub const LEDGER_ADDR: (&str, &str) = ("QINGLING_LEDGER_ADDR", "127.0.0.1:8082");
pub const CLOSURE_ADDR: (&str, &str) = ("QINGLING_CLOSURE_ADDR", "127.0.0.1:8083");

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The address a browser on this machine reaches a service at: a wildcard listen address is
/// reached at the loopback one.
fn local_url((var_name, default): (&str, &str)) -> String {
    let addr = var(var_name).unwrap_or_else(|| default.into());
    let addr = addr
        .strip_prefix("0.0.0.0:")
        .or_else(|| addr.strip_prefix("[::]:"))
        .map(|port| format!("127.0.0.1:{port}"))
        .unwrap_or(addr);
    format!("http://{addr}")
}

/// The base URLs the console calls intake and closure at: `QINGLING_CONSOLE_INTAKE_URL` and
/// `QINGLING_CONSOLE_CLOSURE_URL`, by default the services' own listen addresses.
pub fn service_urls() -> (String, String) {
    let trim = |u: String| u.trim().trim_end_matches('/').to_string();
    (
        trim(var("QINGLING_CONSOLE_INTAKE_URL").unwrap_or_else(|| local_url(INTAKE_ADDR))),
        trim(var("QINGLING_CONSOLE_CLOSURE_URL").unwrap_or_else(|| local_url(CLOSURE_ADDR))),
    )
}

/// The origins the console is served from (`QINGLING_CONSOLE_ORIGINS`, comma-separated; by
/// default the ledger's own address, by IP and as localhost).
pub fn origins() -> Vec<String> {
    match var("QINGLING_CONSOLE_ORIGINS") {
        Some(list) => list
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect(),
        None => {
            let own = local_url(LEDGER_ADDR);
            let mut all = vec![own.clone()];
            if let Some(port) = own.strip_prefix("http://127.0.0.1:") {
                all.push(format!("http://localhost:{port}"));
            }
            all
        }
    }
}

/// CORS for the console's origins: the methods and headers the API takes, the headers a client
/// reads; any other origin gets no CORS headers, and its browser keeps the answer from it.
pub fn cors() -> anyhow::Result<CorsLayer> {
    let origins = origins()
        .iter()
        .map(|o| {
            HeaderValue::from_str(o)
                .map_err(|_| anyhow::anyhow!("QINGLING_CONSOLE_ORIGINS: {o:?} is not an origin"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static(crate::http::CORRELATION_HEADER),
        ])
        .expose_headers([
            header::LOCATION,
            header::RETRY_AFTER,
            HeaderName::from_static(crate::http::CORRELATION_HEADER),
        ])
        .max_age(Duration::from_secs(600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listen_address_is_reached_at_the_loopback() {
        assert_eq!(
            local_url(("QINGLING_NO_SUCH_VAR", "0.0.0.0:8082")),
            "http://127.0.0.1:8082"
        );
        assert_eq!(
            local_url(("QINGLING_NO_SUCH_VAR", "[::]:8081")),
            "http://127.0.0.1:8081"
        );
        assert_eq!(
            local_url(("QINGLING_NO_SUCH_VAR", "10.0.0.5:8083")),
            "http://10.0.0.5:8083"
        );
    }
}
