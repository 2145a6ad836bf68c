//! The shapes of Open311 GeoReport v2 answers, for the OpenAPI document (the handlers write them
//! as a tree that serves JSON and XML alike; `tests/e2e/open311.rs` checks the fields).

#![allow(dead_code)]

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One service (a complaint category).
#[derive(utoipa::ToSchema)]
pub struct Open311Service {
    service_code: String,
    service_name: String,
    description: String,
    /// Always true: `services/{code}` has the attributes a request needs.
    metadata: bool,
    /// realtime
    r#type: String,
    keywords: String,
    group: String,
}

#[derive(utoipa::ToSchema)]
pub struct Open311Value {
    /// A street's code.
    key: String,
    /// Its Chinese name.
    name: String,
}

#[derive(utoipa::ToSchema)]
pub struct Open311Attribute {
    variable: bool,
    /// street, community, building or basement
    code: String,
    /// singlevaluelist (street) or string
    datatype: String,
    required: bool,
    datatype_description: String,
    order: u32,
    description: String,
    /// The district's streets (street only).
    values: Option<Vec<Open311Value>>,
}

/// What a request of the service needs: `attribute[street]` and the rest.
#[derive(utoipa::ToSchema)]
pub struct Open311ServiceDefinition {
    service_code: String,
    attributes: Vec<Open311Attribute>,
}

/// A service request (a complaint), without anything about who reported it.
#[derive(utoipa::ToSchema)]
pub struct Open311Request {
    service_request_id: Uuid,
    /// open, or closed once written off (销账)
    status: String,
    status_notes: String,
    service_name: String,
    service_code: String,
    description: String,
    /// The street office's name.
    agency_responsible: String,
    service_notice: String,
    requested_datetime: DateTime<Utc>,
    updated_datetime: DateTime<Utc>,
    /// Resolve-by (办结时限).
    expected_datetime: DateTime<Utc>,
    address: String,
    /// The basement's point id.
    address_id: Uuid,
    media_url: Option<String>,
}

/// The answer to a POST.
#[derive(utoipa::ToSchema)]
pub struct Open311Created {
    service_request_id: Uuid,
    service_notice: String,
}

/// One error; answers carry a list of them.
#[derive(utoipa::ToSchema)]
pub struct Open311Error {
    /// The HTTP status.
    code: u16,
    description: String,
}
