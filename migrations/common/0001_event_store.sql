-- The event store and its bookkeeping, created in each service's own schema.

-- One order for everything that changes this service's projections: its own events and the
-- foreign events it applied. Both take the next value under the row locks of what they change,
-- so a rebuild that replays them in this order reproduces the projections exactly.
create sequence apply_order;

-- Every event the service ever recorded. `position` is gap-free and commits in order (appends
-- hold an advisory lock), `version` orders events within a stream.
create table events (
    position       bigint primary key,
    event_id       uuid not null unique,
    stream         text not null,
    version        bigint not null,
    event_type     text not null,
    occurred_at    timestamptz not null,
    actor          text not null,
    correlation_id uuid not null,
    causation_id   uuid not null,
    data           jsonb not null,
    apply_seq      bigint not null default nextval('apply_order'),
    unique (stream, version)
);

-- How far the outbox relay has published this log to JetStream.
create table relay_cursor (
    id       boolean primary key default true check (id),
    position bigint not null
);
insert into relay_cursor (position) values (0);

-- The last version applied of every foreign stream this service consumes. Updated in the same
-- transaction as the effects of the event, so an event is applied exactly once.
create table consumed_streams (
    stream  text primary key,
    version bigint not null,
    applied_at timestamptz not null default now()
);

-- The foreign events this service applied, kept so its projections can be rebuilt without asking
-- the broker or the other services.
create table inbox (
    event_id   uuid primary key,
    apply_seq  bigint not null default nextval('apply_order'),
    envelope   jsonb not null
);
create index inbox_order on inbox (apply_seq);
create index events_apply_order on events (apply_seq);

-- How far each source's log has been received without a hole (see the consumer's healing).
create table source_progress (
    service    text primary key,
    contiguous bigint not null
);
