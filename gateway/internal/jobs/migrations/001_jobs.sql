-- The gateway's jobs and their transactional outbox (docs/architecture.md).
--
-- Job ids keep the public form they had in MongoDB: 24 lowercase hex digits
-- (an ObjectID). They are stored as that text, in the "C" collation (byte
-- order: the keyset comparisons and the btree need no locale), because the
-- text is what every boundary carries: URLs, the events' job_id, the
-- converter's idempotency keys, filestorage paths, log lines.

create table jobs (
    id                     text collate "C" primary key check (id ~ '^[0-9a-f]{24}$'),
    owner                  text collate "C" not null,
    owner_email            text not null,
    locale                 text not null default '',
    status                 text not null check (status in ('queued', 'converting', 'done', 'failed')),
    progress               smallint not null default 0 check (progress between 0 and 100),
    video_file_id          text not null,
    video_name             text not null,
    video_content_type     text not null,
    video_size             bigint not null,
    -- The MP3, once the job is done (all null before).
    audio_file_id          text collate "C",
    audio_size             bigint,
    audio_duration_seconds double precision,
    audio_bitrate_kbps     integer,
    reason                 text not null default '',
    retryable              boolean not null default false,
    -- The upload's request id: the events' correlation id.
    request_id             text not null default '',
    created_at             timestamptz not null,
    updated_at             timestamptz not null
);

-- GET /api/v1/jobs/{id} is served by the primary key (owner is then checked
-- on the one row). The list, newest first, keyset on (created_at, id):
create index jobs_owner_created on jobs (owner, created_at, id);
-- the list filtered by status:
create index jobs_owner_status_created on jobs (owner, status, created_at, id);
-- the seed route /download?fid=<MP3 id>:
create index jobs_owner_audio on jobs (owner, audio_file_id) where audio_file_id is not null;

-- One row per event to publish. A row is written in the transaction that
-- writes its job; it is published (published_at set) after the broker's
-- confirm, or set aside as dead (dead_at, last_error) when it can never be
-- published. Until claimed_until, one publisher (the upload that wrote it,
-- or one relay) owns it; the relays claim rows whose claim ran out.
create table outbox (
    id            bigint generated always as identity primary key,
    job_id        text collate "C" not null references jobs (id) on delete cascade,
    -- The routing key, and the envelope published as is (its id is kept
    -- across republishes).
    type          text not null,
    envelope      jsonb not null,
    created_at    timestamptz not null default now(),
    claimed_until timestamptz not null,
    attempts      integer not null default 0,
    published_at  timestamptz,
    dead_at       timestamptz,
    last_error    text
);

-- The relay's claim: unpublished live rows, oldest claim first.
create index outbox_pending on outbox (claimed_until, id) where published_at is null and dead_at is null;
-- A job's delete cascades here.
create index outbox_job on outbox (job_id);
-- Pruning published rows.
create index outbox_published on outbox (published_at) where published_at is not null;
