-- A complaint's history (一案一档) is its own stream in the log and the ledger's events about it.
-- intake's own events are read from the log itself and the ledger's from the inbox, so this table
-- only says which of the ledger's events concern which complaint, and when they happened: a
-- registration no longer copies its events, and a rebuild writes two ids and a time per entry.
delete from complaint_history h using events e where e.event_id = h.event_id;
alter table complaint_history drop column if exists event_type, drop column if exists actor,
    drop column if exists data;
