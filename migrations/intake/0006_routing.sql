-- Calls that route themselves (CONTRACT §11).

-- The street of each point the ledger has registered an item at (the latest), from item_registered:
-- a call about a known point goes to that street.
create table if not exists point_streets (
    point_id      uuid primary key,
    district      text not null,
    street        text not null,
    registered_at timestamptz not null
);

-- The community directory: community (normalised) → street. Reference data, not a projection (a
-- rebuild leaves it alone): shipped with the project (`shipped`), imported by the district
-- (`import`), learnt from the points the ledger has seen (`learnt`); a return as not_our_area of a
-- call it routed removes the entry that sent it.
create table if not exists community_directory (
    district   text not null,
    community  text not null,
    street     text not null,
    source     text not null,
    updated_at timestamptz not null default now(),
    primary key (district, community)
);

-- Every dispatch (派单) and whether it came back (退单), for the dispatch metrics.
create table if not exists dispatches (
    complaint_id  uuid not null,
    event_id      uuid not null primary key,
    district      text not null,
    month         text not null,
    received_at   timestamptz not null,
    dispatched_at timestamptz not null,
    street        text not null,
    routed_by     text not null,
    redispatch    boolean not null,
    returned      boolean not null default false,
    reason_code   text
);
create index if not exists dispatches_month on dispatches (district, month);
create index if not exists dispatches_complaint on dispatches (complaint_id, dispatched_at);
