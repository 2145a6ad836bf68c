-- The ledger's projections (动态台账). Rebuildable from the ledger's own log.

create table items (
    item_id         uuid primary key,
    district        text not null,
    street          text not null,
    category        text not null,
    point_id        uuid not null,
    point           jsonb not null,
    description     text not null default '',
    source          text not null,
    urgency         text not null default 'normal',
    status          text not null,
    complaint_ids   uuid[] not null default '{}',
    registered_at   timestamptz not null,
    acknowledged_at timestamptz,
    respond_by      timestamptz,
    resolve_by      timestamptz,
    overdue         text[] not null default '{}',
    written_off_at  timestamptz,
    write_off_kind  text,
    closure_id      uuid,
    rebound_of      uuid,
    -- 延期申请: {"status": "pending" | "approved" | "rejected", "until": …, "reason": …}
    extension       jsonb,
    updated_at      timestamptz not null
);
-- One open item per point and category: a race can never register two.
create unique index items_one_open_per_point on items (point_id, category) where status <> 'written_off';
create index items_by_street on items (district, street, category, status);
create index items_by_point on items (point_id, category, written_off_at);
create index items_by_complaint on items using gin (complaint_ids);
-- What the deadline watcher scans: open items with a limit still to check.
create index items_deadlines on items (respond_by) where status = 'registered';
create index items_resolve_deadlines on items (resolve_by) where status <> 'written_off';

-- 台账流水: every registration and every write-off, keyed by the position of its event in the
-- ledger's log (gap-free, committed in order), so paging with `after` never skips a row.
create table journal (
    position       bigint primary key,
    kind           text not null,
    item_id        uuid not null,
    district       text not null,
    street         text not null,
    category       text not null,
    point_id       uuid not null,
    at             timestamptz not null,
    actor          text not null,
    complaint_id   uuid,
    closure_id     uuid,
    write_off_kind text
);
create index journal_by_street on journal (district, street, position);

-- How many items a street (or, with street = '', the whole district) has open, and when it last
-- reached dynamic zero. Kept in the same transaction as the item events, in O(1) per event.
create table zero_marks (
    district   text not null,
    street     text not null,
    category   text not null,
    open       bigint not null default 0,
    zero_since timestamptz,
    primary key (district, street, category)
);
