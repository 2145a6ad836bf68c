-- Only an open item is ever looked up by one of its complaints (a return, a repeat call): index
-- those alone. Most items are written off, so the index stays small and quick to build.
drop index items_by_complaint;
create index items_open_by_complaint on items using gin (complaint_ids) where status <> 'written_off';
