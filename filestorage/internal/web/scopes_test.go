package web_test

import (
	"net/http"
	"strings"
	"testing"
)

// The services that act for users hold bucket scopes, not storage:admin:
// the gateway writes videos, reads MP3s and deletes both; the converter
// reads videos (and its own MP3s) and writes MP3s. Each does its job, and
// nothing more: not the other's writes, not another bucket, not another
// owner's file at a path it writes, not the bucket statistics.
func TestBucketScopes(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s, alice, bob, _ := start(t, backend, map[string]string{"FILESTORAGE_MAX_BUCKETS_PER_OWNER": "1"})
			gateway := api{t, s.URL, s.Token(t, "service:gateway",
				"storage:write:videos", "storage:read:audio", "storage:delete:videos", "storage:delete:audio")}
			converter := api{t, s.URL, s.Token(t, "service:converter",
				"storage:read:videos", "storage:read:audio", "storage:write:audio")}
			owner := alice.subject(t)
			private := decode[file](t, expect(t, bob.put("/v1/buckets/docs/files/private", []byte("bob's")), http.StatusCreated))

			// The job: the gateway stores alice's video, the converter reads
			// it and stores her MP3, the gateway serves and deletes both.
			video := decode[file](t, expect(t, gateway.put("/v1/buckets/videos/files/"+owner+"/v1", []byte("video"), "X-Owner", owner), http.StatusCreated))
			if video.Owner != owner {
				t.Fatalf("video owner = %q, want %q", video.Owner, owner)
			}
			if got := expect(t, converter.do(http.MethodGet, "/v1/files/"+video.ID, nil), http.StatusOK); string(got) != "video" {
				t.Fatalf("video = %q", got)
			}
			expect(t, converter.do(http.MethodHead, "/v1/files/"+video.ID, nil), http.StatusOK)
			// alice stores in one bucket at most; the services' buckets do not count.
			mp3 := decode[file](t, expect(t, converter.put("/v1/buckets/audio/files/"+owner+"/j1.mp3", []byte("mp3"), "X-Owner", owner), http.StatusCreated))
			expect(t, converter.do(http.MethodHead, "/v1/buckets/audio/files/"+owner+"/j1.mp3", nil), http.StatusOK)
			expect(t, converter.do(http.MethodGet, "/v1/buckets/videos/files?prefix="+owner+"/", nil), http.StatusOK)
			if got := expect(t, gateway.do(http.MethodGet, "/v1/files/"+mp3.ID, nil), http.StatusOK); string(got) != "mp3" {
				t.Fatalf("mp3 = %q", got)
			}
			expect(t, alice.put("/v1/buckets/notes/files/n", []byte("n")), http.StatusCreated)

			t.Run("ErrConverterWritesVideos", func(t *testing.T) {
				expectError(t, converter.put("/v1/buckets/videos/files/"+owner+"/forged", []byte("x"), "X-Owner", owner), http.StatusForbidden, "forbidden")
				expectError(t, converter.do(http.MethodPost, "/v1/buckets/videos/uploads", nil,
					tusHeaders("X-Owner", owner, "Upload-Length", "1", "Upload-Metadata", meta("path", owner+"/t"))...), http.StatusForbidden, "forbidden")
				expectError(t, converter.do(http.MethodDelete, "/v1/files/"+video.ID, nil), http.StatusForbidden, "forbidden")
			})
			t.Run("ErrGatewayWritesMP3s", func(t *testing.T) {
				expectError(t, gateway.put("/v1/buckets/audio/files/"+owner+"/forged.mp3", []byte("x"), "X-Owner", owner), http.StatusForbidden, "forbidden")
				expectError(t, gateway.do(http.MethodPost, "/v1/buckets/audio/move", strings.NewReader(`{"from":"`+owner+`/j1.mp3","to":"x.mp3"}`), "X-Owner", owner), http.StatusForbidden, "forbidden")
			})
			t.Run("ErrOtherBuckets", func(t *testing.T) {
				for _, who := range []api{gateway, converter} {
					expectError(t, who.do(http.MethodGet, "/v1/files/"+private.ID, nil), http.StatusNotFound, "not_found")
					expectError(t, who.do(http.MethodGet, "/v1/files/"+private.ID, nil, "X-Owner", "bob"), http.StatusNotFound, "not_found")
					expectError(t, who.do(http.MethodGet, "/v1/buckets/docs/files", nil), http.StatusForbidden, "forbidden")
					expectError(t, who.do(http.MethodGet, "/v1/buckets/docs/files/private", nil, "X-Owner", "bob"), http.StatusForbidden, "forbidden")
					expectError(t, who.put("/v1/buckets/docs/files/planted", []byte("x"), "X-Owner", owner), http.StatusForbidden, "forbidden")
					expectError(t, who.put("/v1/buckets/docs/files/planted", []byte("x")), http.StatusForbidden, "forbidden")
					expectError(t, who.do(http.MethodGet, "/v1/buckets", nil), http.StatusForbidden, "forbidden")
				}
				expectError(t, gateway.do(http.MethodGet, "/v1/buckets/videos/files", nil), http.StatusForbidden, "forbidden")
				expectError(t, gateway.do(http.MethodDelete, "/v1/files/"+private.ID, nil), http.StatusNotFound, "not_found")
				expectError(t, gateway.do(http.MethodDelete, "/v1/buckets/docs/files/private", nil), http.StatusForbidden, "forbidden")
				expect(t, bob.do(http.MethodGet, "/v1/files/"+private.ID, nil), http.StatusOK)
			})
			t.Run("ErrOtherOwnersPath", func(t *testing.T) {
				// A write scope stores for the owner it names, replacing only
				// that owner's files: alice's MP3 stays hers.
				expectError(t, converter.put("/v1/buckets/audio/files/"+owner+"/j1.mp3", []byte("x"), "X-Owner", "bob"), http.StatusConflict, "conflict")
				expectError(t, gateway.put("/v1/buckets/videos/files/"+owner+"/v2", []byte("x")), http.StatusForbidden, "forbidden")
			})

			expect(t, gateway.do(http.MethodDelete, "/v1/files/"+mp3.ID, nil), http.StatusNoContent)
			expect(t, gateway.do(http.MethodDelete, "/v1/buckets/videos/files/"+owner+"/v1", nil), http.StatusNoContent)
			expectError(t, converter.do(http.MethodGet, "/v1/files/"+video.ID, nil), http.StatusNotFound, "not_found")
		})
	}
}
