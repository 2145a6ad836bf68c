-- The verifiable log (CONTRACT §12): the Merkle tree over the ledger's events, as Go tlog's
-- stored hashes (index = stored_hash_index(level, n)); how many events it covers; the signed
-- checkpoints; and, when the stored tree and the events disagree, where.
create table if not exists log_hashes (
    idx  bigint primary key,
    hash bytea not null
);
create table if not exists log_state (
    id   boolean primary key default true check (id),
    size bigint not null
);
insert into log_state (size) values (0) on conflict do nothing;
create table if not exists log_checkpoints (
    size      bigint primary key,
    root      bytea not null,
    note      text not null,
    signed_at timestamptz not null default now()
);
create table if not exists log_tamper (
    id       boolean primary key default true check (id),
    index    bigint not null,
    detail   text not null,
    found_at timestamptz not null default now()
);
