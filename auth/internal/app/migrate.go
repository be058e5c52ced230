package app

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/audiomill/audiomill/auth/internal/frommongo"
	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/mongoconn"
	"github.com/audiomill/audiomill/platform/pgdb"
)

// migrateTimeout bounds connecting to both databases and migrating the
// schema; the copy itself runs until it is done or interrupted.
const migrateTimeout = 30 * time.Second

// MigrateFromMongo is the "auth migrate-from-mongo" command: it copies the
// users and signing keys of a stack's MongoDB (MONGO_URI, MONGO_DATABASE,
// default audiomill_auth) into PostgreSQL (DATABASE_URL; the schema is
// migrated first) and prints what it copied. Running it again copies
// nothing twice. It returns the process exit code.
func MigrateFromMongo(ctx context.Context, env func(string) string, out, errOut io.Writer) int {
	const cmd = "auth migrate-from-mongo"
	r := config.NewReader(env)
	mcfg := mongoconn.ReadConfig(r, DefaultDatabase)
	pcfg := pgdb.ReadConfig(r, pgdb.DefaultURL(DefaultDatabase))
	if err := r.Err(); err != nil {
		fmt.Fprintf(errOut, "%s: %v\n", cmd, err)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(errOut, "%s: %v\n", cmd, err)
		return 1
	}
	client, err := mongoconn.Connect(mcfg)
	if err != nil {
		return fail(fmt.Errorf("mongodb: %w", err))
	}
	defer func() { _ = client.Disconnect(context.WithoutCancel(ctx)) }()
	setup, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	if err := mongoconn.Ping(client)(setup); err != nil {
		return fail(fmt.Errorf("mongodb (MONGO_URI): %w", err))
	}
	pool, err := openMigrated(setup, pcfg)
	if err != nil {
		return fail(fmt.Errorf("postgres (DATABASE_URL): %w", err))
	}
	defer pool.Close()
	c, err := frommongo.Copy(ctx, client.Database(mcfg.Database), pool)
	if err != nil {
		fmt.Fprintf(out, "users: %d copied before the failure; signing keys: none\n", c.Users)
		return fail(err)
	}
	fmt.Fprintf(out, "users: %d copied, %d already there", c.Users, c.UsersPresent)
	if len(c.UsersTaken) > 0 {
		fmt.Fprintf(out, ", %d not copied because another account has their email (ids %s)",
			len(c.UsersTaken), strings.Join(c.UsersTaken, " "))
	}
	fmt.Fprintf(out, "\nsigning keys: %d copied, %d already there", c.Keys, c.KeysPresent)
	if c.KeysRenumbered {
		fmt.Fprint(out, " (numbered below the keys auth had made on PostgreSQL, which stay current)")
	}
	fmt.Fprintf(out, "\nfrom mongodb database %q into postgres database %q\n", mcfg.Database, databaseName(pcfg.URL))
	return 0
}

// databaseName returns the database of a PostgreSQL URL, for messages (the
// URL itself may hold a password).
func databaseName(url string) string {
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		name, _, _ := strings.Cut(url[i+1:], "?")
		return name
	}
	return "?"
}
