-- Where each applied foreign event sits in its source's log. Every instance of a service receives
-- only part of the messages, so the loss watchdog reads what was received from here.
alter table inbox add column source text, add column position bigint;
create index inbox_source_position on inbox (source, position);
