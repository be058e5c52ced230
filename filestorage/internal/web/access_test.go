package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/audiomill/audiomill/filestorage/internal/filestoragetest"
	"github.com/audiomill/audiomill/platform/mongoconn"
	"github.com/audiomill/audiomill/platform/testenv"
)

// answer is what a client sees of a response: its status, its headers but
// those that differ between any two requests (Date, X-Request-Id), and its
// body.
func answer(t *testing.T, resp *http.Response) string {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var hdr []string
	for k, vs := range resp.Header {
		if k == "Date" || k == "X-Request-Id" {
			continue
		}
		hdr = append(hdr, k+": "+strings.Join(vs, ", "))
	}
	slices.Sort(hdr)
	return fmt.Sprintf("%d\n%s\n\n%s", resp.StatusCode, strings.Join(hdr, "\n"), body)
}

// Every route wants a token with scope storage or storage:admin: a token
// of a user nobody granted storage gets a 403 naming the scope, and
// nothing is stored.
func TestScopeRequired(t *testing.T) {
	s, alice, _, admin := start(t, "disk", nil)
	f := decode[file](t, expect(t, alice.put("/v1/buckets/docs/files/a", []byte("a")), http.StatusCreated))
	plain := api{t, s.URL, s.Token(t, "alice")}
	other := api{t, s.URL, s.Token(t, "alice", "storage:read", "profile")}
	for _, c := range []struct {
		method, path string
		hdr          []string
	}{
		{http.MethodGet, "/v1/buckets", nil},
		{http.MethodGet, "/v1/buckets/docs/files", nil},
		{http.MethodPut, "/v1/buckets/docs/files/new", nil},
		{http.MethodGet, "/v1/buckets/docs/files/a", nil},
		{http.MethodDelete, "/v1/buckets/docs/files/a", nil},
		{http.MethodGet, "/v1/files/" + f.ID, nil},
		{http.MethodDelete, "/v1/files/" + f.ID, nil},
		{http.MethodPost, "/v1/buckets/docs/move", nil},
		{http.MethodPost, "/v1/buckets/docs/uploads", tusHeaders("Upload-Length", "1", "Upload-Metadata", meta("path", "t"))},
	} {
		for _, who := range []api{plain, other} {
			resp := who.do(c.method, c.path, strings.NewReader(`{"from":"a","to":"b"}`), c.hdr...)
			body := string(expect(t, resp, http.StatusForbidden))
			if !strings.Contains(body, `"code":"forbidden"`) || !strings.Contains(body, "scope storage") {
				t.Fatalf("%s %s without scope storage = %s, want 403 forbidden naming the scope", c.method, c.path, body)
			}
		}
	}
	// Nothing changed; the scopes that grant access do.
	if got := expect(t, alice.do(http.MethodGet, "/v1/files/"+f.ID, nil), http.StatusOK); string(got) != "a" {
		t.Fatalf("a = %q", got)
	}
	expectError(t, alice.do(http.MethodGet, "/v1/buckets/docs/files/new", nil), http.StatusNotFound, "not_found")
	expect(t, admin.do(http.MethodGet, "/v1/files/"+f.ID, nil), http.StatusOK)
	// X-Owner stays for storage:admin alone.
	expectError(t, alice.put("/v1/buckets/docs/files/x", []byte("x"), "X-Owner", "bob"), http.StatusForbidden, "forbidden")
}

// Someone else's file, folder and upload answer exactly as missing ones:
// the same status, headers and body as once they are gone. A path someone
// else's file holds is a 409 that names no owner.
func TestOthersFilesLookMissing(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			_, alice, bob, _ := start(t, backend, nil)
			secret := decode[file](t, expect(t, alice.put("/v1/buckets/docs/files/private/secret.txt", []byte("secret")), http.StatusCreated))
			expect(t, alice.put("/v1/buckets/docs/files/private/deep/more.txt", []byte("more")), http.StatusCreated)
			expect(t, bob.put("/v1/buckets/docs/files/bob.txt", []byte("bob's")), http.StatusCreated)
			resp := alice.do(http.MethodPost, "/v1/buckets/docs/uploads", nil, tusHeaders("Upload-Length", "100", "Upload-Metadata", meta("path", "private/up.bin"))...)
			expect(t, resp, http.StatusCreated)
			upload := resp.Header.Get("Location")

			type probe struct {
				name, method, path, body string
				hdr                      []string
			}
			probes := []probe{
				{"GetByID", http.MethodGet, "/v1/files/" + secret.ID, "", nil},
				{"HeadByID", http.MethodHead, "/v1/files/" + secret.ID, "", nil},
				{"RangeByID", http.MethodGet, "/v1/files/" + secret.ID, "", []string{"Range", "bytes=0-1"}},
				{"DeleteByID", http.MethodDelete, "/v1/files/" + secret.ID, "", nil},
				{"GetByPath", http.MethodGet, "/v1/buckets/docs/files/private/secret.txt", "", nil},
				{"HeadByPath", http.MethodHead, "/v1/buckets/docs/files/private/secret.txt", "", nil},
				{"DeleteByPath", http.MethodDelete, "/v1/buckets/docs/files/private/secret.txt", "", nil},
				{"DeleteFolder", http.MethodDelete, "/v1/buckets/docs/files/private", "", nil},
				{"DeleteFolderRecursive", http.MethodDelete, "/v1/buckets/docs/files/private?recursive=true", "", nil},
				{"MoveFile", http.MethodPost, "/v1/buckets/docs/move", `{"from":"private/secret.txt","to":"mine.txt"}`, nil},
				{"MoveFolder", http.MethodPost, "/v1/buckets/docs/move", `{"from":"private","to":"mine","overwrite":true}`, nil},
				{"ListFolder", http.MethodGet, "/v1/buckets/docs/files?prefix=private/", "", nil},
				{"TusHead", http.MethodHead, upload, "", tusHeaders()},
				{"TusPatch", http.MethodPatch, upload, "xyz", tusHeaders("Content-Type", "application/offset+octet-stream", "Upload-Offset", "0")},
				{"TusDelete", http.MethodDelete, upload, "", tusHeaders()},
			}
			send := func(p probe) string {
				t.Helper()
				return answer(t, bob.do(p.method, p.path, strings.NewReader(p.body), p.hdr...))
			}
			foreign := map[string]string{}
			for _, p := range probes {
				foreign[p.name] = send(p)
				// Nothing bob did not name himself.
				for _, leak := range []string{"alice", "more.txt", "deep", "up.bin"} {
					if strings.Contains(strings.SplitN(foreign[p.name], "\n\n", 2)[1], leak) {
						t.Errorf("%s: bob's answer names %q: %s", p.name, leak, foreign[p.name])
					}
				}
			}
			// alice's files are all there still.
			if got := expect(t, alice.do(http.MethodGet, "/v1/files/"+secret.ID, nil), http.StatusOK); string(got) != "secret" {
				t.Fatalf("secret.txt = %q", got)
			}
			expect(t, alice.do(http.MethodGet, "/v1/buckets/docs/files/private/deep/more.txt", nil), http.StatusOK)
			expect(t, alice.do(http.MethodHead, upload, nil, tusHeaders()...), http.StatusOK)

			// alice removes everything: now they are missing, and bob's
			// answers are the same, byte for byte.
			expect(t, alice.do(http.MethodDelete, "/v1/buckets/docs/files/private?recursive=true", nil), http.StatusOK)
			expect(t, alice.do(http.MethodDelete, upload, nil, tusHeaders()...), http.StatusNoContent)
			for _, p := range probes {
				if missing := send(p); missing != foreign[p.name] {
					t.Errorf("%s: someone else's answers\n%s\n--- a missing one answers\n%s", p.name, foreign[p.name], missing)
				}
			}
			if !strings.HasPrefix(foreign["GetByID"], "404") || !strings.HasPrefix(foreign["TusPatch"], "404") {
				t.Fatalf("GetByID = %s; TusPatch = %s; want 404", foreign["GetByID"], foreign["TusPatch"])
			}
		})
	}
}

// A folder is, to each caller, their files under it: a recursive delete or
// a move of a folder where others have files too touches the caller's
// alone and names no one else's; a path another's file holds is taken.
func TestSharedFolderAndTakenPaths(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			_, alice, bob, admin := start(t, backend, nil)
			for _, p := range []string{"shared/alice-1", "shared/sub/alice-2", "taken"} {
				expect(t, alice.put("/v1/buckets/docs/files/"+p, []byte(p)), http.StatusCreated)
			}
			for _, p := range []string{"shared/bob-1", "shared/sub/bob-2", "mine/x"} {
				expect(t, bob.put("/v1/buckets/docs/files/"+p, []byte(p)), http.StatusCreated)
			}
			noNames := func(body []byte) {
				t.Helper()
				if strings.Contains(string(body), "alice") {
					t.Fatalf("answer names alice's files or alice: %s", body)
				}
			}

			// Writes onto alice's path: 409, no owner named.
			for _, resp := range []*http.Response{
				bob.put("/v1/buckets/docs/files/taken", []byte("bob")),
				bob.do(http.MethodPost, "/v1/buckets/docs/move", strings.NewReader(`{"from":"mine/x","to":"taken","overwrite":true}`)),
				bob.do(http.MethodPost, "/v1/buckets/docs/move", strings.NewReader(`{"from":"mine/x","to":"taken"}`)),
				bob.do(http.MethodPost, "/v1/buckets/docs/uploads", nil, tusHeaders("Upload-Length", "3", "Upload-Metadata", meta("path", "taken"))...),
			} {
				body := expect(t, resp, http.StatusConflict)
				noNames(body)
				if !strings.Contains(string(body), "docs/taken is taken") {
					t.Fatalf("%s %s = %s, want the neutral message", resp.Request.Method, resp.Request.URL.Path, body)
				}
			}
			// A folder move onto a path of alice's: 409, nothing moved.
			expect(t, bob.put("/v1/buckets/docs/files/x2/free", []byte("f")), http.StatusCreated)
			expect(t, bob.put("/v1/buckets/docs/files/x2/taken", []byte("f")), http.StatusCreated)
			expect(t, admin.put("/v1/buckets/docs/files/y/taken", []byte("alice's"), "X-Owner", "alice"), http.StatusCreated)
			body := expect(t, bob.do(http.MethodPost, "/v1/buckets/docs/move", strings.NewReader(`{"from":"x2","to":"y","overwrite":true}`)), http.StatusConflict)
			noNames(body)
			if !strings.Contains(string(body), "docs/y/taken is taken") {
				t.Fatalf("folder move onto alice's path = %s", body)
			}
			expect(t, bob.do(http.MethodGet, "/v1/buckets/docs/files/x2/free", nil), http.StatusOK)
			expect(t, bob.do(http.MethodGet, "/v1/buckets/docs/files/x2/taken", nil), http.StatusOK)

			// Non-recursive: a folder of bob's 2 files.
			body = expect(t, bob.do(http.MethodDelete, "/v1/buckets/docs/files/shared", nil), http.StatusConflict)
			noNames(body)
			if !strings.Contains(string(body), "2 or more") {
				t.Fatalf("folder delete = %s, want bob's 2 files counted", body)
			}
			// A folder move takes bob's files along, not alice's.
			body = expect(t, bob.do(http.MethodPost, "/v1/buckets/docs/move", strings.NewReader(`{"from":"shared","to":"bobs"}`)), http.StatusOK)
			if m := decode[struct{ Moved int }](t, body); m.Moved != 2 {
				t.Fatalf("moved = %s", body)
			}
			expect(t, bob.do(http.MethodGet, "/v1/buckets/docs/files/bobs/sub/bob-2", nil), http.StatusOK)
			expect(t, alice.do(http.MethodGet, "/v1/buckets/docs/files/shared/sub/alice-2", nil), http.StatusOK)
			// And a recursive delete deletes bob's alone.
			expect(t, bob.put("/v1/buckets/docs/files/shared/bob-3", []byte("3")), http.StatusCreated)
			body = expect(t, bob.do(http.MethodDelete, "/v1/buckets/docs/files/shared?recursive=true", nil), http.StatusOK)
			noNames(body)
			if d := decode[struct{ Deleted int }](t, body); d.Deleted != 1 {
				t.Fatalf("deleted = %s", body)
			}
			for _, p := range []string{"shared/alice-1", "shared/sub/alice-2", "taken"} {
				if got := expect(t, alice.do(http.MethodGet, "/v1/buckets/docs/files/"+p, nil), http.StatusOK); string(got) != p {
					t.Fatalf("%s = %q", p, got)
				}
			}
			expectError(t, bob.do(http.MethodDelete, "/v1/buckets/docs/files/shared?recursive=true", nil), http.StatusNotFound, "not_found")
		})
	}
}

type bucketStats struct {
	Buckets []struct {
		Name         string
		Files, Bytes int64
	}
}

func (s bucketStats) String() string {
	var out []string
	for _, b := range s.Buckets {
		out = append(out, fmt.Sprintf("%s:%d:%d", b.Name, b.Files, b.Bytes))
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// A user sees the buckets they hold files in, with their own counts; a
// bucket where they hold none answers as a missing one. Admins see all.
func TestBucketVisibility(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			_, alice, bob, admin := start(t, backend, nil)
			expect(t, alice.put("/v1/buckets/a-only/files/x", []byte("12345")), http.StatusCreated)
			expect(t, alice.put("/v1/buckets/both/files/x", []byte("123")), http.StatusCreated)
			expect(t, bob.put("/v1/buckets/both/files/y", []byte("1")), http.StatusCreated)
			expect(t, bob.put("/v1/buckets/b-only/files/y", []byte("12")), http.StatusCreated)
			expect(t, alice.put("/v1/buckets/emptied/files/z", []byte("z")), http.StatusCreated)
			expect(t, alice.do(http.MethodDelete, "/v1/buckets/emptied/files/z", nil), http.StatusNoContent)

			for _, c := range []struct {
				who  api
				want string
			}{
				{alice, "a-only:1:5,both:1:3"},
				{bob, "b-only:1:2,both:1:1"},
				{admin, "a-only:1:5,b-only:1:2,both:2:4,emptied:0:0"},
			} {
				if got := decode[bucketStats](t, expect(t, c.who.do(http.MethodGet, "/v1/buckets", nil), http.StatusOK)).String(); got != c.want {
					t.Fatalf("%s's buckets = %s, want %s", c.who.subject(t), got, c.want)
				}
			}
			// alice's bucket, to bob, is a missing one.
			foreign := strings.ReplaceAll(answer(t, bob.do(http.MethodGet, "/v1/buckets/a-only/files", nil)), "a-only", "BUCKET")
			missing := strings.ReplaceAll(answer(t, bob.do(http.MethodGet, "/v1/buckets/nosuch/files", nil)), "nosuch", "BUCKET")
			if foreign != missing || !strings.HasPrefix(foreign, "404") {
				t.Fatalf("bob lists alice's bucket:\n%s\n--- a missing one:\n%s", foreign, missing)
			}
			expect(t, admin.do(http.MethodGet, "/v1/buckets/a-only/files", nil), http.StatusOK)
			l := decode[struct{ Files []file }](t, expect(t, bob.do(http.MethodGet, "/v1/buckets/both/files", nil), http.StatusOK))
			if len(l.Files) != 1 || l.Files[0].Path != "y" {
				t.Fatalf("bob's listing of both = %+v", l.Files)
			}
		})
	}
}

// buckets lists the buckets that exist in the service's store.
func buckets(t *testing.T, s *filestoragetest.Service, backend string) []string {
	t.Helper()
	var out []string
	if backend == "disk" {
		for _, dir := range []string{s.Dir, filepath.Join(s.Dir, ".fs", "meta")} {
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.Name() != ".fs" {
					out = append(out, e.Name())
				}
			}
		}
		return out
	}
	client, err := mongoconn.Connect(mongoconn.Config{URI: testenv.MongoURI(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	names, err := client.Database(s.Database).ListCollectionNames(testenv.Context(t, 10*time.Second), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "filestorage_") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// An owner stores files in at most FILESTORAGE_MAX_BUCKETS_PER_OWNER
// buckets: a file (one-shot or resumable) into one more is a 403 with its
// own code, and creates nothing; admin tokens are not capped.
func TestBucketCap(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s, alice, bob, admin := start(t, backend, map[string]string{"FILESTORAGE_MAX_BUCKETS_PER_OWNER": "2"})
			expect(t, alice.put("/v1/buckets/one/files/x", []byte("x")), http.StatusCreated)
			expect(t, alice.put("/v1/buckets/two/files/x", []byte("x")), http.StatusCreated)
			before := buckets(t, s, backend)

			for _, resp := range []*http.Response{
				alice.put("/v1/buckets/three/files/x", []byte("x")),
				alice.do(http.MethodPut, "/v1/buckets/three/files/y", io.MultiReader(strings.NewReader("no length"))),
				alice.do(http.MethodPost, "/v1/buckets/three/uploads", nil, tusHeaders("Upload-Length", "1", "Upload-Metadata", meta("path", "t"))...),
				alice.do(http.MethodPost, "/v1/buckets/three/uploads", strings.NewReader("x"), tusHeaders("Upload-Length", "1",
					"Upload-Metadata", meta("path", "t"), "Content-Type", "application/offset+octet-stream")...),
			} {
				expectError(t, resp, http.StatusForbidden, "bucket_limit")
			}
			if after := buckets(t, s, backend); !slices.Equal(after, before) {
				t.Fatalf("a refused upload made storage: %v, before %v", after, before)
			}
			expectError(t, admin.do(http.MethodGet, "/v1/buckets/three/files", nil), http.StatusNotFound, "not_found")
			// Her two buckets take more files; deleting the files of one
			// does not free it (its storage stays).
			expect(t, alice.put("/v1/buckets/one/files/y", []byte("y")), http.StatusCreated)
			expect(t, alice.do(http.MethodDelete, "/v1/buckets/two/files/x", nil), http.StatusNoContent)
			expectError(t, alice.put("/v1/buckets/three/files/x", []byte("x")), http.StatusForbidden, "bucket_limit")
			expect(t, alice.put("/v1/buckets/two/files/x", []byte("x")), http.StatusCreated)

			// Admins are not capped, for themselves or for an owner; a
			// bucket alice holds files in is hers to write to.
			for _, b := range []string{"a1", "a2", "a3"} {
				expect(t, admin.put("/v1/buckets/"+b+"/files/x", []byte("x")), http.StatusCreated)
			}
			expect(t, admin.put("/v1/buckets/a3/files/for-alice", []byte("x"), "X-Owner", "alice"), http.StatusCreated)
			expect(t, admin.put("/v1/buckets/a4/files/for-alice", []byte("x"), "X-Owner", "alice"), http.StatusCreated)
			expect(t, alice.put("/v1/buckets/a4/files/mine", []byte("x")), http.StatusCreated)
			expectError(t, alice.put("/v1/buckets/a1/files/mine", []byte("x")), http.StatusForbidden, "bucket_limit")

			// Concurrent uploads into new buckets never pass the cap.
			var wg sync.WaitGroup
			codes := make([]int, 6)
			for i := range codes {
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v1/buckets/bob-%d/files/x", s.URL, i), bytes.NewReader([]byte("b")))
					req.Header.Set("Authorization", "Bearer "+bob.token)
					resp, err := http.DefaultClient.Do(req)
					if err == nil {
						codes[i] = resp.StatusCode
						resp.Body.Close()
					}
				})
			}
			wg.Wait()
			if created := slices.DeleteFunc(slices.Clone(codes), func(c int) bool { return c != http.StatusCreated }); len(created) != 2 ||
				slices.ContainsFunc(codes, func(c int) bool { return c != http.StatusCreated && c != http.StatusForbidden }) {
				t.Fatalf("6 concurrent uploads into new buckets with a cap of 2: %v", codes)
			}
		})
	}
}

// The GridFS service builds its id index at start, in the background.
func TestIDIndexBuiltAtStart(t *testing.T) {
	s, _, _, _ := start(t, "gridfs", nil)
	client, err := mongoconn.Connect(mongoconn.Config{URI: testenv.MongoURI(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	ids := client.Database(s.Database).Collection("filestorage_ids")
	testenv.Eventually(t, 10*time.Second, func() bool {
		n, err := ids.CountDocuments(testenv.Context(t, 5*time.Second), bson.D{{Key: "_id", Value: "/built"}})
		return err == nil && n == 1
	}, "the id index was not built at start")
}
