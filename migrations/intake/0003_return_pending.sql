-- A return (退单) waits for the ledger's word: the ledger owns the item and refuses a return that
-- reaches it after the item was acknowledged. Until it has answered, the complaint cannot be
-- re-dispatched.
alter table complaints add column if not exists return_pending boolean not null default false;
