package web_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/filestorage/internal/store/disk"
	"github.com/audiomill/audiomill/filestorage/internal/store/gridfs"
	"github.com/audiomill/audiomill/filestorage/internal/web"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/mongoconn"
	"github.com/audiomill/audiomill/platform/testenv"
)

// hookBackend runs a hook when a move reaches the backend, after the API's
// own checks: what another request may do in between.
type hookBackend struct {
	store.Backend
	mu   sync.Mutex
	hook func(store.MoveRequest)
}

// beforeMove sets the hook (nil: none).
func (h *hookBackend) beforeMove(fn func(store.MoveRequest)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hook = fn
}

// Move implements store.Backend.
func (h *hookBackend) Move(ctx context.Context, req store.MoveRequest) (store.File, error) {
	h.mu.Lock()
	fn := h.hook
	h.mu.Unlock()
	if fn != nil {
		fn(req)
	}
	return h.Backend.Move(ctx, req)
}

// noBodyLimits is a web.BodyLimiter that sets none.
type noBodyLimits struct{}

func (noBodyLimits) SetBodyLimit(*mux.Route, int64) {}

// startWithHook serves the API on backend wrapped in a hookBackend. Its
// callers present "Bearer <subject> <scope>…" instead of a signed token.
func startWithHook(t *testing.T, backend string) (*hookBackend, api, api, api) {
	t.Helper()
	var b store.Backend
	switch backend {
	case "disk":
		d, err := disk.New(t.TempDir(), disk.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		b = d
	default:
		uri := testenv.MongoURI(t)
		client, err := mongoconn.Connect(mongoconn.Config{URI: uri, Timeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("fs_move_%d", time.Now().UnixNano()%1e12)
		t.Cleanup(func() {
			_ = client.Disconnect(context.Background())
			testenv.DropMongoDatabases(uri, name)
		})
		b = gridfs.New(client.Database(name), gridfs.Options{})
	}
	hb := &hookBackend{Backend: b}
	r := mux.NewRouter()
	web.Register(r, noBodyLimits{}, web.Options{
		Backend: hb,
		Logger:  slog.New(slog.DiscardHandler),
		Authenticate: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				f := strings.Fields(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
				if len(f) > 0 {
					r = r.WithContext(authn.WithPrincipal(r.Context(), authn.Principal{Subject: f[0], Scopes: f[1:]}))
				}
				h.ServeHTTP(w, r)
			})
		},
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return hb, api{t, srv.URL, "alice storage"}, api{t, srv.URL, "bob storage"}, api{t, srv.URL, "service:gateway storage:admin"}
}

// storeAs stores content at docs/p for owner straight into the backend, as
// another request would (replace: whose file it may replace).
func storeAs(t *testing.T, b store.Backend, p, owner string, replace store.ReplacePolicy, content string) file {
	t.Helper()
	f, err := b.Put(context.Background(), store.PutRequest{Bucket: "docs", Path: p, Owner: owner, Replace: replace},
		bytes.NewReader([]byte(content)))
	if err != nil {
		t.Fatalf("store %s as %s: %v", p, owner, err)
	}
	return file{ID: f.ID, Bucket: f.Bucket, Path: f.Path, Owner: f.Owner}
}

// A move checks the owners of the files it touches when it moves, not only
// when the API looked: a file stored at the target, or at the source, by
// someone else after that look is never taken over.
func TestNoTakeoverAtMove(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			hb, alice, bob, admin := startWithHook(t, backend)
			move := func(body string) *http.Response {
				return alice.do(http.MethodPost, "/v1/buckets/docs/move", strings.NewReader(body))
			}
			// wantNeutral checks the answer to alice: 409, the neutral
			// message, no owner named.
			wantNeutral := func(t *testing.T, resp *http.Response, path string) string {
				t.Helper()
				body := expect(t, resp, http.StatusConflict)
				if !strings.Contains(string(body), "docs/"+path+" is taken") || strings.Contains(string(body), "bob") {
					t.Fatalf("alice's move = %s, want the neutral conflict on docs/%s", body, path)
				}
				return string(body)
			}

			t.Run("Target", func(t *testing.T) {
				alices := decode[file](t, expect(t, alice.put("/v1/buckets/docs/files/src/a", []byte("alice's")), http.StatusCreated))
				var bobs file
				hb.beforeMove(func(store.MoveRequest) { bobs = storeAs(t, hb.Backend, "dst/a", "bob", store.ReplaceOwn, "bob's") })
				defer hb.beforeMove(nil)
				wantNeutral(t, move(`{"from":"src/a","to":"dst/a","overwrite":true}`), "dst/a")
				wantFile(t, bob, bobs, []byte("bob's"))
				wantFile(t, alice, alices, []byte("alice's"))
			})

			t.Run("Source", func(t *testing.T) {
				expect(t, alice.put("/v1/buckets/docs/files/src/b", []byte("alice's")), http.StatusCreated)
				var bobs file
				// An admin puts bob's file where alice's was.
				hb.beforeMove(func(store.MoveRequest) { bobs = storeAs(t, hb.Backend, "src/b", "bob", store.ReplaceAny, "bob's") })
				defer hb.beforeMove(nil)
				expectError(t, move(`{"from":"src/b","to":"dst/b","overwrite":true}`), http.StatusNotFound, "not_found")
				wantFile(t, bob, bobs, []byte("bob's"))
				expectError(t, admin.do(http.MethodGet, "/v1/buckets/docs/files/dst/b", nil), http.StatusNotFound, "not_found")
			})

			t.Run("Folder", func(t *testing.T) {
				expect(t, alice.put("/v1/buckets/docs/files/fold/1", []byte("fold/1")), http.StatusCreated)
				second := decode[file](t, expect(t, alice.put("/v1/buckets/docs/files/fold/2", []byte("fold/2")), http.StatusCreated))
				var bobs file
				hb.beforeMove(func(req store.MoveRequest) {
					if req.From == "fold/2" {
						bobs = storeAs(t, hb.Backend, "moved/2", "bob", store.ReplaceOwn, "bob's")
					}
				})
				defer hb.beforeMove(nil)
				// The files moved before the one that lost stay moved, and
				// the answer says so.
				body := wantNeutral(t, move(`{"from":"fold","to":"moved","overwrite":true}`), "moved/2")
				if !strings.Contains(body, "1 of the folder's 2 files were moved before it") {
					t.Fatalf("alice's folder move = %s, want what was moved counted", body)
				}
				wantFile(t, bob, bobs, []byte("bob's"))
				wantFile(t, alice, second, []byte("fold/2"))
				expect(t, alice.do(http.MethodGet, "/v1/buckets/docs/files/moved/1", nil), http.StatusOK)
			})
		})
	}
}
