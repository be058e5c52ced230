-- The Idempotency-Key of POST /api/v1/videos (docs/gateway.md): one row per
-- owner and key. An attempt claims the row (attempt: the id of the job it
-- will create; claimed_until: how long the claim holds unless renewed), and
-- the transaction that writes its job and outbox row sets job_id. A failed
-- attempt deletes its row; a claim that lapsed (its gateway died) or a key
-- past expires_at is taken over by the next attempt. Deleting the job
-- deletes its key.

create table idempotency_keys (
    owner         text collate "C" not null,
    key           text collate "C" not null check (key ~ '^[ -~]{1,255}$'),
    -- The upload the key was first used for (file name, content type,
    -- declared size), hashed: the same key for another upload is refused.
    fingerprint   text not null,
    attempt       text collate "C" not null,
    job_id        text collate "C" references jobs (id) on delete cascade,
    -- Set while an attempt runs (null once the job is recorded).
    claimed_until timestamptz,
    expires_at    timestamptz not null,
    created_at    timestamptz not null default now(),
    primary key (owner, key),
    check ((job_id is null) <> (claimed_until is null))
);

-- A job's delete cascades here.
create index idempotency_keys_job on idempotency_keys (job_id) where job_id is not null;
-- The sweep of expired keys.
create index idempotency_keys_expires on idempotency_keys (expires_at);
