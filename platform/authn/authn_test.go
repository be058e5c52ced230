package authn_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/consul/api"
	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/consul"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/testenv"
)

const (
	testIssuer   = "audiomill-auth"
	testAudience = "audiomill"
)

// signer makes tokens the way auth does, for tests.
type signer struct {
	kid  string
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func newSigner(tb testing.TB, kid string) signer {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return signer{kid: kid, priv: priv, pub: pub}
}

func newJTI() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func validClaims() authn.Claims {
	now := time.Now()
	return authn.Claims{
		Email: "ada@example.com",
		Roles: []string{"user"},
		Scope: "storage:read storage:write",
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   "user-1",
			Issuer:    testIssuer,
			Audience:  jwt.ClaimStrings{testAudience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(15 * time.Minute)),
			ID:        newJTI(),
		},
	}
}

func (s signer) sign(tb testing.TB, c authn.Claims) string {
	tb.Helper()
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	if s.kid != "" {
		t.Header["kid"] = s.kid
	}
	raw, err := t.SignedString(s.priv)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

func redisClient(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(tb)})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

type fixture struct {
	signer signer
	rdb    *redis.Client
	v      *authn.Verifier
	h      http.Handler
}

func newFixture(tb testing.TB, cacheSize int) *fixture {
	tb.Helper()
	s := newSigner(tb, "k1")
	rdb := redisClient(tb)
	v, err := authn.New(authn.Options{
		Issuer: testIssuer, Audience: testAudience,
		Keys:     authn.NewKeySet(map[string]ed25519.PublicKey{s.kid: s.pub}),
		DenyList: rdb, Logger: slog.New(slog.DiscardHandler), CacheSize: cacheSize,
	})
	if err != nil {
		tb.Fatal(err)
	}
	h := authn.Middleware(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := authn.FromContext(r.Context())
		if !ok {
			http.Error(w, "no principal", 500)
			return
		}
		httpapi.WriteJSON(w, 200, map[string]any{"sub": p.Subject, "email": p.Email, "scopes": p.Scopes})
	}))
	return &fixture{signer: s, rdb: rdb, v: v, h: h}
}

func (f *fixture) do(header string, set bool) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/x", nil)
	if set {
		req.Header.Set("Authorization", header)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestMiddlewareAcceptsValidToken(t *testing.T) {
	f := newFixture(t, 0)
	tok := f.signer.sign(t, validClaims())
	for i := range 2 { // second time from the cache
		rec := f.do("Bearer "+tok, true)
		if rec.Code != 200 {
			t.Fatalf("try %d: status %d: %s", i, rec.Code, rec.Body)
		}
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if body["sub"] != "user-1" || body["email"] != "ada@example.com" {
			t.Fatalf("principal = %v", body)
		}
	}
	if rec := f.do("bearer "+tok, true); rec.Code != 200 {
		t.Fatalf("lower-case scheme refused: %d", rec.Code)
	}
}

func TestMiddlewareRejects(t *testing.T) {
	f := newFixture(t, 0)
	s := f.signer
	mod := func(fn func(c *authn.Claims)) string {
		c := validClaims()
		fn(&c)
		return s.sign(t, c)
	}
	valid := s.sign(t, validClaims())
	parts := strings.Split(valid, ".")
	header := func(h string) string { return b64(h) + "." + parts[1] + "." + parts[2] }

	// alg none: the jwt package refuses to make one without a magic constant.
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, validClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	// Algorithm confusion: HS256 with the public key bytes as the HMAC secret.
	hsTok := jwt.NewWithClaims(jwt.SigningMethodHS256, validClaims())
	hsTok.Header["kid"] = s.kid
	hs256, err := hsTok.SignedString([]byte(s.pub))
	if err != nil {
		t.Fatal(err)
	}
	pemPub, _ := x509.MarshalPKIXPublicKey(s.pub)
	hsPEMTok := jwt.NewWithClaims(jwt.SigningMethodHS256, validClaims())
	hsPEMTok.Header["kid"] = s.kid
	hs256PEM, _ := hsPEMTok.SignedString(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pemPub}))

	other := newSigner(t, "k1") // same kid, another key: forged signature
	noKid := signer{priv: s.priv, pub: s.pub}

	revokedClaims := validClaims()
	revoked := s.sign(t, revokedClaims)
	ctx := testenv.Context(t, 10*time.Second)
	if err := f.rdb.Set(ctx, authn.DenyKey(revokedClaims.ID), "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.rdb.Del(context.Background(), authn.DenyKey(revokedClaims.ID)) })

	tests := []struct {
		name   string
		header string
		unset  bool
	}{
		{"NoHeader", "", true},
		{"Empty", "", false},
		{"BearerAlone", "Bearer", false},
		{"BearerSpace", "Bearer ", false},
		{"BearerDots", "Bearer .....", false},
		{"Basic", "Basic dXNlcjpwYXNz", false},
		{"NoScheme", valid, false},
		{"TwoWords", "Bearer " + valid + " extra", false},
		{"111", "Bearer 111", false},
		{"ab", "Bearer a.b", false},
		{"abc", "Bearer a.b.c", false},
		{"111.111.111", "Bearer 111.111.111", false},
		{"FourParts", "Bearer " + valid + ".x", false},
		{"BadBase64Header", "Bearer !!!." + parts[1] + "." + parts[2], false},
		{"BadBase64Payload", "Bearer " + parts[0] + ".***." + parts[2], false},
		{"BadBase64Signature", "Bearer " + parts[0] + "." + parts[1] + ".%%%", false},
		{"PaddedBase64", "Bearer " + parts[0] + "==." + parts[1] + "." + parts[2], false},
		{"HeaderNotJSON", "Bearer " + header("not json"), false},
		{"HeaderArray", "Bearer " + header("[]"), false},
		{"HeaderKidNumber", "Bearer " + header(`{"alg":"EdDSA","kid":7}`), false},
		{"HugeHeader", "Bearer " + header(`{"alg":"EdDSA","kid":"`+strings.Repeat("k", 64<<10)+`"}`), false},
		{"HugeToken", "Bearer " + strings.Repeat("a", 1<<20), false},
		{"AlgNone", "Bearer " + noneTok, false},
		{"AlgNoneWithKid", "Bearer " + header(`{"alg":"none","kid":"k1"}`), false},
		{"HS256PublicKeyRaw", "Bearer " + hs256, false},
		{"HS256PublicKeyPEM", "Bearer " + hs256PEM, false},
		{"ForgedSignature", "Bearer " + other.sign(t, validClaims()), false},
		{"TruncatedSignature", "Bearer " + valid[:len(valid)-4], false},
		{"NoKid", "Bearer " + noKid.sign(t, validClaims()), false},
		{"UnknownKid", "Bearer " + newSigner(t, "k-unknown").sign(t, validClaims()), false},
		{"Expired", "Bearer " + mod(func(c *authn.Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute)) }), false},
		{"NoExp", "Bearer " + mod(func(c *authn.Claims) { c.ExpiresAt = nil }), false},
		{"NotYetValid", "Bearer " + mod(func(c *authn.Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) }), false},
		{"IssuedInFuture", "Bearer " + mod(func(c *authn.Claims) { c.IssuedAt = jwt.NewNumericDate(time.Now().Add(time.Hour)) }), false},
		{"WrongIssuer", "Bearer " + mod(func(c *authn.Claims) { c.Issuer = "evil" }), false},
		{"NoIssuer", "Bearer " + mod(func(c *authn.Claims) { c.Issuer = "" }), false},
		{"WrongAudience", "Bearer " + mod(func(c *authn.Claims) { c.Audience = jwt.ClaimStrings{"other"} }), false},
		{"NoAudience", "Bearer " + mod(func(c *authn.Claims) { c.Audience = nil }), false},
		{"NoSubject", "Bearer " + mod(func(c *authn.Claims) { c.Subject = "" }), false},
		{"NoJTI", "Bearer " + mod(func(c *authn.Claims) { c.ID = "" }), false},
		{"RevokedJTI", "Bearer " + revoked, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.do(tt.header, !tt.unset)
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401: %s", rec.Code, rec.Body)
			}
			var body httpapi.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body is not JSON: %q", rec.Body)
			}
			if body.Error.Code != errs.Unauthorized {
				t.Fatalf("code = %q", body.Error.Code)
			}
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("no WWW-Authenticate challenge")
			}
			if len(tt.header) > 20 && strings.Contains(rec.Body.String(), tt.header[7:20]) {
				t.Fatal("the token is echoed in the error")
			}
		})
	}
}

func TestRevocationAfterCaching(t *testing.T) {
	f := newFixture(t, 0)
	c := validClaims()
	tok := f.signer.sign(t, c)
	if rec := f.do("Bearer "+tok, true); rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	ctx := testenv.Context(t, 10*time.Second)
	if err := f.rdb.Set(ctx, authn.DenyKey(c.ID), "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.rdb.Del(context.Background(), authn.DenyKey(c.ID)) })
	if rec := f.do("Bearer "+tok, true); rec.Code != 401 {
		t.Fatalf("revoked cached token answered %d", rec.Code)
	}
}

// TestSessionRevocation: a denied session id refuses every token of the
// session (each its own jti, cached or not), and no token of another.
func TestSessionRevocation(t *testing.T) {
	f := newFixture(t, 0)
	sid := fmt.Sprintf("sess-%d", time.Now().UnixNano())
	var same []string
	for i := range 2 {
		c := validClaims()
		c.ID = fmt.Sprintf("%s-jti-%d", sid, i)
		c.SessionID = sid
		same = append(same, f.signer.sign(t, c))
	}
	other := validClaims()
	other.ID, other.SessionID = sid+"-other", sid+"-other"
	otherTok := f.signer.sign(t, other)
	for _, tok := range append(same, otherTok) {
		if rec := f.do("Bearer "+tok, true); rec.Code != 200 {
			t.Fatalf("before revocation: %d", rec.Code)
		}
	}
	ctx := testenv.Context(t, 10*time.Second)
	if err := f.rdb.Set(ctx, authn.SessionDenyKey(sid), "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.rdb.Del(context.Background(), authn.SessionDenyKey(sid)) })
	for i, tok := range same {
		if rec := f.do("Bearer "+tok, true); rec.Code != 401 {
			t.Fatalf("token %d of the revoked session answered %d", i, rec.Code)
		}
	}
	if rec := f.do("Bearer "+otherTok, true); rec.Code != 200 {
		t.Fatalf("token of another session answered %d", rec.Code)
	}
}

func TestDenyListDownIsUnavailable(t *testing.T) {
	s := newSigner(t, "k1")
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = dead.Close() })
	v, err := authn.New(authn.Options{Issuer: testIssuer, Audience: testAudience,
		Keys: authn.StaticKey{KID: "k1", Key: s.pub}, DenyList: dead})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), s.sign(t, validClaims()))
	if errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("err = %v, want unavailable (fail closed)", err)
	}
}

func TestRequireScope(t *testing.T) {
	f := newFixture(t, 0)
	ok := authn.Middleware(f.v)(authn.RequireScope(f.v, "storage:write")(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(204)
	})))
	no := authn.Middleware(f.v)(authn.RequireScope(f.v, "storage:admin")(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(204)
	})))
	tok := f.signer.sign(t, validClaims())
	for _, tt := range []struct {
		name string
		h    http.Handler
		want int
	}{{"HasScope", ok, 204}, {"ErrLacksScope", no, 403}} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			rec := httptest.NewRecorder()
			tt.h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d", rec.Code, tt.want)
			}
		})
	}
}

func TestPrincipal(t *testing.T) {
	svc := authn.Principal{Subject: authn.ServiceSubjectPrefix + "gateway", Scopes: []string{"storage:admin"}, Roles: []string{"service"}}
	if !svc.IsService() || svc.ServiceName() != "gateway" || !svc.HasScope("storage:admin") || svc.HasScope("storage") || !svc.HasRole("service") {
		t.Fatalf("service principal: %+v", svc)
	}
	user := authn.Principal{Subject: "0123abcd"}
	if user.IsService() || user.ServiceName() != "" {
		t.Fatal("user principal is a service")
	}
}

func TestParsePublicKey(t *testing.T) {
	s := newSigner(t, "")
	der, _ := x509.MarshalPKIXPublicKey(s.pub)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	for name, in := range map[string]string{
		"PEM":          pemKey,
		"RawStd":       base64.StdEncoding.EncodeToString(s.pub),
		"RawURL":       base64.RawURLEncoding.EncodeToString(s.pub),
		"DERBase64":    base64.StdEncoding.EncodeToString(der),
		"PEMWithSpace": "\n  " + pemKey + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			k, err := authn.ParsePublicKey(in)
			if err != nil || !k.Equal(s.pub) {
				t.Fatalf("got %v, %v", k, err)
			}
		})
	}
	for name, in := range map[string]string{
		"ErrEmpty":      "",
		"ErrGarbage":    "not a key!",
		"ErrShort":      base64.StdEncoding.EncodeToString([]byte("short")),
		"ErrPEMPrivate": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"ErrBadPEM":     "-----BEGIN PUBLIC KEY-----\nxx",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := authn.ParsePublicKey(in); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// jwksServer serves a JWKS whose keys the test can change, counting fetches.
type jwksServer struct {
	keys    atomic.Pointer[[]authn.NamedKey]
	fetches atomic.Int64
	down    atomic.Bool // answers 503, as auth not started yet
	srv     *httptest.Server
}

func newJWKSServer(tb testing.TB, keys ...authn.NamedKey) *jwksServer {
	tb.Helper()
	js := &jwksServer{}
	js.keys.Store(&keys)
	js.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != authn.JWKSPath {
			http.NotFound(w, r)
			return
		}
		js.fetches.Add(1)
		if js.down.Load() {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		b, err := authn.MarshalJWKS(*js.keys.Load())
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	tb.Cleanup(js.srv.Close)
	return js
}

func TestJWKSFromURLRefetchesOnUnknownKid(t *testing.T) {
	k1, k2 := newSigner(t, "k1"), newSigner(t, "k2")
	js := newJWKSServer(t, authn.NamedKey{KID: k1.kid, Key: k1.pub})
	ctx := testenv.Context(t, 30*time.Second)
	src, err := authn.JWKSFromURL(ctx, js.srv.URL+authn.JWKSPath, authn.JWKSOptions{UnknownKIDInterval: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	v, err := authn.New(authn.Options{Issuer: testIssuer, Audience: testAudience, Keys: src})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, k1.sign(t, validClaims())); err != nil {
		t.Fatalf("k1: %v", err)
	}
	// Rotation: auth now publishes k2 (current) and k1 (previous).
	js.keys.Store(&[]authn.NamedKey{{KID: k2.kid, Key: k2.pub}, {KID: k1.kid, Key: k1.pub}})
	before := js.fetches.Load()
	if _, err := v.Verify(ctx, k2.sign(t, validClaims())); err != nil {
		t.Fatalf("k2 after rotation: %v", err)
	}
	if js.fetches.Load() != before+1 {
		t.Fatalf("fetches %d → %d, want one refetch", before, js.fetches.Load())
	}
	if _, err := v.Verify(ctx, k1.sign(t, validClaims())); err != nil {
		t.Fatalf("k1 after rotation: %v", err)
	}
	// Garbage kids do not hammer auth: at most one refetch per interval.
	before = js.fetches.Load()
	for i := range 20 {
		if _, err := v.Verify(ctx, newSigner(t, fmt.Sprint("junk", i)).sign(t, validClaims())); errs.CodeOf(err) != errs.Unauthorized {
			t.Fatalf("junk kid: %v", err)
		}
	}
	if n := js.fetches.Load() - before; n > 2 {
		t.Fatalf("%d refetches for 20 unknown kids", n)
	}
}

func TestJWKSFromConsul(t *testing.T) {
	k1 := newSigner(t, "k1")
	js := newJWKSServer(t, authn.NamedKey{KID: k1.kid, Key: k1.pub})
	client, err := consul.NewClient(testenv.ConsulAddr(t), testenv.ConsulToken(t))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("authn-test-%d", time.Now().UnixNano())
	port := js.srv.Listener.Addr().(*net.TCPAddr).Port
	if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: name, Name: name, Address: "127.0.0.1", Port: port}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Agent().ServiceDeregister(name) })
	resolver := consul.NewResolver(client, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { _ = resolver.Close() })
	ctx := testenv.Context(t, 30*time.Second)
	src, err := authn.JWKSFromConsul(ctx, resolver, name, authn.JWKSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k, err := src.PublicKey(ctx, "k1")
	if err != nil || !k.Equal(k1.pub) {
		t.Fatalf("key through consul: %v %v", k, err)
	}
	if js.fetches.Load() == 0 {
		t.Fatal("JWKS never fetched")
	}
}

func TestJWKSUnreachableAtStart(t *testing.T) {
	ctx := testenv.Context(t, 30*time.Second)
	src, err := authn.JWKSFromURL(ctx, "http://127.0.0.1:1"+authn.JWKSPath, authn.JWKSOptions{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("an unreachable auth must not stop a service from starting: %v", err)
	}
	v, _ := authn.New(authn.Options{Issuer: testIssuer, Audience: testAudience, Keys: src})
	if _, err := v.Verify(ctx, newSigner(t, "k1").sign(t, validClaims())); errs.CodeOf(err) != errs.Unauthorized {
		t.Fatalf("err = %v", err)
	}
}

// A service that started before auth has no keys; the first burst of
// requests with auth's kid must all pass, not only the one that got to
// refetch (seen with 50 concurrent uploads right after `make up`).
func TestJWKSFirstBurstAfterAuthStarts(t *testing.T) {
	k1 := newSigner(t, "k1")
	js := newJWKSServer(t, authn.NamedKey{KID: k1.kid, Key: k1.pub})
	js.down.Store(true)
	ctx := testenv.Context(t, 30*time.Second)
	src, err := authn.JWKSFromURL(ctx, js.srv.URL+authn.JWKSPath, authn.JWKSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	js.down.Store(false) // auth is up now
	v, err := authn.New(authn.Options{Issuer: testIssuer, Audience: testAudience, Keys: src})
	if err != nil {
		t.Fatal(err)
	}
	const burst = 50
	failed := make(chan error, burst)
	var wg sync.WaitGroup
	for range burst {
		wg.Go(func() {
			if _, err := v.Verify(ctx, k1.sign(t, validClaims())); err != nil {
				failed <- err
			}
		})
	}
	wg.Wait()
	close(failed)
	if n := len(failed); n > 0 {
		t.Fatalf("%d of %d verifications failed, first: %v", n, burst, <-failed)
	}
	if n := js.fetches.Load(); n > 3 {
		t.Fatalf("%d fetches for one burst; want the first and one refetch", n)
	}
}

func TestNewRequiresOptions(t *testing.T) {
	keys := authn.StaticKey{}
	for name, o := range map[string]authn.Options{
		"ErrNoIssuer":   {Audience: "a", Keys: keys},
		"ErrNoAudience": {Issuer: "i", Keys: keys},
		"ErrNoKeys":     {Issuer: "i", Audience: "a"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := authn.New(o); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestMarshalJWKSRoundTrip(t *testing.T) {
	s := newSigner(t, "kx")
	b, err := authn.MarshalJWKS([]authn.NamedKey{{KID: s.kid, Key: s.pub}})
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) != 1 || set.Keys[0]["crv"] != "Ed25519" || set.Keys[0]["alg"] != "EdDSA" {
		t.Fatalf("jwks = %s", b)
	}
	_, _ = io.Discard.Write(b)
}

// TestDenyListConcurrent checks that lookups coalesced into shared MGETs
// each get their own answer: the first round checks signatures, so lookups
// trickle in; the second comes from the token cache, so they arrive at once
// and fill batches past batch.DefaultMaxBatch.
func TestDenyListConcurrent(t *testing.T) {
	f := newFixture(t, 0)
	ctx := testenv.Context(t, 30*time.Second)
	const n = 600
	toks := make([]string, n)
	for i := range toks {
		c := validClaims()
		toks[i] = f.signer.sign(t, c)
		if i%3 == 0 {
			if err := f.rdb.Set(ctx, authn.DenyKey(c.ID), "1", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.rdb.Del(context.Background(), authn.DenyKey(c.ID)) })
		}
	}
	for round := range 2 {
		errc := make(chan error, n)
		for i, tok := range toks {
			go func() {
				_, err := f.v.Verify(ctx, tok)
				switch {
				case i%3 == 0 && errs.CodeOf(err) != errs.Unauthorized:
					errc <- fmt.Errorf("round %d: token %d is revoked but got %v", round, i, err)
				case i%3 != 0 && err != nil:
					errc <- fmt.Errorf("round %d: token %d: %v", round, i, err)
				default:
					errc <- nil
				}
			}()
		}
		for range n {
			if err := <-errc; err != nil {
				t.Error(err)
			}
		}
	}
}

func TestReadConfig(t *testing.T) {
	s := newSigner(t, "")
	env := map[string]string{"AUTH_PUBLIC_KEY": base64.StdEncoding.EncodeToString(s.pub), "AUTH_PUBLIC_KEY_ID": "k9", "AUTH_ISSUER": "iss-x"}
	r := config.NewReader(func(k string) string { return env[k] })
	cfg := authn.ReadConfig(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer != "iss-x" || cfg.Audience != authn.DefaultAudience || cfg.Service != "auth" || !cfg.PublicKey.Equal(s.pub) {
		t.Fatalf("cfg = %+v", cfg)
	}
	keys, err := cfg.Keys(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.PublicKey(context.Background(), "k9"); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.PublicKey(context.Background(), "other"); err == nil {
		t.Fatal("static key accepted another kid")
	}
	for name, bad := range map[string]map[string]string{
		"ErrPublicKey": {"AUTH_PUBLIC_KEY": "nope"},
		"ErrJWKSURL":   {"AUTH_JWKS_URL": "ftp://x/jwks"},
	} {
		t.Run(name, func(t *testing.T) {
			r := config.NewReader(func(k string) string { return bad[k] })
			authn.ReadConfig(r)
			if r.Err() == nil {
				t.Fatal("accepted")
			}
		})
	}
}
