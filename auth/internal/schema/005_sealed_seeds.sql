-- Signing-key seeds encrypted at rest (keys.KEK: AES-256-GCM with the
-- key-encryption key of AUTH_KEK_FILE / AUTH_KEK, which is never stored
-- here). A row holds either the sealed seed (sealed_seed) or, until auth
-- seals it at its next start or reload, a plaintext seed of a key made
-- before this migration or copied by migrate-from-mongo (seed).
alter table signing_keys alter column seed drop not null;
alter table signing_keys add column sealed_seed bytea;
alter table signing_keys add constraint signing_keys_one_seed check ((seed is null) <> (sealed_seed is null));
