package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the SQLite driver FerretDB itself uses
)

// FerretDB 1.24 on SQLite keeps each collection in a table of one JSON
// column, _ferretdb_sjson, and pushes a query whose filter is exactly
// {_id: <string or ObjectID>} down to SQLite as
//
//	WHERE _ferretdb_sjson->'$._id' = ?
//
// while the unique index it creates for _id is on _ferretdb_sjson->"_id",
// an expression SQLite does not match to that one: every _id lookup scans
// the table. idExpr is the expression FerretDB queries, and the launcher
// keeps an index on it in every collection table, so those lookups are
// index lookups.
const idExpr = `_ferretdb_sjson->'$._id'`

// idIndexPrefix names our indexes. FerretDB names its own
// "<table>_<index name>", so no name of its can start with this.
const idIndexPrefix = "audiomill_id_path_"

// metadataTable is FerretDB's table listing the collections of a database
// file (collection name, table name, settings).
const metadataTable = "_ferretdb_collections"

// idIndexer creates the missing _id expression indexes in the database
// files of dir. It remembers, per file, the schema version it last brought
// up to date, so a pass over files whose schema did not change opens each
// once and reads one pragma.
type idIndexer struct {
	dir    string
	logger *slog.Logger
	seen   map[string]fileVersion
}

// fileVersion identifies a database file's state: a dropped and recreated
// database is a new file (inode) whose schema version may repeat. A file
// whose inode and modification times (of it and of its write-ahead log)
// did not change is not opened again.
type fileVersion struct {
	inode          uint64
	mtime, walTime time.Time
	schema         int64
}

func newIDIndexer(dir string, logger *slog.Logger) *idIndexer {
	return &idIndexer{dir: dir, logger: logger, seen: map[string]fileVersion{}}
}

// pass brings every database file of the directory up to date and returns
// how many indexes it created.
func (x *idIndexer) pass(ctx context.Context) (int, error) {
	files, err := filepath.Glob(filepath.Join(x.dir, "*.sqlite"))
	if err != nil {
		return 0, fmt.Errorf("list database files in %s: %w", x.dir, err)
	}
	present := map[string]bool{}
	created := 0
	var errs []error
	for _, f := range files {
		present[f] = true
		n, err := x.file(ctx, f)
		created += n
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for f := range x.seen {
		if !present[f] {
			delete(x.seen, f)
		}
	}
	return created, errors.Join(errs...)
}

// file brings one database file up to date.
func (x *idIndexer) file(ctx context.Context, path string) (int, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err // dropped since the listing
	}
	v := fileVersion{inode: inodeOf(st), mtime: st.ModTime()}
	if wst, err := os.Stat(path + "-wal"); err == nil {
		v.walTime = wst.ModTime()
	}
	if old, ok := x.seen[path]; ok && old.inode == v.inode && old.mtime.Equal(v.mtime) && old.walTime.Equal(v.walTime) {
		return 0, nil
	}
	// mode=rw: a database dropped meanwhile is not created again.
	u := url.URL{Scheme: "file", Path: path, RawQuery: "mode=rw&_pragma=busy_timeout(10000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer x.closeDB(db, path, v.inode)
	db.SetMaxOpenConns(1)
	var schema int64
	if err := db.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&schema); err != nil {
		if _, serr := os.Stat(path); serr != nil {
			return 0, serr
		}
		return 0, fmt.Errorf("schema version of %s: %w", path, err)
	}
	if old, ok := x.seen[path]; ok && old.inode == v.inode && old.schema == schema {
		x.seen[path] = fileVersion{inode: v.inode, mtime: v.mtime, walTime: v.walTime, schema: schema}
		return 0, nil
	}
	n, err := ensureIDIndexes(ctx, db, x.logger.With("file", filepath.Base(path)))
	if err != nil {
		return n, fmt.Errorf("%s: %w", path, err)
	}
	// Our own CREATE INDEX moved the schema version on: record the one
	// after it.
	if err := db.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&v.schema); err != nil {
		return n, fmt.Errorf("schema version of %s: %w", path, err)
	}
	x.seen[path] = v
	return n, nil
}

func inodeOf(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}

// closeDB closes our connection to path. Should FerretDB have dropped the
// database (closed its connections, removed the file) while ours was open,
// ours was the last one, and SQLite leaves the write-ahead log and
// shared-memory files of a removed database behind: they are removed, so
// that a database created later under the same name does not find them.
func (x *idIndexer) closeDB(db *sql.DB, path string, inode uint64) {
	if err := db.Close(); err != nil {
		x.logger.Warn("close database file", "file", path, "err", err)
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		for _, f := range []string{path + "-wal", path + "-shm"} {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				x.logger.Warn("remove the files of a dropped database", "file", f, "err", err)
			}
		}
	case err == nil && inodeOf(st) != inode:
		x.logger.Warn("database dropped and created again while the _id index pass had it open; check its -wal file", "file", path)
	}
}

// ensureIDIndexes creates the _id expression index of every collection
// table of db that lacks it, and returns how many it created.
func ensureIDIndexes(ctx context.Context, db *sql.DB, logger *slog.Logger) (int, error) {
	var hasMeta int
	err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", metadataTable).Scan(&hasMeta)
	if err != nil {
		return 0, fmt.Errorf("look for %s: %w", metadataTable, err)
	}
	if hasMeta == 0 {
		return 0, nil // a database file FerretDB has not set up yet
	}
	rows, err := db.QueryContext(ctx, fmt.Sprintf(`SELECT m.table_name FROM %q m
		WHERE NOT EXISTS (SELECT 1 FROM sqlite_schema s WHERE s.type = 'index' AND s.name = ? || m.table_name)
		AND EXISTS (SELECT 1 FROM sqlite_schema s WHERE s.type = 'table' AND s.name = m.table_name)`, metadataTable), idIndexPrefix)
	if err != nil {
		return 0, fmt.Errorf("list collection tables: %w", err)
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return 0, fmt.Errorf("list collection tables: %w", err)
		}
		tables = append(tables, t)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, fmt.Errorf("list collection tables: %w", err)
	}
	created := 0
	for _, t := range tables {
		start := time.Now()
		q := fmt.Sprintf("CREATE INDEX IF NOT EXISTS %q ON %q (%s)", idIndexPrefix+t, t, idExpr)
		if _, err := db.ExecContext(ctx, q); err != nil {
			if strings.Contains(err.Error(), "no such table") {
				continue // the collection was dropped meanwhile
			}
			return created, fmt.Errorf("index _id of table %s: %w", t, err)
		}
		created++
		level := slog.LevelDebug
		if time.Since(start) > time.Second {
			level = slog.LevelInfo
		}
		logger.Log(ctx, level, "_id lookup index created", "table", t, "took", time.Since(start).Round(time.Millisecond).String())
	}
	return created, nil
}

// keep runs a pass every interval until ctx ends, so collections
// created while FerretDB runs get their index within about interval.
func (x *idIndexer) keep(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := x.pass(ctx); err != nil && ctx.Err() == nil {
				x.logger.Warn("_id lookup indexes", "err", err)
			}
		}
	}
}

// removeOrphans removes the write-ahead log and shared-memory files of
// databases whose file is gone (dropped while another connection had them
// open), which a database created later under the same name would
// otherwise take for its own. It runs before FerretDB opens anything.
func removeOrphans(dir string, logger *slog.Logger) error {
	for _, suffix := range []string{"-wal", "-shm"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.sqlite"+suffix))
		if err != nil {
			return fmt.Errorf("list %s files in %s: %w", suffix, dir, err)
		}
		for _, f := range files {
			if _, err := os.Stat(strings.TrimSuffix(f, suffix)); !errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("remove %s: %w", f, err)
			}
			logger.Info("removed the file of a dropped database", "file", filepath.Base(f))
		}
	}
	return nil
}
