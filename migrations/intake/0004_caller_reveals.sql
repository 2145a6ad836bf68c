-- 先行联系: a street that reveals a caller's number to call back, recorded for the district.
create table if not exists caller_reveals (
    event_id    uuid primary key,
    complaint_id uuid not null,
    district    text not null,
    street      text not null,
    revealed_by text not null,
    at          timestamptz not null,
    month       text not null
);
create index if not exists caller_reveals_month on caller_reveals (district, month, at);
