package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/audiomill/audiomill/filestorage/internal/filestoragetest"
	"github.com/audiomill/audiomill/filestorage/internal/store/storetest"
	"github.com/audiomill/audiomill/platform/testenv"
)

// wantFile checks, as bob, that bucket/path is still the file f with content.
func wantFile(t *testing.T, bob api, f file, content []byte) {
	t.Helper()
	resp := bob.do(http.MethodGet, "/v1/buckets/"+f.Bucket+"/files/"+f.Path, nil)
	got := expect(t, resp, http.StatusOK)
	if !bytes.Equal(got, content) || resp.Header.Get("X-File-Id") != f.ID || resp.Header.Get("X-File-Owner") != f.Owner {
		t.Fatalf("%s/%s = %q, id %s, owner %s; want %q, id %s, owner %s untouched", f.Bucket, f.Path, got,
			resp.Header.Get("X-File-Id"), resp.Header.Get("X-File-Owner"), content, f.ID, f.Owner)
	}
}

// The owner of a path is checked when an upload commits, not only when it
// begins: alice opens an upload while the path is free, bob stores a file
// there, alice finishes; alice gets 409 and bob's file stays as it was.
func TestNoTakeoverAtCommit(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s, alice, bob, _ := start(t, backend, nil)

			t.Run("Resumable", func(t *testing.T) {
				data := storetest.Data(1000, 60)
				resp := alice.do(http.MethodPost, "/v1/buckets/race/uploads/", nil, tusHeaders("Upload-Length", "1000",
					"Upload-Metadata", meta("path", "tus/x"))...)
				expect(t, resp, http.StatusCreated)
				loc := resp.Header.Get("Location")
				bobs := decode[file](t, expect(t, bob.put("/v1/buckets/race/files/tus/x", []byte("bob's")), http.StatusCreated))
				resp = alice.do(http.MethodPatch, loc, bytes.NewReader(data), tusHeaders("Content-Type", "application/offset+octet-stream", "Upload-Offset", "0")...)
				expectError(t, resp, http.StatusConflict, "conflict")
				wantFile(t, bob, bobs, []byte("bob's"))
				expectError(t, alice.do(http.MethodHead, loc, nil, tusHeaders()...), http.StatusNotFound, "")
			})

			t.Run("Streaming", func(t *testing.T) {
				pr, pw := io.Pipe()
				status := make(chan int, 1)
				go func() {
					req, _ := http.NewRequest(http.MethodPut, alice.base+"/v1/buckets/race/files/slow", pr)
					req.Header.Set("Authorization", "Bearer "+alice.token)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						status <- 0
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status <- resp.StatusCode
				}()
				if _, err := pw.Write(storetest.Data(5000, 61)); err != nil {
					t.Fatal(err)
				}
				// alice's upload passed the owner check and streams...
				testenv.Eventually(t, 10*time.Second, func() bool { return writesInProgress(t, s, backend) > 0 }, "alice's upload did not start")
				// ...bob stores a file at the path meanwhile...
				bobs := decode[file](t, expect(t, bob.put("/v1/buckets/race/files/slow", []byte("bob's")), http.StatusCreated))
				// ...and alice's upload ends.
				if _, err := pw.Write(storetest.Data(5000, 62)); err != nil {
					t.Fatal(err)
				}
				_ = pw.Close()
				if got := <-status; got != http.StatusConflict {
					t.Fatalf("alice's upload = %d, want 409", got)
				}
				wantFile(t, bob, bobs, []byte("bob's"))
			})
		})
	}
}

// writesInProgress counts the one-shot writes streaming into the backend.
func writesInProgress(t *testing.T, s *filestoragetest.Service, backend string) int {
	t.Helper()
	return countState(t, s, backend, "tmp", func(ctx context.Context, db *mongo.Database) (int64, error) {
		return db.Collection("filestorage_uploads").CountDocuments(ctx, bson.D{{Key: "direct", Value: true}})
	})
}

// Uploads reserve their bytes of the quota before they store them: at
// once, never more than the quota is stored, however many run together.
func TestQuotaReservation(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			_, alice, bob, _ := start(t, backend, map[string]string{"FILESTORAGE_QUOTA": "10"})

			t.Run("Resumable", func(t *testing.T) {
				var mu sync.Mutex
				var locs []string
				var wg sync.WaitGroup
				for i := range 5 {
					wg.Go(func() {
						resp := alice.do(http.MethodPost, "/v1/buckets/q/uploads/", nil, tusHeaders("Upload-Length", "10",
							"Upload-Metadata", meta("path", fmt.Sprintf("tus/%d", i)))...)
						if resp.StatusCode == http.StatusCreated {
							mu.Lock()
							locs = append(locs, resp.Header.Get("Location"))
							mu.Unlock()
							return
						}
						expectError(t, resp, http.StatusRequestEntityTooLarge, "too_large")
					})
				}
				wg.Wait()
				stored := 0
				for _, loc := range locs {
					resp := alice.do(http.MethodPatch, loc, bytes.NewReader(storetest.Data(10, 63)), tusHeaders("Content-Type", "application/offset+octet-stream", "Upload-Offset", "0")...)
					if resp.StatusCode == http.StatusNoContent {
						stored++
					}
				}
				if stored != 1 || len(locs) != 1 {
					t.Fatalf("%d uploads of 10 bytes created and %d stored under a quota of 10; want 1", len(locs), stored)
				}
				if used := ownedBytes(t, alice, "q"); used != 10 {
					t.Fatalf("alice stores %d bytes, want 10", used)
				}
			})

			t.Run("OneShot", func(t *testing.T) {
				for _, declared := range []bool{true, false} {
					var wg sync.WaitGroup
					for i := range 6 {
						wg.Go(func() {
							var body io.Reader = bytes.NewReader(storetest.Data(4, uint64(i)))
							if !declared {
								body = io.MultiReader(body) // no Content-Length: streamed
							}
							resp := bob.do(http.MethodPut, fmt.Sprintf("/v1/buckets/q/files/%v/%d", declared, i), body)
							if resp.StatusCode != http.StatusCreated {
								expectError(t, resp, http.StatusRequestEntityTooLarge, "too_large")
							}
						})
					}
					wg.Wait()
					if used := ownedBytes(t, bob, "q"); used > 10 || used == 0 {
						t.Fatalf("declared=%v: bob stores %d bytes under a quota of 10", declared, used)
					}
					// Deleting frees the quota.
					expect(t, bob.do(http.MethodDelete, fmt.Sprintf("/v1/buckets/q/files/%v?recursive=true", declared), nil), http.StatusOK)
				}
				expect(t, bob.put("/v1/buckets/q/files/all", make([]byte, 10)), http.StatusCreated)
				expectError(t, bob.put("/v1/buckets/q/files/more", make([]byte, 1)), http.StatusRequestEntityTooLarge, "too_large")
			})
		})
	}
}

// An abandoned upload's reservation goes with it when the sweep deletes it.
func TestSweepReleasesReservation(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			_, alice, _, _ := start(t, backend, map[string]string{"FILESTORAGE_QUOTA": "10",
				"FILESTORAGE_UPLOAD_TTL": "1s", "FILESTORAGE_SWEEP_INTERVAL": "100ms"})
			create := func(path string) *http.Response {
				return alice.do(http.MethodPost, "/v1/buckets/up/uploads/", bytes.NewReader(make([]byte, 4)), tusHeaders("Upload-Length", "10",
					"Upload-Metadata", meta("path", path), "Content-Type", "application/offset+octet-stream")...)
			}
			resp := create("abandoned")
			expect(t, resp, http.StatusCreated)
			loc := resp.Header.Get("Location")
			expectError(t, create("second"), http.StatusRequestEntityTooLarge, "too_large")
			testenv.Eventually(t, 10*time.Second, func() bool {
				resp := create("second")
				_, _ = io.Copy(io.Discard, resp.Body)
				return resp.StatusCode == http.StatusCreated
			}, "the abandoned upload's reservation was never released")
			expectError(t, alice.do(http.MethodHead, loc, nil, tusHeaders()...), http.StatusNotFound, "")
		})
	}
}

// ownedBytes sums the sizes of the caller's files in bucket.
func ownedBytes(t *testing.T, a api, bucket string) int64 {
	t.Helper()
	l := decode[struct{ Files []file }](t, expect(t, a.do(http.MethodGet, "/v1/buckets/"+bucket+"/files?limit=1000", nil), http.StatusOK))
	var n int64
	for _, f := range l.Files {
		n += f.Size
	}
	return n
}
