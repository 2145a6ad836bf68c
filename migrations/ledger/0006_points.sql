-- Points (点位) on a map (CONTRACT §11): a point's file sums what its items' write-off requests
-- cleared, so each item keeps the rooms and partition area of its (latest) request.
alter table items add column if not exists rooms_cleared integer;
alter table items add column if not exists partition_area_m2 double precision;
