// Command ferretdb runs FerretDB v1.24 embedded, on SQLite under a data
// directory, as audiomill's local MongoDB-compatible database.
//
// FerretDB's own cmd/ferretdb panics at start when built from the module proxy
// (its version file is missing there), so the stack uses this launcher of the
// embeddable package instead.
//
// It also keeps, in every collection table, an index on the expression
// FerretDB's SQLite backend queries for an {_id: …} filter (see idindex.go):
// at start, before serving, for the tables there are, and then every
// second for the tables created since.
//
// Flags (each has an environment variable of the same meaning):
//
//	-listen   FERRETDB_LISTEN   TCP address to serve the MongoDB wire protocol on (default 127.0.0.1:27017)
//	-data     FERRETDB_DATA     directory holding the SQLite files (default ./data/ferretdb)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

const (
	defaultListen = "127.0.0.1:27017"
	defaultData   = "data/ferretdb"
	// idIndexInterval is how often new collection tables get their _id
	// lookup index.
	idIndexInterval = time.Second
)

func main() {
	logger := slog.New(newLazyAttrs(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err := run(logger, os.Args[1:]); err != nil {
		logger.Error("ferretdb stopped", "err", err)
		os.Exit(1)
	}
}

func run(logger *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("ferretdb", flag.ContinueOnError)
	listen := fs.String("listen", envOr("FERRETDB_LISTEN", defaultListen), "TCP address for the MongoDB wire protocol")
	data := fs.String("data", envOr("FERRETDB_DATA", defaultData), "directory of the SQLite files")
	if err := fs.Parse(args); err != nil {
		return err
	}

	dir, err := filepath.Abs(*data)
	if err != nil {
		return fmt.Errorf("data directory %q: %w", *data, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create data directory %s: %w", dir, err)
	}

	if err := removeOrphans(dir, logger); err != nil {
		return err
	}
	ix := newIDIndexer(dir, logger)
	start := time.Now()
	n, err := ix.pass(context.Background())
	if err != nil {
		return fmt.Errorf("_id lookup indexes in %s: %w", dir, err)
	}
	logger.Info("_id lookup indexes ready", "created", n, "took", time.Since(start).Round(time.Millisecond).String())

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
	})
	if err != nil {
		return fmt.Errorf("start ferretdb on %s: %w", *listen, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go ix.keep(ctx, idIndexInterval)
	logger.Info("ferretdb serving", "listen", *listen, "data", dir)
	if err := f.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("ferretdb: %w", err)
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
