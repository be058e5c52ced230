-- The jobs' change feed, for the live job list (GET /api/v1/jobs/events,
-- docs/architecture.md "Live job events"). One row per change of a job that
-- was applied, written in the transaction of the change: its creation, each
-- status or progress change, its delete. A transaction takes the owner's
-- advisory lock (pg_advisory_xact_lock(7419, hashtext(owner))) before its
-- insert, so one owner's ids grow in commit order; it then notifies the
-- channel job_events with the owner, and every gateway replica listening
-- wakes that owner's streams, which read "owner = $1 and id > $last".
--
-- No foreign key to jobs: the event of a delete outlives its job.

create table job_events (
    id         bigint generated always as identity primary key,
    owner      text collate "C" not null,
    job_id     text collate "C" not null,
    kind       text not null check (kind in ('job', 'deleted')),
    -- The job as the change left it (null for a delete).
    job        jsonb,
    created_at timestamptz not null default now()
);

-- A stream's read, and the owner's latest id.
create index job_events_owner on job_events (owner, id);
-- The retention sweep.
create index job_events_created on job_events (created_at);

-- The highest id the retention sweep deleted: every event up to it is gone
-- (the sweep deletes a prefix of ids), so a Last-Event-ID below it may have
-- missed events and gets a reset.
create table job_events_pruned (
    one  boolean primary key default true check (one),
    upto bigint not null
);
insert into job_events_pruned (upto) values (0);
