-- The ledger's open items by point, as intake learns them from item_registered and
-- item_written_off: a call's preview tells the operator which open item it will join.
create table if not exists open_items (
    point_id uuid not null,
    category text not null,
    item_id  uuid not null,
    primary key (point_id, category)
);
create index if not exists open_items_item on open_items (item_id);

-- An installation that predates this table: the open items its complaints already know of.
-- (A rebuild replays the ledger's events and finds the inspections' items too.)
insert into open_items (point_id, category, item_id)
select distinct on (point_id, category) point_id, category, item_id
from complaints
where item_id is not null and status = 'registered'
order by point_id, category, received_at desc
on conflict do nothing;

-- A caller's earlier complaints, by the digits of the number.
create index if not exists callers_phone_digits on callers (regexp_replace(phone, '[^0-9]', '', 'g'));

-- The operator's work lists: returned (to re-dispatch) and written off (awaiting 回访).
create index if not exists complaints_to_handle on complaints (status, received_at)
    where status in ('returned', 'written_off');
