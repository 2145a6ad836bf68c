//! What every Qingling service shares: configuration, the event envelope, the PostgreSQL event
//! store, the outbox relay to JetStream, the idempotent consumer, auth, problem+json errors, the
//! organisation directory and the HTTP/run-time plumbing.

pub mod auth;
pub mod config;
pub mod console;
pub mod consumer;
pub mod db;
pub mod error;
pub mod event;
pub mod http;
pub mod leader;
pub mod nats;
pub mod oidc;
pub mod openapi;
pub mod orgs;
pub mod point;
pub mod rebuild;
pub mod relay;
pub mod replay;
pub mod runtime;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tlog;

pub use auth::{Caller, Claims, JwtKeys, Role};
pub use config::Config;
pub use error::{ApiError, FieldError};
pub use event::{Envelope, EventMeta, NewEvent};
pub use orgs::{Catalog, Orgs};
