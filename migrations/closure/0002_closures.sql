-- closure's projections: the items it has learned from the ledger, and the write-off requests.

create table items (
    item_id    uuid primary key,
    district   text not null,
    street     text not null,
    category   text not null,
    status     text not null,
    updated_at timestamptz not null
);

create table closures (
    closure_id        uuid primary key,
    item_id           uuid not null,
    district          text not null,
    street            text not null,
    category          text not null,
    outcome           text not null,
    checklist         jsonb not null,
    rooms_cleared     int,
    partition_area_m2 double precision,
    evidence          jsonb not null,
    note              text not null default '',
    status            text not null,
    requested_by      text not null,
    requested_at      timestamptz not null,
    reviewed_by       text,
    reviewed_at       timestamptz,
    review_note       text,
    reject_reason     text
);
-- At most one pending request per item: two racing requests cannot both be accepted.
create unique index closures_one_pending on closures (item_id) where status = 'pending';
create index closures_by_street on closures (district, street, status, closure_id);
