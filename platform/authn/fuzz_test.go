package authn_test

import (
	"crypto/ed25519"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/audiomill/audiomill/platform/authn"
)

// FuzzVerify feeds arbitrary Authorization headers through the middleware:
// the answer is 200 or 401, never a panic or another status.
//
//	go test -fuzz FuzzVerify -fuzztime 30s ./authn
func FuzzVerify(f *testing.F) {
	s := newSigner(f, "k1")
	valid := s.sign(f, validClaims())
	parts := strings.Split(valid, ".")
	for _, seed := range []string{
		"Bearer " + valid, "Bearer 111", "Bearer a.b", "Bearer a.b.c", "Bearer 111.111.111", "Bearer", "Bearer .....",
		"Bearer " + parts[0] + "." + parts[1] + ".", "Bearer " + b64(`{"alg":"none"}`) + "." + parts[1] + ".",
		"Bearer " + b64(`{"alg":"HS256","kid":"k1"}`) + "." + parts[1] + "." + parts[2],
		"Bearer " + b64(`{"alg":"EdDSA","kid":{"a":1}}`) + "." + parts[1] + "." + parts[2],
		"Bearer " + parts[0] + "." + b64(`{"exp":"soon","aud":7}`) + "." + parts[2],
		"bearer\t" + valid, "",
	} {
		f.Add(seed)
	}
	v, err := authn.New(authn.Options{Issuer: testIssuer, Audience: testAudience,
		Keys: authn.NewKeySet(map[string]ed25519.PublicKey{s.kid: s.pub}), Logger: slog.New(slog.DiscardHandler), CacheSize: -1})
	if err != nil {
		f.Fatal(err)
	}
	h := authn.Middleware(v)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) }))
	f.Fuzz(func(t *testing.T, header string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header["Authorization"] = []string{header}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			if tok, _ := authn.BearerToken(header); tok != valid {
				t.Fatalf("accepted %q", header)
			}
		case 401:
		default:
			t.Fatalf("status %d for %q", rec.Code, header)
		}
	})
}
