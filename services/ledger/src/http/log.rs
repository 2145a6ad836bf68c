//! The verifiable log (CONTRACT §12): checkpoints, entries, proofs, an item's receipt, and the
//! log as C2SP tlog-tiles under `/tlog/`.

use super::*;
use qingling_shared::tlog::{self, Dyn, Hash};

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The latest checkpoint, unless the log was found tampered with.
async fn checkpoint_note(s: &AppState) -> Result<(u64, String), ApiError> {
    if let Some((index, detail)) = crate::log::tamper(&s.pool).await? {
        return Err(ApiError::Unavailable(format!(
            "the ledger's log disagrees with the tree it signed, from entry {index}: {detail}; no checkpoint is published until an operator resolves it"
        )));
    }
    if s.log.keys.is_none() {
        return Err(ApiError::Unavailable(
            "no log signing key is configured (QINGLING_LOG_KEY)".into(),
        ));
    }
    let (size, note) = crate::log::latest(&s.pool)
        .await?
        .ok_or_else(|| ApiError::Unavailable("no checkpoint has been signed yet".into()))?;
    Ok((size as u64, note))
}

#[utoipa::path(get, path = "/v1/ledger/log/checkpoint", tag = "log",
    responses(
        (status = 200, description = "the latest checkpoint, a C2SP tlog-checkpoint signed note", content_type = "text/plain"),
        (status = 503, description = "tampering was found, or no key is configured", body = qingling_shared::openapi::Problem)
    ))]
/// The log's latest signed tree head. No token needed: it reveals a size and a hash.
pub(super) async fn checkpoint(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(text(checkpoint_note(&s).await?.1))
}

#[utoipa::path(get, path = "/v1/ledger/log/key", tag = "log",
    responses((status = 200, description = "the verifier key(s), one per line, in the signed-note format", content_type = "text/plain")))]
/// The keys checkpoints are signed with (the ledger's first, then a co-signer's).
pub(super) async fn key(State(s): State<AppState>) -> Result<Response, ApiError> {
    let keys = s
        .log
        .keys
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("no log signing key is configured".into()))?;
    Ok(text(keys.verifier_keys.join("\n") + "\n"))
}

/// The size of the tree built so far.
async fn built(s: &AppState) -> Result<u64, ApiError> {
    let size: i64 = sqlx::query_scalar("select size from log_state")
        .fetch_one(&s.pool)
        .await?;
    Ok(size as u64)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EntriesQuery {
    from: Option<u64>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/ledger/log/entries", tag = "log", security(("bearer" = [])),
    params(EntriesQuery),
    responses(
        (status = 200, description = "entries from `from` (leaf index), each the event and its leaf hash", body = Object),
        qingling_shared::openapi::AuthRefusals
    ))]
/// The log's entries, for auditors: the events as committed (their RFC 8785 form is the leaf).
pub(super) async fn entries(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<EntriesQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::District, Role::Reviewer])?;
    let from = q.from.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be 1 to 10000"));
    }
    let size = built(&s).await?;
    let mut c = s.pool.acquire().await?;
    let events = events::read_after(&mut c, from as i64, limit).await?;
    let events: Vec<_> = events
        .into_iter()
        .filter(|e| (e.position as u64) <= size)
        .collect();
    let leaves = tlog::read(
        &mut c,
        &events
            .iter()
            .map(|e| tlog_tiles::stored_hash_index(0, e.position as u64 - 1))
            .collect::<Vec<_>>(),
    )
    .await?;
    let list: Vec<Value> = events
        .iter()
        .map(|e| {
            let index = e.position as u64 - 1;
            json!({
                "index": index,
                "leaf_hash": leaves.get(&tlog_tiles::stored_hash_index(0, index)).map(tlog::b64),
                "event": e,
            })
        })
        .collect();
    let next = events
        .last()
        .map(|e| e.position as u64)
        .filter(|&n| n < size);
    Ok(Json(json!({"entries": list, "next_from": next})))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct InclusionQuery {
    index: Option<u64>,
    /// Default: the latest checkpoint's size.
    tree_size: Option<u64>,
}

async fn proof_size(s: &AppState, asked: Option<u64>, field: &str) -> Result<u64, ApiError> {
    let size = match asked {
        Some(n) => n,
        None => checkpoint_note(s).await?.0,
    };
    if size == 0 || size > built(s).await? {
        return Err(ApiError::invalid_field(
            field,
            "must be between 1 and the log's size",
        ));
    }
    Ok(size)
}

fn proof_json(size: u64, root: &Hash, hashes: &[Hash]) -> Value {
    json!({
        "tree_size": size,
        "root": tlog::b64(root),
        "hashes": hashes.iter().map(tlog::b64).collect::<Vec<_>>(),
    })
}

#[utoipa::path(get, path = "/v1/ledger/log/proof/inclusion", tag = "log", security(("bearer" = [])),
    params(InclusionQuery),
    responses(
        (status = 200, description = "RFC 6962 §2.1.1 audit path of the entry in the tree of `tree_size`", body = Object),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "an index or size outside the log", body = qingling_shared::openapi::Problem)
    ))]
pub(super) async fn inclusion(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<InclusionQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::District, Role::Reviewer])?;
    let size = proof_size(&s, q.tree_size, "tree_size").await?;
    let index = q
        .index
        .filter(|&i| i < size)
        .ok_or_else(|| ApiError::invalid_field("index", "must be below tree_size"))?;
    let mut c = s.pool.acquire().await?;
    let hashes =
        tlog::with_stored(&mut c, |r| tlog_tiles::prove_record(size, index, &Dyn(r))).await?;
    let root = tlog::root(&mut c, size).await?;
    let mut v = proof_json(size, &root, &hashes);
    v["index"] = json!(index);
    Ok(Json(v))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ConsistencyQuery {
    from_size: Option<u64>,
    /// Default: the latest checkpoint's size.
    to_size: Option<u64>,
}

#[utoipa::path(get, path = "/v1/ledger/log/proof/consistency", tag = "log", security(("bearer" = [])),
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "RFC 6962 §2.1.2 consistency proof from `from_size` to `to_size`", body = Object),
        qingling_shared::openapi::AuthRefusals,
        (status = 422, description = "sizes outside the log, or from_size > to_size", body = qingling_shared::openapi::Problem)
    ))]
pub(super) async fn consistency(
    State(s): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ConsistencyQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::District, Role::Reviewer])?;
    let to = proof_size(&s, q.to_size, "to_size").await?;
    let from = q
        .from_size
        .filter(|&f| f >= 1 && f <= to)
        .ok_or_else(|| ApiError::invalid_field("from_size", "must be between 1 and to_size"))?;
    let mut c = s.pool.acquire().await?;
    let hashes = tlog::with_stored(&mut c, |r| tlog_tiles::prove_tree(to, from, &Dyn(r))).await?;
    let root = tlog::root(&mut c, to).await?;
    let mut v = proof_json(to, &root, &hashes);
    v["from_size"] = json!(from);
    Ok(Json(v))
}

#[utoipa::path(get, path = "/v1/ledger/items/{id}/receipt", tag = "log", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "item id")),
    responses(
        (status = 200, description = "the item's registration and write-off entries, each with its inclusion proof in the checkpoint", body = Object),
        qingling_shared::openapi::AuthRefusals,
        (status = 404, description = "no such item", body = qingling_shared::openapi::Problem),
        (status = 503, description = "no checkpoint covers the item yet, or the log was tampered with", body = qingling_shared::openapi::Problem)
    ))]
/// 上账 and 销账 of an item, provably in the log.
pub(super) async fn receipt(
    State(s): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let item = visible_item(&s, &caller, id).await?;
    let (size, note) = checkpoint_note(&s).await?;
    let mut c = s.pool.acquire().await?;
    let stream = app::stream_of(item.item_id);
    let wanted = [
        qingling_events::ledger::types::ITEM_REGISTERED,
        qingling_events::ledger::types::ITEM_WRITTEN_OFF,
    ];
    let mut entries = vec![];
    for e in events::read_stream(&mut c, &stream).await? {
        if !wanted.contains(&e.event_type.as_str()) {
            continue;
        }
        let index = e.position as u64 - 1;
        if index >= size {
            return Err(ApiError::Unavailable(
                "the item's latest entry is not in a signed checkpoint yet; try again in a few seconds".into(),
            ));
        }
        let proof =
            tlog::with_stored(&mut c, |r| tlog_tiles::prove_record(size, index, &Dyn(r))).await?;
        entries.push(json!({
            "index": index,
            "event": e,
            "inclusion": proof.iter().map(tlog::b64).collect::<Vec<_>>(),
        }));
    }
    Ok(Json(
        json!({"checkpoint": note, "tree_size": size, "entries": entries}),
    ))
}

#[utoipa::path(get, path = "/tlog/checkpoint", tag = "log",
    responses((status = 200, description = "the checkpoint (C2SP tlog-tiles)", content_type = "text/plain")))]
pub(super) async fn tiles_checkpoint(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(text(checkpoint_note(&s).await?.1))
}

/// The tiles' height (C2SP tlog-tiles: 256 hashes per tile).
const HEIGHT: u8 = 8;

#[utoipa::path(get, path = "/tlog/tile/{*path}", tag = "log",
    params(("path" = String, Path, description = "`<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`")),
    responses(
        (status = 200, description = "a hash tile or an entry bundle (C2SP tlog-tiles)", content_type = "application/octet-stream"),
        (status = 404, description = "no such tile in the log as signed", body = qingling_shared::openapi::Problem)
    ))]
/// The log as C2SP tlog-tiles: hash tiles and entry bundles, within the latest checkpoint.
pub(super) async fn tile(
    State(s): State<AppState>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("no tile {path}"));
    let (size, _) = checkpoint_note(&s).await?;
    // The crate speaks Go's sumdb paths (`tile/<H>/<L>/…`, `data` for entries).
    let (entries, rest) = match path.strip_prefix("entries/") {
        Some(rest) => (true, rest),
        None => (false, path.as_str()),
    };
    let go_path = match entries {
        true => format!("tile/{HEIGHT}/data/{rest}"),
        false => format!("tile/{HEIGHT}/{rest}"),
    };
    let t = tlog_tiles::Tile::from_path(&go_path).map_err(|_| not_found())?;
    let width = u64::from(t.width());
    let level = u32::from(t.level());
    // Leaves the tile covers: its start and end at level 0.
    let span = 1u64
        .checked_shl(u32::from(HEIGHT) * (level + 1))
        .ok_or_else(not_found)?;
    let start = t.level_index().checked_mul(span).ok_or_else(not_found)?;
    let end = start + width * (span >> HEIGHT);
    if end > size {
        return Err(not_found());
    }
    let mut c = s.pool.acquire().await?;
    let body = if entries {
        let events = events::read_after(&mut c, start as i64, width as i64).await?;
        let mut out = vec![];
        for e in &events {
            let bytes = tlog::canonical(e);
            let len = u16::try_from(bytes.len())
                .map_err(|_| anyhow::anyhow!("an entry longer than 64 KiB"))?;
            out.extend(len.to_be_bytes());
            out.extend(bytes);
        }
        out
    } else {
        tlog::with_stored(&mut c, |r| t.read_data(&Dyn(r))).await?
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            // A full tile never changes.
            (
                header::CACHE_CONTROL,
                if width == 1 << HEIGHT {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-store"
                },
            ),
        ],
        body,
    )
        .into_response())
}
