-- The display name of the person behind `actor` (the identity provider's `name` claim), when the
-- token gave one: histories say who did what. Older events have none.
alter table events add column if not exists actor_name text;
