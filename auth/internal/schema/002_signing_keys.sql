-- Ed25519 signing keys. The key with the highest seq is current; seq is
-- unique, so two replicas rotating at once cannot both add the next key:
-- one insert wins, the other fails and adopts the winner's key.
create table signing_keys (
    id         text        primary key, -- the kid
    seq        bigint      not null,
    seed       bytea       not null check (octet_length(seed) = 32),
    created_at timestamptz not null,
    constraint signing_keys_seq_key unique (seq)
);
