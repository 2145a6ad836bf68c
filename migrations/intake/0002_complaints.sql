-- intake's projections. Rebuildable from intake's log and the ledger events it consumed.

create table complaints (
    complaint_id  uuid primary key,
    district      text not null,
    street        text not null,
    category      text not null,
    urgency       text not null,
    point_id      uuid not null,
    point         jsonb not null,
    description   text not null,
    received_at   timestamptz not null,
    dispatched_at timestamptz not null,
    respond_by    timestamptz not null,
    resolve_by    timestamptz not null,
    status        text not null,
    item_id       uuid,
    created_by    text not null,
    updated_at    timestamptz not null,
    acknowledged_at timestamptz,
    -- The complaint's part in its street's monthly metrics (三率); see street_metrics.
    month             text not null,
    counted           boolean not null default true,
    responded_on_time boolean not null default false,
    resolved          boolean not null default false,
    overdue           boolean not null default false,
    satisfaction      text
);
create index complaints_item on complaints (item_id);
create index complaints_street on complaints (district, street, received_at);

-- 一案一档: every event that touched a complaint, its own and the ledger's.
create table complaint_history (
    complaint_id uuid not null,
    event_id     uuid not null,
    event_type   text not null,
    at           timestamptz not null,
    actor        text not null,
    data         jsonb not null,
    primary key (complaint_id, event_id)
);

-- Callers' personal data stays out of the immutable event log (and off NATS), so it can be
-- masked or erased without rewriting history.
create table callers (
    complaint_id uuid primary key,
    name         text,
    phone        text
);

-- Idempotency-Key: the saved first response, written in the same transaction as the events.
create table idempotency (
    actor        text not null,
    key          text not null,
    request_hash text not null,
    status       int not null,
    response     jsonb not null,
    created_at   timestamptz not null default now(),
    primary key (actor, key)
);

-- Monthly metrics per street (三率), kept as counters in the same transactions that change a
-- complaint's flags above: the sum of the flags of the complaints received that month (Asia/Shanghai).
create table street_metrics (
    district            text not null,
    month               text not null,
    street              text not null,
    received            bigint not null default 0,
    responded_on_time   bigint not null default 0,
    resolved            bigint not null default 0,
    followed_up         bigint not null default 0,
    satisfied           bigint not null default 0,
    basically_satisfied bigint not null default 0,
    dissatisfied        bigint not null default 0,
    unknown             bigint not null default 0,
    overdue             bigint not null default 0,
    primary key (district, month, street)
);
