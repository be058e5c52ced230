-- The resumable (tus) uploads of /api/v1/uploads (docs/gateway.md): one row
-- per upload, from its creation until it expires. The bytes go to
-- filestorage's own tus upload (storage_url), stored at the path of the job
-- the upload will become (job_id, chosen at creation): that job is recorded
-- once, with the jobs primary key as the guard, when the upload is whole;
-- completed_at says it was.

create table uploads (
    -- The public id: 32 lowercase hex digits (128 random bits).
    id            text collate "C" primary key check (id ~ '^[0-9a-f]{32}$'),
    owner         text collate "C" not null,
    owner_email   text not null,
    locale        text not null default '',
    -- The creation's request id: the job's correlation id.
    request_id    text not null default '',
    job_id        text collate "C" not null unique check (job_id ~ '^[0-9a-f]{24}$'),
    storage_url   text not null,
    file_name     text not null,
    content_type  text not null,
    length        bigint not null check (length > 0),
    created_at    timestamptz not null default now(),
    -- filestorage's expiry of the unfinished upload; once completed, how
    -- long HEAD still answers with the job.
    expires_at    timestamptz not null,
    completed_at  timestamptz
);

-- The sweep of expired rows.
create index uploads_expires on uploads (expires_at);
