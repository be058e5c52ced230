// Package schema holds auth's PostgreSQL schema: tern migrations (the
// NNN_name.sql files of this directory), embedded in the binary and run at
// start by pgdb (service.App.Postgres), by "auth rotate-keys" and by
// "auth migrate-from-mongo".
//
// Tables: users (unique email whatever its case), signing_keys (unique seq;
// the highest is current; seeds sealed with the KEK) and service_clients (the configured clients,
// with the SHA-256 of their secret, never the secret).
package schema

import (
	"embed"
	"io/fs"
)

//go:embed *.sql
var migrations embed.FS

// Migrations returns the migration files, at the root of the fs.FS as
// pgdb.Migrate wants them.
func Migrations() fs.FS { return migrations }
