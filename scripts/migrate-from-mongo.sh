#!/usr/bin/env bash
# Copies the records of a stack from before PostgreSQL (accounts and signing
# keys of auth, jobs of the gateway, kept in the MongoDB-compatible database)
# into the services' PostgreSQL databases, once:
#   scripts/migrate-from-mongo.sh
# It runs `auth migrate-from-mongo` and `gateway migrate-from-mongo` with the
# stack's settings: MONGO_URI (default the stack's FerretDB) is read, each
# service's DATABASE_URL is written. Both commands are idempotent: rows
# already copied are left as they are, so running it again copies nothing
# twice. The old data itself is not changed. On success it records
# var/data/records-migrated, which stops `make up` from reminding you.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
	cd "$R"
	"$R/scripts/deps.sh" start
	"$R/scripts/build.sh" auth gateway
	local svc settings=()
	for svc in auth gateway; do
		mapfile -t settings < <(database_url "$svc")
		((${#settings[@]} > 0)) || die "$svc: no DATABASE_URL (run make up once first)"
		say "$svc: copying its records from ${MONGO_URI:-mongodb://$FERRETDB_ADDR/} into PostgreSQL"
		env "${settings[@]}" MONGO_URI="${MONGO_URI:-mongodb://$FERRETDB_ADDR/}" \
			"$BIN_DIR/$svc" migrate-from-mongo || die "$svc migrate-from-mongo failed; nothing was lost, run it again once fixed"
	done
	date -u +%FT%TZ >"$(records_migrated_marker)"
	say "records copied; the running services see them at once"
}

main "$@"
