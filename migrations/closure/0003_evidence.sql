-- Photos a street uploads as write-off evidence (CONTRACT §9), content-addressed by SHA-256.
-- `evidence` is the projection of `evidence_uploaded`; `evidence_blobs` keeps the bytes (when
-- stored in PostgreSQL): the log carries hashes, sizes and types, never the bytes.
create table if not exists evidence (
    sha256       text primary key,
    bytes        bigint not null,
    content_type text not null,
    district     text not null,
    street       text not null,
    item_id      uuid,
    uploaded_by  text not null,
    received_at  timestamptz not null,
    taken_at     timestamptz,
    lat          double precision,
    long         double precision
);

create table if not exists evidence_blobs (
    sha256 text primary key,
    body   bytea not null
);
