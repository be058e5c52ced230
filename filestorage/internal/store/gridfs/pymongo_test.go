package gridfs_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/filestorage/internal/store/storetest"
	"github.com/audiomill/audiomill/platform/testenv"
)

// python is Debian's interpreter, where python3-pymongo and python3-gridfs
// are installed (scripts/install.sh); not whatever python3 PATH finds.
const python = "/usr/bin/python3"

// pymongoScript runs pymongo's gridfs against the database: argv is
// URI, database, bucket, then "read <id> <name> <out-file>" (writes the
// file read by id to out-file, and fails unless reading it by name gives
// the same bytes) or "write <name> <in-file> <chunk size>" (prints the new
// file's id).
const pymongoScript = `
import sys
import gridfs, pymongo
from bson import ObjectId
uri, dbname, bucket, op = sys.argv[1:5]
db = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)[dbname]
fs = gridfs.GridFSBucket(db, bucket_name=bucket)
if op == "read":
    fid, name, out = sys.argv[5:8]
    data = fs.open_download_stream(ObjectId(fid)).read()
    if fs.open_download_stream_by_name(name).read() != data:
        sys.exit("by name and by id differ")
    open(out, "wb").write(data)
elif op == "write":
    name, src, chunk = sys.argv[5:8]
    fid = fs.upload_from_stream(name, open(src, "rb"), chunk_size_bytes=int(chunk), metadata={"owner": "py"})
    print(fid)
`

// runPymongo runs pymongoScript with args and returns its output. A
// missing interpreter or module fails the test, naming what to install.
func runPymongo(t *testing.T, args ...string) string {
	t.Helper()
	if err := exec.Command(python, "-c", "import pymongo, gridfs").Run(); err != nil {
		t.Fatalf("pymongo interop needs %s with Debian's python3-pymongo and python3-gridfs (scripts/install.sh installs them): %v", python, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(python, append([]string{"-c", pymongoScript, testenv.MongoURI(t)}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("pymongo %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// pymongo's gridfs reads what filestorage writes: a one-shot write and a
// resumable upload, each over several chunks, by id and by name.
func TestPymongoReadsFilestorageFiles(t *testing.T) {
	b, db := newBackend(t)
	ctx := testenv.Context(t, 60*time.Second)
	dir := t.TempDir()

	data := storetest.Data(10*testChunkSize+123, 21)
	f, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "dir/ours.bin", Owner: "alice"}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "put.bin")
	runPymongo(t, db.Name(), "media", "read", f.ID, "dir/ours.bin", out)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatalf("pymongo read %d bytes of a one-shot write, want the %d written", len(got), len(data))
	}

	tus := storetest.Data(7*testChunkSize+5, 22)
	u, err := b.CreateUpload(ctx, store.Upload{Bucket: "media", Path: "up.bin", Owner: "alice", Length: int64(len(tus))})
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(tus); off += 2500 {
		if _, err := b.AppendUpload(ctx, u.ID, int64(off), bytes.NewReader(tus[off:min(off+2500, len(tus))]), nil); err != nil {
			t.Fatal(err)
		}
	}
	uf, err := b.CompleteUpload(ctx, u.ID, store.ReplaceOwn)
	if err != nil {
		t.Fatal(err)
	}
	out = filepath.Join(dir, "tus.bin")
	runPymongo(t, db.Name(), "media", "read", uf.ID, "up.bin", out)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, tus) {
		t.Fatalf("pymongo read %d bytes of a resumable upload, want the %d written", len(got), len(tus))
	}
}

// filestorage reads what pymongo's gridfs writes (ObjectID chunk _ids, its
// own chunk size): by id and by path, whole and by range, and lists it
// once found by path; it deletes it too.
func TestFilestorageReadsPymongoFiles(t *testing.T) {
	b, db := newBackend(t)
	ctx := testenv.Context(t, 60*time.Second)
	// The bucket exists and has its folder index before pymongo writes.
	if _, err := b.Put(ctx, store.PutRequest{Bucket: "media", Path: "dir/ours.bin"}, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	data := storetest.Data(9_999, 23)
	src := filepath.Join(t.TempDir(), "src.bin")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	id := runPymongo(t, db.Name(), "media", "write", "dir/theirs.bin", src, "4096")

	byID, err := b.Stat(ctx, id)
	if err != nil || byID.Path != "dir/theirs.bin" || byID.Size != int64(len(data)) || byID.Owner != "py" {
		t.Fatalf("stat by id = %+v, %v", byID, err)
	}
	byPath, err := b.StatPath(ctx, "media", "dir/theirs.bin")
	if err != nil || byPath.ID != id {
		t.Fatalf("stat by path = %+v, %v", byPath, err)
	}
	readRanges(t, b, byPath, data, [][2]int64{{0, -1}, {4000, 5000}, {9_998, 1}})
	page, err := b.List(ctx, "media", store.ListOptions{Prefix: "dir/", Delimiter: "/"})
	if err != nil || len(page.Entries) != 2 || page.Entries[1].Key() != "dir/theirs.bin" {
		t.Fatalf("list = %+v, %v", page, err)
	}
	if err := b.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := b.StatPath(ctx, "media", "dir/theirs.bin"); err == nil {
		t.Fatal("deleted file still found by path")
	}
}
