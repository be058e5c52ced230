-- Accounts. Emails are stored as users.NormalizeEmail writes them (trimmed,
-- lower-cased); the unique index on lower(email) makes one account per
-- address whatever its case even if a writer forgot to normalise, and it is
-- the index that serves the lookup "where lower(email) = lower($1)".
create table users (
    id            text        primary key,
    email         text        not null check (email <> ''),
    password_hash bytea       not null,
    roles         text[]      not null default '{}',
    created_at    timestamptz not null default now()
);

create unique index users_email_lower_key on users (lower(email));
