-- Email verification. Accounts made before this migration count as verified
-- (the column is added with default true, then its default becomes false
-- for the accounts sign-up makes from now on). A verification link's secret
-- is stored only as its SHA-256; a row is deleted when the link is used, so
-- a link works once, and it stops working at expires_at.
alter table users add column email_verified boolean not null default true;
alter table users alter column email_verified set default false;

create table email_verifications (
    token_hash bytea       primary key,
    user_id    text        not null references users (id) on delete cascade,
    expires_at timestamptz not null,
    created_at timestamptz not null default now()
);

create index email_verifications_user_id on email_verifications (user_id);
