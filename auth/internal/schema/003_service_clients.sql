-- Service clients (the client-credentials grant). SERVICE_CLIENTS and
-- SERVICE_CLIENTS_FILE stay the source of truth: each auth replica writes
-- the configured set here at start (removing clients no longer configured)
-- and authenticates against this table, so every replica sees one set and
-- an operator can inspect it. Only the SHA-256 of a secret is stored.
create table service_clients (
    id            text        primary key,
    secret_sha256 bytea       not null check (octet_length(secret_sha256) = 32),
    scopes        text[]      not null default '{}',
    updated_at    timestamptz not null default now()
);
