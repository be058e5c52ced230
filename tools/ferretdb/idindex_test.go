package main

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ferretDBIDQuery is the statement FerretDB 1.24's SQLite backend runs for
// a find whose filter is {_id: …} (internal/backends/sqlite/collection.go:
// prepareSelectClause, then " WHERE " + metadata.IDColumn + " = ?").
const ferretDBIDQuery = `SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`

// newFerretDBFile makes a database file laid out as FerretDB's SQLite
// backend makes one: its collections table, and a collection table with
// FerretDB's own _id index.
func newFerretDBFile(t *testing.T, dir, name string, tables ...string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, name+".sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	stmts := []string{`CREATE TABLE "_ferretdb_collections" (name TEXT NOT NULL UNIQUE CHECK (name != ''), table_name TEXT NOT NULL UNIQUE CHECK (table_name != ''), settings TEXT NOT NULL CHECK (settings != '')) STRICT`}
	for _, tb := range tables {
		stmts = append(stmts,
			`CREATE TABLE "`+tb+`" (_ferretdb_sjson TEXT NOT NULL CHECK (_ferretdb_sjson != '')) STRICT`,
			`CREATE UNIQUE INDEX "`+tb+`__id_" ON "`+tb+`" (_ferretdb_sjson->"_id")`,
			`INSERT INTO "_ferretdb_collections" VALUES ('`+tb+`', '`+tb+`', '{}')`,
			`INSERT INTO "`+tb+`" VALUES ('{"$s":{"p":{"_id":{"t":"string"}},"$k":["_id"]},"_id":"a.0"}')`,
		)
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return db
}

func plan(t *testing.T, db *sql.DB, table string) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+strings.Replace(ferretDBIDQuery, "%q", `"`+table+`"`, 1), `"a.0"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		out = append(out, detail)
	}
	return strings.Join(out, "; ")
}

// FerretDB's _id query scans without the launcher's index and searches it
// with; a second pass creates nothing; files FerretDB has not set up, and
// other files, are left alone.
func TestIDIndexIsWhatFerretDBQueriesUse(t *testing.T) {
	dir := t.TempDir()
	db := newFerretDBFile(t, dir, "files", "media_chunks_1a2b", "media_files_3c4d")
	if p := plan(t, db, "media_chunks_1a2b"); !strings.Contains(p, "SCAN") {
		t.Fatalf("before: plan %q, expected FerretDB's own index not to serve its query", p)
	}
	bare, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "bare.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if _, err := bare.Exec(`CREATE TABLE x (a TEXT)`); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	x := newIDIndexer(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	n, err := x.pass(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("first pass created %d, %v; want 2", n, err)
	}
	// A connection of its own, as FerretDB's statements are prepared anew.
	fresh, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "files.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for _, tb := range []string{"media_chunks_1a2b", "media_files_3c4d"} {
		if p := plan(t, fresh, tb); !strings.Contains(p, "USING INDEX "+idIndexPrefix+tb) {
			t.Fatalf("after: plan of %s %q does not use %s", tb, p, idIndexPrefix+tb)
		}
	}
	var got string
	if err := fresh.QueryRow(strings.Replace(ferretDBIDQuery, "%q", `"media_chunks_1a2b"`, 1), `"a.0"`).Scan(&got); err != nil || !strings.Contains(got, `"a.0"`) {
		t.Fatalf("lookup through the index = %q, %v", got, err)
	}
	if n, err := x.pass(context.Background()); err != nil || n != 0 {
		t.Fatalf("second pass created %d, %v; want 0", n, err)
	}

	// A collection created later gets its index at the next pass.
	newFerretDBFile(t, dir, "later", "jobs_5e6f")
	if n, err := x.pass(context.Background()); err != nil || n != 1 {
		t.Fatalf("pass after a new database created %d, %v; want 1", n, err)
	}
}

// A directory that does not exist is an error of the pass, not a panic;
// an empty one has nothing to do.
func TestIDIndexerBadDirectory(t *testing.T) {
	x := newIDIndexer(filepath.Join(t.TempDir(), "missing"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if n, err := x.pass(context.Background()); err != nil || n != 0 {
		t.Fatalf("missing directory: %d, %v", n, err)
	}
	x = newIDIndexer("[", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := x.pass(context.Background()); err == nil {
		t.Fatal("a malformed glob pattern passed")
	}
}

// A database dropped while the pass had it open leaves no write-ahead log
// behind for a database created later under its name.
func TestIDIndexerCleansUpADroppedDatabase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gone.sqlite")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(wal)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE t (a TEXT); INSERT INTO t VALUES ('x')`); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil { // FerretDB's dropDatabase
		t.Fatal(err)
	}
	x := newIDIndexer(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	x.closeDB(db, path, inodeOf(st))
	for _, f := range []string{path + "-wal", path + "-shm"} {
		if _, err := os.Stat(f); err == nil {
			t.Fatalf("%s left behind", f)
		}
	}
}

// At start, the WAL files of a database whose file is gone are removed,
// and those of a database that is there are kept.
func TestRemoveOrphans(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"gone.sqlite-wal", "gone.sqlite-shm", "here.sqlite", "here.sqlite-wal", "here.sqlite-shm"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeOrphans(dir, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != "here.sqlite here.sqlite-shm here.sqlite-wal" {
		t.Fatalf("left %v", left)
	}
}
