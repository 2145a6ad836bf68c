-- The live summary's counts per street, kept as the items change instead of counted over every
-- item on each tick: the district office's view stays O(streets) however long the ledger grows.
-- Statement-level triggers with transition tables: one upsert per statement that changes items
-- (a rebuild's COPY of every item included), whatever path changed them.
create table street_tallies (
    district          text not null,
    street            text not null,
    category          text not null,
    registered_total  bigint not null default 0,
    written_off_total bigint not null default 0,
    acknowledged      bigint not null default 0,
    closure_pending   bigint not null default 0,
    overdue           bigint not null default 0,
    rebounds          bigint not null default 0,
    primary key (district, street, category)
);

-- The upsert is written out in both trigger functions on purpose: a transition table is visible
-- only to its trigger's own function, and handing the rows to a shared SQL function (re-planned at
-- every call) cost 550 µs per statement against 130 µs.
-- Each item counts +1 in its street's tally as it arrives …
create function tally_inserted_items() returns trigger language plpgsql as $$
begin
    insert into street_tallies as t (district, street, category, registered_total, written_off_total,
        acknowledged, closure_pending, overdue, rebounds)
    select * from (
        select district, street, category, sum(sign),
               sum(sign * (status = 'written_off')::int),
               sum(sign * (status = 'acknowledged')::int),
               sum(sign * (status = 'closure_pending')::int),
               sum(sign * (status <> 'written_off' and cardinality(overdue) > 0)::int),
               sum(sign * (rebound_of is not null)::int)
        from (select district, street, category, status, overdue, rebound_of, 1 as sign from new_items) c
        group by 1, 2, 3
    ) d(district, street, category, registered_total, written_off_total, acknowledged, closure_pending, overdue, rebounds)
    -- A change that moves no count (a link, an extension) takes no lock on the street's row.
    where (registered_total, written_off_total, acknowledged, closure_pending, overdue, rebounds)
          <> (0, 0, 0, 0, 0, 0)
    order by 1, 2, 3
    on conflict (district, street, category) do update set
        registered_total = t.registered_total + excluded.registered_total,
        written_off_total = t.written_off_total + excluded.written_off_total,
        acknowledged = t.acknowledged + excluded.acknowledged,
        closure_pending = t.closure_pending + excluded.closure_pending,
        overdue = t.overdue + excluded.overdue,
        rebounds = t.rebounds + excluded.rebounds;
    return null;
end
$$;

-- … and an update moves it from its old counts to its new ones (items are never deleted; a
-- rebuild truncates both tables).
create function tally_updated_items() returns trigger language plpgsql as $$
begin
    insert into street_tallies as t (district, street, category, registered_total, written_off_total,
        acknowledged, closure_pending, overdue, rebounds)
    select * from (
        select district, street, category, sum(sign),
               sum(sign * (status = 'written_off')::int),
               sum(sign * (status = 'acknowledged')::int),
               sum(sign * (status = 'closure_pending')::int),
               sum(sign * (status <> 'written_off' and cardinality(overdue) > 0)::int),
               sum(sign * (rebound_of is not null)::int)
        from (select district, street, category, status, overdue, rebound_of, 1 as sign from new_items
              union all select district, street, category, status, overdue, rebound_of, -1 from old_items) c
        group by 1, 2, 3
    ) d(district, street, category, registered_total, written_off_total, acknowledged, closure_pending, overdue, rebounds)
    -- A change that moves no count (a link, an extension) takes no lock on the street's row.
    where (registered_total, written_off_total, acknowledged, closure_pending, overdue, rebounds)
          <> (0, 0, 0, 0, 0, 0)
    order by 1, 2, 3
    on conflict (district, street, category) do update set
        registered_total = t.registered_total + excluded.registered_total,
        written_off_total = t.written_off_total + excluded.written_off_total,
        acknowledged = t.acknowledged + excluded.acknowledged,
        closure_pending = t.closure_pending + excluded.closure_pending,
        overdue = t.overdue + excluded.overdue,
        rebounds = t.rebounds + excluded.rebounds;
    return null;
end
$$;

create trigger items_tally_insert after insert on items
    referencing new table as new_items for each statement execute function tally_inserted_items();
create trigger items_tally_update after update on items
    referencing old table as old_items new table as new_items for each statement execute function tally_updated_items();

-- The tallies counted afresh from the items: for existing ledgers here, and after a rebuild's bulk
-- load (which runs with the insert trigger off: one count beats a 240,000-row transition table).
create function count_street_tallies() returns void language sql as $$
    delete from street_tallies;
    insert into street_tallies (district, street, category, registered_total, written_off_total, acknowledged,
        closure_pending, overdue, rebounds)
    select district, street, category, count(*),
           count(*) filter (where status = 'written_off'),
           count(*) filter (where status = 'acknowledged'),
           count(*) filter (where status = 'closure_pending'),
           count(*) filter (where status <> 'written_off' and cardinality(overdue) > 0),
           count(*) filter (where rebound_of is not null)
    from items group by 1, 2, 3;
$$;

select count_street_tallies();
