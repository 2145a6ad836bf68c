-- 台账流水 is the ledger's log itself: every registration and every write-off, at the position of
-- its event. A view instead of a table written beside each event: one statement less per
-- registration and write-off, and nothing to rebuild.
drop table journal;

create view journal as
select position,
       case event_type when 'item_registered' then 'registration' else 'write_off' end as kind,
       (data->>'item_id')::uuid as item_id,
       data->>'district' as district,
       data->>'street' as street,
       data->>'category' as category,
       (data->>'point_id')::uuid as point_id,
       occurred_at as at,
       actor,
       case when event_type = 'item_registered' then (data->>'complaint_id')::uuid end as complaint_id,
       case when event_type = 'item_written_off' then (data->>'closure_id')::uuid end as closure_id,
       case when event_type = 'item_written_off' then data->>'kind' end as write_off_kind
from events
where event_type in ('item_registered', 'item_written_off');

create index events_journal_by_street on events ((data->>'district'), (data->>'street'), position)
    where event_type in ('item_registered', 'item_written_off');
