//! The Open311 documents: services, a service's definition, requests, and the answer to a post.

use super::*;

pub(super) fn services(s: &AppState, p: &Params) -> Reply {
    p.jurisdiction(s)?;
    let list = s
        .catalog
        .doc()
        .categories
        .iter()
        .map(|c| {
            record(vec![
                ("service_code", leaf(&c.code)),
                ("service_name", leaf(&c.name)),
                ("description", leaf(&c.description)),
                ("metadata", leaf(true)),
                ("type", leaf("realtime")),
                ("keywords", leaf(format!("{},{}", c.name, c.group))),
                ("group", leaf(&c.group)),
            ])
        })
        .collect();
    Ok(Document::ok("services", Node::List(list)))
}

pub(super) fn definition(s: &AppState, code: &str, p: &Params) -> Reply {
    let district = p.jurisdiction(s)?;
    if s.catalog.get(code).is_none() {
        return Err(Failure::not_found(format!("no service {code:?}")));
    }
    let streets = district
        .streets
        .iter()
        .map(|st| record(vec![("key", leaf(&st.code)), ("name", leaf(&st.name))]))
        .collect();
    let attribute = |order: i64, code: &str, datatype: &str, about: &str, description: &str| {
        vec![
            ("variable", leaf(true)),
            ("code", leaf(code)),
            ("datatype", leaf(datatype)),
            ("required", leaf(true)),
            ("datatype_description", leaf(about)),
            ("order", leaf(order)),
            ("description", leaf(description)),
        ]
    };
    let mut street = attribute(
        1,
        "street",
        "singlevaluelist",
        "街道或乡镇的代码(key)",
        &format!("所属街道(乡镇),{}", district.name),
    );
    street.push(("values", Node::List(streets)));
    let text = "文本,最长 200 字";
    let body = record(vec![
        ("service_code", leaf(code)),
        (
            "attributes",
            Node::List(vec![
                record(street),
                record(attribute(2, "community", "string", text, "小区名称")),
                record(attribute(3, "building", "string", text, "楼号")),
                record(attribute(4, "basement", "string", text, "地下室(如 B1)")),
            ]),
        ),
    ]);
    Ok(Document::ok("service_definition", body))
}

pub(super) async fn requests(s: &AppState, p: &Params) -> Reply {
    let filter = p.filter(s, Utc::now())?;
    let rows = store::public_complaints(&mut *s.pool.acquire().await?, &filter).await?;
    let list = rows.iter().map(|r| service_request(s, r)).collect();
    Ok(Document::ok("service_requests", Node::List(list)))
}

pub(super) async fn one_request(s: &AppState, id: &str) -> Reply {
    let not_found = || Failure::not_found(format!("no service request {id}"));
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let filter = PublicFilter {
        ids: Some(vec![id]),
        limit: 1,
        ..PublicFilter::default()
    };
    let rows = store::public_complaints(&mut *s.pool.acquire().await?, &filter).await?;
    let row = rows.first().ok_or_else(not_found)?;
    Ok(Document::ok(
        "service_requests",
        Node::List(vec![service_request(s, row)]),
    ))
}

/// One service request: the complaint as the public may see it, never the caller.
pub(super) fn service_request(s: &AppState, r: &PublicRow) -> Node {
    let status = Status::parse(&r.status);
    let street = street_name(s, &r.district, &r.street);
    let service_name = s.catalog.get(&r.category).map_or(&r.category, |c| &c.name);
    let notes = match status {
        Some(Status::Dispatched) => format!("已派单至{street}"),
        Some(Status::Registered) if r.acknowledged_at.is_some() => {
            format!("{street}已签收,正在办理")
        }
        Some(Status::Registered) => format!("{street}已上账,待签收"),
        Some(Status::Returned) => format!("{street}已退单,待改派"),
        Some(Status::WrittenOff) => "已销账(办结)".to_string(),
        Some(Status::FollowedUp) => "已办结并回访".to_string(),
        None => "已受理".to_string(),
    };
    record(vec![
        ("service_request_id", leaf(r.complaint_id)),
        (
            "status",
            leaf(if is_closed(status) { "closed" } else { "open" }),
        ),
        ("status_notes", leaf(notes)),
        ("service_name", leaf(service_name)),
        ("service_code", leaf(&r.category)),
        (
            "description",
            leaf(scrub_numbers(&qingling_shared::point::clean(
                &r.description,
            ))),
        ),
        ("agency_responsible", leaf(street)),
        ("service_notice", leaf(notice(street, r.resolve_by))),
        ("requested_datetime", leaf(r.received_at)),
        ("updated_datetime", leaf(r.updated_at)),
        ("expected_datetime", leaf(r.resolve_by)),
        ("address", leaf(address(&r.point))),
        // The point's id is derived from its address: it would give the building and basement
        // away to anyone who tries the candidates.
        ("address_id", leaf(Value::Null)),
        ("media_url", leaf(Value::Null)),
    ])
}

/// Registers the posted request as a complaint, as an operator named by the api key.
pub(super) async fn post_request(
    s: &AppState,
    keys: &ApiKeys,
    name: &str,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Reply {
    match name {
        "requests" => {}
        "services" => {
            return Err(Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "services are read-only; POST to requests",
            ))
        }
        other => return Err(Failure::no_resource(other)),
    }
    let Form(fields) = form.map_err(|r| {
        let status = match r.status() {
            s @ (StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::PAYLOAD_TOO_LARGE) => s,
            _ => StatusCode::BAD_REQUEST,
        };
        Failure::new(status, r.body_text())
    })?;
    let p = Params::new(fields)?;
    let caller = keys.caller(p.get("api_key"))?;
    // The standard answers 404 for an unknown jurisdiction or service, 400 for the rest.
    let district = p.jurisdiction(s)?;
    let code = p
        .get("service_code")
        .ok_or_else(|| Failure::bad_request("service_code: is required"))?;
    if s.catalog.get(code).is_none() {
        return Err(Failure::not_found(format!("no service {code:?}")));
    }
    let created = register_complaint(s, &caller, p.complaint(&district.code), None)
        .await?
        .created;
    let id = created.complaint_id.to_string();
    let street = created.street.as_str();
    let resolve_by = created.resolve_by;
    let answer = record(vec![
        ("service_request_id", leaf(&id)),
        (
            "service_notice",
            leaf(notice(street_name(s, &district.code, street), resolve_by)),
        ),
    ]);
    Ok(Document {
        status: StatusCode::CREATED,
        root: "service_requests",
        body: Node::List(vec![answer]),
    })
}

pub(super) fn is_closed(status: Option<Status>) -> bool {
    status.is_some_and(|s| CLOSED.contains(&s))
}

pub(super) fn street_name<'a>(s: &'a AppState, district: &str, street: &'a str) -> &'a str {
    s.orgs
        .street(district, street)
        .map_or(street, |st| &st.name)
}

/// What the citizen is told: who handles it, and by when (Beijing time).
pub(super) fn notice(street: &str, resolve_by: DateTime<Utc>) -> String {
    let local = resolve_by + Duration::hours(8);
    format!(
        "已受理,由{street}办理,办结时限 {}(北京时间)",
        local.format("%Y-%m-%d %H:%M")
    )
}

/// The point's address as given, or its community, building and basement.
/// The public address: the community only. The building and basement (and a full address, which
/// holds them) would point at the people who called (CONTRACT §13).
pub(super) fn address(point: &Value) -> String {
    point["community"].as_str().unwrap_or_default().to_string()
}

/// Public text with anything like a telephone or ID-card number (7 digits or more, spaces, dashes
/// and brackets between them allowed, an ID's final X included) replaced by `***`.
pub(super) fn scrub_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() && !matches!(chars[i], '+' | '(' | '（') {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // The longest run of digits and separators from here, ending on a digit (or an ID's X).
        let (mut j, mut digits, mut end) = (i, 0, i);
        while j < chars.len() {
            match chars[j] {
                c if c.is_ascii_digit() => {
                    digits += 1;
                    end = j + 1;
                }
                'X' | 'x' if digits == 17 => {
                    end = j + 1;
                    break;
                }
                ' ' | '-' | '(' | ')' | '+' | '（' | '）' | '—' | '.' | '/' => {}
                _ => break,
            }
            j += 1;
        }
        if digits >= 7 {
            out.push_str("***");
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}
