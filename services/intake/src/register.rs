//! 接诉 as one typed operation, which the JSON API and the Open311 adapter both call.

use chrono::{DateTime, SubsecRound, Utc};
use qingling_events::Event;
use qingling_shared::{store as events, ApiError, Caller, EventMeta, Role};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::AppState;
use crate::domain::{self, ComplaintInput, RoutedBy, Status};
use crate::registrar::{Registration, Written};
use crate::store;

/// The outcome of a registration.
#[derive(Debug)]
pub struct Registered {
    pub created: ComplaintCreated,
    /// True when the Idempotency-Key was used before: `created` is the first answer, and nothing
    /// new was registered.
    pub replayed: bool,
}

/// A complaint just registered (or, replayed for a repeated Idempotency-Key, the first answer).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ComplaintCreated {
    pub complaint_id: Uuid,
    /// dispatched
    pub status: String,
    pub district: String,
    pub street: String,
    pub point_id: Uuid,
    pub respond_by: DateTime<Utc>,
    pub resolve_by: DateTime<Utc>,
    /// How the street was chosen: `operator`, `point` or `community` (CONTRACT §11).
    #[serde(default = "by_operator")]
    #[schema(value_type = String)]
    pub routed_by: RoutedBy,
}

fn by_operator() -> RoutedBy {
    RoutedBy::Operator
}

/// 接诉, for `POST /v1/complaints` and Open311's `POST requests` alike: checks the caller and the
/// input, appends `complaint_received` and `complaint_dispatched`, and gives the new complaint, or
/// the first answer again when `key` was used before.
pub async fn register_complaint(
    s: &AppState,
    caller: &Caller,
    input: ComplaintInput,
    key: Option<String>,
) -> Result<Registered, ApiError> {
    let request_hash = hex::encode(Sha256::digest(
        serde_json::to_vec(&input).unwrap_or_default(),
    ));
    // Microseconds, as PostgreSQL keeps them: the answer matches later reads.
    let now = Utc::now().trunc_subsecs(6);
    let complaint = checked(s, caller, input, now).await?;

    if let Some(key) = &key {
        if let Some(saved) =
            store::saved_response(&mut *s.pool.acquire().await?, &caller.sub, key).await?
        {
            return replay(saved, &request_hash);
        }
    }

    let id = Uuid::now_v7();
    let (new_events, dispatch) = domain::register(id, &complaint, &s.limits, now);
    let created = ComplaintCreated {
        complaint_id: id,
        status: Status::Dispatched.as_str().to_string(),
        district: complaint.district.clone(),
        street: complaint.street.clone(),
        point_id: complaint.point_id,
        respond_by: dispatch.respond_by,
        resolve_by: dispatch.resolve_by,
        routed_by: complaint.routed_by,
    };
    let registration = Registration {
        complaint_id: id,
        actor: caller.sub.clone(),
        key: key.clone().map(|k| (k, request_hash.clone())),
        response: serde_json::to_value(&created).expect("an answer serialises"),
        caller: complaint.caller.clone(),
        events: events::prepare(
            &qingling_events::intake::stream(id),
            0,
            &new_events
                .iter()
                .map(Event::to_new_event)
                .collect::<Vec<_>>(),
            &EventMeta::for_caller(caller, Uuid::now_v7()),
        ),
    };
    match s.registrar.register(registration).await? {
        Written::Created => Ok(Registered {
            created,
            replayed: false,
        }),
        Written::KeyTaken => {
            let key = key.unwrap_or_default();
            let saved =
                store::saved_response(&mut *s.pool.acquire().await?, &caller.sub, &key).await?;
            replay(
                saved.ok_or_else(|| anyhow::anyhow!("idempotency record vanished"))?,
                &request_hash,
            )
        }
    }
}

/// The checks of a registration: the caller, the input, and a point named by id.
async fn checked(
    s: &AppState,
    caller: &Caller,
    input: ComplaintInput,
    now: DateTime<Utc>,
) -> Result<domain::Complaint, ApiError> {
    caller.require(&[Role::Operator])?;
    let mut complaint = input
        .parse(&s.orgs, &s.catalog, now)
        .map_err(ApiError::invalid)?;
    if complaint.street.is_empty() {
        let (street, routed_by) = route(s, &complaint).await?;
        complaint.street = street;
        complaint.routed_by = routed_by;
    }
    caller.ensure_covers(&complaint.district, &complaint.street)?;
    // A point named by id rather than by its address must be one this street already has: an id
    // from elsewhere would put the complaint on another street's item.
    if complaint.point_id != domain::point_id(&complaint.district, &complaint.point)
        && !store::point_of_street(
            &mut *s.pool.acquire().await?,
            complaint.point_id,
            &complaint.district,
            &complaint.street,
        )
        .await?
    {
        return Err(ApiError::invalid_field(
            "point.point_id",
            format!(
                "is not a point of {} in {}: give the address, or the id of one of its points",
                complaint.street, complaint.district
            ),
        ));
    }
    Ok(complaint)
}

/// A call without a street goes to the street of its point's latest item, else to the street the
/// community directory names; neither known, the operator is asked for the street.
async fn route(s: &AppState, c: &domain::Complaint) -> Result<(String, RoutedBy), ApiError> {
    let mut conn = s.pool.acquire().await?;
    let exists = |street: &String| s.orgs.street(&c.district, street).is_some();
    if let Some(street) = store::routing::street_of_point(&mut conn, c.point_id)
        .await?
        .filter(exists)
    {
        return Ok((street, RoutedBy::Point));
    }
    if let Some(street) =
        store::routing::street_of_community(&mut conn, &c.district, &c.point.community)
            .await?
            .filter(exists)
    {
        return Ok((street, RoutedBy::Community));
    }
    Err(ApiError::invalid_field(
        "street",
        format!(
            "cannot route: give the street (neither the point nor the community {:?} is known)",
            c.point.community
        ),
    ))
}

/// What a registration would do, recording nothing (CONTRACT §10).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub point_id: Uuid,
    pub street: String,
    /// How the street was chosen.
    #[schema(value_type = String)]
    pub routed_by: RoutedBy,
    /// The open item at the point the call would join (a repeat call is not a second problem).
    pub would_link_to: Option<Uuid>,
}

/// The same checks as [`register_complaint`], and the open item the call would join.
pub async fn preview_complaint(
    s: &AppState,
    caller: &Caller,
    input: ComplaintInput,
) -> Result<Preview, ApiError> {
    let complaint = checked(s, caller, input, Utc::now()).await?;
    let would_link_to = store::open_item_at(
        &mut *s.pool.acquire().await?,
        complaint.point_id,
        &complaint.category,
    )
    .await?;
    Ok(Preview {
        point_id: complaint.point_id,
        street: complaint.street,
        routed_by: complaint.routed_by,
        would_link_to,
    })
}

fn replay(saved: store::SavedResponse, request_hash: &str) -> Result<Registered, ApiError> {
    if saved.request_hash != request_hash {
        return Err(ApiError::invalid_field(
            "Idempotency-Key",
            "was already used with a different request body",
        ));
    }
    let created = serde_json::from_value(saved.response)
        .map_err(|e| anyhow::anyhow!("a saved answer does not parse: {e}"))?;
    Ok(Registered {
        created,
        replayed: true,
    })
}
