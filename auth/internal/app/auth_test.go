package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/audiomill/audiomill/auth/internal/app"
	"github.com/audiomill/audiomill/auth/internal/authtest"
	"github.com/audiomill/audiomill/auth/internal/web"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/service"
	"github.com/audiomill/audiomill/platform/testenv"
)

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

var emailSeq = time.Now().UnixNano()

func newEmail() string {
	emailSeq++
	return fmt.Sprintf("user%d@example.com", emailSeq)
}

const password = "correct horse battery"

func unverifiedClaims(tb testing.TB, raw string) (map[string]any, *authn.Claims) {
	tb.Helper()
	var c authn.Claims
	tok, _, err := jwt.NewParser().ParseUnverified(raw, &c)
	if err != nil {
		tb.Fatalf("token does not parse: %v", err)
	}
	return tok.Header, &c
}

func TestSignupAndLogin(t *testing.T) {
	s := authtest.Start(t, nil)
	email := newEmail()
	acct := s.Signup(t, "  "+strings.ToUpper(email[:1])+email[1:]+" ", password)
	if acct.Email != email || acct.ID == "" || len(acct.Roles) != 1 || acct.Roles[0] != "user" {
		t.Fatalf("account = %+v", acct)
	}

	t.Run("JSON", func(t *testing.T) {
		tok := s.Login(t, strings.ToUpper(email), password)
		if tok.TokenType != "Bearer" || tok.ExpiresIn != 900 || tok.RefreshToken == "" || tok.AccessToken == "" {
			t.Fatalf("token response = %+v", tok)
		}
		hdr, c := unverifiedClaims(t, tok.AccessToken)
		if hdr["alg"] != "EdDSA" || hdr["kid"] == nil || hdr["kid"] == "" {
			t.Fatalf("header = %v", hdr)
		}
		if c.Subject != acct.ID || c.Email != email || c.Issuer != authn.DefaultIssuer || len(c.Audience) != 1 ||
			c.Audience[0] != authn.DefaultAudience || c.ID == "" || c.SessionID == "" || c.IssuedAt == nil ||
			c.ExpiresAt.Sub(c.IssuedAt.Time) != 15*time.Minute {
			t.Fatalf("claims = %+v", c)
		}
	})
	t.Run("Basic", func(t *testing.T) {
		basic := base64.StdEncoding.EncodeToString([]byte(email + ":" + password))
		req, _ := http.NewRequest("POST", s.URL+"/v1/token", nil)
		req.Header.Set("Authorization", "Basic "+basic)
		resp, err := s.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("basic login: %d %v", resp.StatusCode, resp.Header)
		}
	})
	t.Run("Form", func(t *testing.T) {
		form := url.Values{"grant_type": {"password"}, "username": {email}, "password": {password}}
		resp, err := s.Client.PostForm(s.URL+"/v1/token", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("form login: %d", resp.StatusCode)
		}
	})
	t.Run("Validate", func(t *testing.T) {
		tok := s.Login(t, email, password)
		r := s.Do(t, "POST", "/v1/validate", nil, "Authorization", "Bearer "+tok.AccessToken)
		var v web.ValidateResponse
		r.JSON(t, &v)
		if r.Status != 200 || !v.Active || v.Subject != acct.ID || v.Email != email {
			t.Fatalf("validate: %d %s", r.Status, r.Body)
		}
		r = s.Do(t, "POST", "/v1/validate", map[string]string{"token": tok.AccessToken})
		if r.Status != 200 {
			t.Fatalf("validate with body: %d %s", r.Status, r.Body)
		}
	})
}

func TestSignupBadInput(t *testing.T) {
	s := authtest.Start(t, nil)
	taken := newEmail()
	s.Signup(t, taken, password)
	tests := []struct {
		name   string
		body   string
		status int
	}{
		// A taken address is answered as a free one (no enumeration): 202.
		{"TakenDifferentCase", `{"email":"` + strings.ToUpper(taken) + `","password":"` + password + `"}`, 202},
		{"TakenSame", `{"email":"` + taken + `","password":"` + password + `"}`, 202},
		{"ErrOperatorEmail", `{"email":{"$ne":""},"password":"` + password + `"}`, 400},
		{"ErrOperatorPassword", `{"email":"a@example.com","password":{"$gt":""}}`, 400},
		{"ErrEmailNumber", `{"email":5,"password":"` + password + `"}`, 400},
		{"ErrEmailArray", `{"email":["a@example.com"],"password":"` + password + `"}`, 400},
		{"ErrEmailNull", `{"email":null,"password":"` + password + `"}`, 400},
		{"ErrPasswordBool", `{"email":"a@example.com","password":true}`, 400},
		{"ErrInvalidEmail", `{"email":"not-an-email","password":"` + password + `"}`, 400},
		{"ErrEmailDisplayName", `{"email":"Ada <ada@example.com>","password":"` + password + `"}`, 400},
		{"ErrEmailNoDot", `{"email":"ada@localhost","password":"` + password + `"}`, 400},
		{"ErrEmailTooLong", `{"email":"` + strings.Repeat("a", 250) + `@example.com","password":"` + password + `"}`, 400},
		{"ErrShortPassword", `{"email":"` + newEmail() + `","password":"1234567"}`, 400},
		{"ErrLongPassword", `{"email":"` + newEmail() + `","password":"` + strings.Repeat("p", 73) + `"}`, 400},
		{"ErrUnknownField", `{"email":"` + newEmail() + `","password":"` + password + `","roles":["admin"]}`, 400},
		{"ErrMalformed", `{"email":`, 400},
		{"ErrEmpty", ``, 400},
		{"ErrArray", `[]`, 400},
		{"ErrOversized", `{"email":"` + strings.Repeat("a", 20000) + `@example.com","password":"x"}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.Do(t, "POST", "/v1/users", tt.body)
			if r.Status != tt.status {
				t.Fatalf("status = %d, want %d: %s", r.Status, tt.status, r.Body)
			}
			if r.Status != http.StatusAccepted && r.ErrorCode() == "" {
				t.Fatalf("no JSON error body: %q", r.Body)
			}
		})
	}
}

func TestTokenBadInput(t *testing.T) {
	s := authtest.Start(t, nil)
	email := newEmail()
	s.Signup(t, email, password)
	tests := []struct {
		name   string
		body   string
		ct     string
		status int
	}{
		{"ErrOperatorEmail", `{"email":{"$ne":""},"password":{"$ne":""}}`, "application/json", 400},
		{"ErrOperatorPassword", `{"email":"` + email + `","password":{"$ne":""}}`, "application/json", 400},
		{"ErrWrongTypes", `{"email":1,"password":2}`, "application/json", 400},
		{"ErrUnknownField", `{"email":"` + email + `","password":"x","admin":true}`, "application/json", 400},
		{"ErrMissingPassword", `{"email":"` + email + `"}`, "application/json", 400},
		{"ErrEmpty", ``, "application/json", 400},
		{"ErrOversized", `{"email":"` + strings.Repeat("a", 20000) + `","password":"x"}`, "application/json", 413},
		{"ErrOversizedForm", "email=" + strings.Repeat("a", 20000), "application/x-www-form-urlencoded", 413},
		{"ErrRepeatedFormParam", "email=" + email + "&email=x@example.com&password=x", "application/x-www-form-urlencoded", 400},
		{"ErrUnsupportedGrant", `{"grant_type":"implicit"}`, "application/json", 400},
		{"ErrTextPlain", `email=x`, "text/plain", 400},
		{"ErrWrongPassword", `{"email":"` + email + `","password":"wrong password"}`, "application/json", 401},
		{"ErrUnknownEmail", `{"email":"` + newEmail() + `","password":"` + password + `"}`, "application/json", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.Do(t, "POST", "/v1/token", tt.body, "Content-Type", tt.ct)
			if r.Status != tt.status {
				t.Fatalf("status = %d, want %d: %s", r.Status, tt.status, r.Body)
			}
			if r.Status != http.StatusAccepted && r.ErrorCode() == "" {
				t.Fatalf("no JSON error body: %q", r.Body)
			}
		})
	}
}

func TestWrongPasswordAndUnknownEmailLookAlike(t *testing.T) {
	s := authtest.Start(t, map[string]string{"LOGIN_MAX_FAILURES": "100"})
	email := newEmail()
	s.Signup(t, email, password)
	measure := func(body map[string]string) (time.Duration, testenv.Response) {
		var best time.Duration
		var last testenv.Response
		for i := range 3 {
			start := time.Now()
			last = s.Do(t, "POST", "/v1/token", body)
			if d := time.Since(start); i == 0 || d < best {
				best = d
			}
		}
		return best, last
	}
	wrongT, wrong := measure(map[string]string{"email": email, "password": "not the password"})
	unknownT, unknown := measure(map[string]string{"email": newEmail(), "password": "not the password"})
	if wrong.Status != 401 || unknown.Status != 401 || string(wrong.Body) != string(unknown.Body) {
		t.Fatalf("wrong password %d %s vs unknown email %d %s", wrong.Status, wrong.Body, unknown.Status, unknown.Body)
	}
	// Both run one bcrypt comparison at the same cost.
	if unknownT < wrongT/2 || unknownT > wrongT*2 {
		t.Fatalf("unknown email took %s, wrong password %s: timing tells them apart", unknownT, wrongT)
	}
	t.Logf("wrong password %s, unknown email %s", wrongT, unknownT)
}

func TestLoginRateLimit(t *testing.T) {
	// A back-off of a minute outlasts the sign-ups between the failures and
	// the attempt that must be refused (bcrypt on a loaded machine).
	s := authtest.Start(t, map[string]string{"LOGIN_BACKOFF_BASE": "1m"})
	// Failures at one account from many addresses (someone who knows the
	// address) used to lock its owner out for 15 minutes; the back-off is
	// per (email, address) now, so the owner logs in from elsewhere.
	t.Run("VictimNotLockedOut", func(t *testing.T) {
		email := newEmail()
		s.Signup(t, email, password)
		for i := range 12 {
			r := s.Do(t, "POST", "/v1/token", map[string]string{"email": email, "password": "wrong password"}, "X-Real-IP", fmt.Sprintf("192.0.2.%d", i+1))
			if r.Status != 401 {
				t.Fatalf("failure %d: %d %s", i+1, r.Status, r.Body)
			}
		}
		if r := s.Do(t, "POST", "/v1/token", map[string]string{"email": email, "password": password}, "X-Real-IP", "192.0.2.200"); r.Status != 200 {
			t.Fatalf("owner from another address: %d %s", r.Status, r.Body)
		}
	})
	t.Run("PerEmailAndIP", func(t *testing.T) {
		email := newEmail()
		s.Signup(t, email, password)
		for i := range 10 {
			r := s.Do(t, "POST", "/v1/token", map[string]string{"email": email, "password": "wrong password"}, "X-Real-IP", "192.0.2.77")
			if r.Status != 401 {
				t.Fatalf("failure %d: %d %s", i+1, r.Status, r.Body)
			}
		}
		r := s.Do(t, "POST", "/v1/token", map[string]string{"email": email, "password": password}, "X-Real-IP", "192.0.2.77")
		if r.Status != 429 || r.ErrorCode() != "rate_limited" {
			t.Fatalf("11th attempt: %d %s", r.Status, r.Body)
		}
		ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 15*60 {
			t.Fatalf("Retry-After = %q", r.Header.Get("Retry-After"))
		}
		if r := s.Do(t, "POST", "/v1/token", map[string]string{"email": email, "password": password}, "X-Real-IP", "192.0.2.78"); r.Status != 200 {
			t.Fatalf("same account from another address: %d %s", r.Status, r.Body)
		}
	})
	t.Run("PerIP", func(t *testing.T) {
		for i := range 10 {
			r := s.Do(t, "POST", "/v1/token", map[string]string{"email": newEmail(), "password": "wrong password"}, "X-Real-IP", "198.51.100.7")
			if r.Status != 401 {
				t.Fatalf("failure %d: %d", i+1, r.Status)
			}
		}
		email := newEmail()
		s.Signup(t, email, password)
		if r := s.Do(t, "POST", "/v1/token", map[string]string{"email": email, "password": password}, "X-Real-IP", "198.51.100.7"); r.Status != 429 {
			t.Fatalf("blocked IP: %d %s", r.Status, r.Body)
		}
		if r := s.Do(t, "POST", "/v1/token", map[string]string{"email": email, "password": password}, "X-Real-IP", "198.51.100.8"); r.Status != 200 {
			t.Fatalf("other IP: %d %s", r.Status, r.Body)
		}
	})
}

// TestLoginConcurrentGuesses: the limit is counted before the password
// is checked, so guesses sent at once cannot all slip past a check that
// none of them has counted yet: at most LOGIN_MAX_FAILURES are evaluated
// (401), the others are refused with 429 and Retry-After.
func TestLoginConcurrentGuesses(t *testing.T) {
	const allowed, guesses = 3, 24
	s := authtest.Start(t, map[string]string{"LOGIN_MAX_FAILURES": strconv.Itoa(allowed), "LOGIN_BACKOFF_BASE": "1m"})
	email := newEmail()
	s.Signup(t, email, password)
	statuses := make([]int, guesses)
	retryAfter := make([]string, guesses)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range guesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := s.Do(t, "POST", "/v1/token", map[string]string{"email": email, "password": fmt.Sprintf("guess number %d", i)}, "X-Real-IP", "203.0.113.9")
			statuses[i], retryAfter[i] = r.Status, r.Header.Get("Retry-After")
		}()
	}
	close(start)
	wg.Wait()
	counts := map[int]int{}
	for i, st := range statuses {
		counts[st]++
		if st == 429 && retryAfter[i] == "" {
			t.Errorf("429 without Retry-After")
		}
	}
	if counts[401] > allowed || counts[401]+counts[429] != guesses {
		t.Fatalf("statuses %v: want at most %d answered 401 and the rest 429", counts, allowed)
	}
}

func TestRefreshRotationAndReuse(t *testing.T) {
	s := authtest.Start(t, nil)
	email := newEmail()
	s.Signup(t, email, password)
	first := s.Login(t, email, password)

	r := s.Do(t, "POST", "/v1/token/refresh", map[string]string{"refresh_token": first.RefreshToken})
	if r.Status != 200 {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	var second web.TokenResponse
	r.JSON(t, &second)
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatalf("not rotated: %+v", second)
	}
	_, c1 := unverifiedClaims(t, first.AccessToken)
	_, c2 := unverifiedClaims(t, second.AccessToken)
	if c1.SessionID != c2.SessionID {
		t.Fatal("refresh left the family")
	}
	// The spent token again: reuse → 401 and the whole family is revoked.
	if r := s.Do(t, "POST", "/v1/token/refresh", map[string]string{"refresh_token": first.RefreshToken}); r.Status != 401 {
		t.Fatalf("reused token: %d %s", r.Status, r.Body)
	}
	if r := s.Do(t, "POST", "/v1/token/refresh", map[string]string{"refresh_token": second.RefreshToken}); r.Status != 401 {
		t.Fatalf("family not revoked after reuse: %d %s", r.Status, r.Body)
	}
	for name, body := range map[string]string{
		"ErrUnknown":  `{"refresh_token":"nope"}`,
		"ErrEmpty":    `{"refresh_token":""}`,
		"ErrOperator": `{"refresh_token":{"$ne":""}}`,
		"ErrHuge":     `{"refresh_token":"` + strings.Repeat("x", 1000) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if r := s.Do(t, "POST", "/v1/token/refresh", body); r.Status != 401 && r.Status != 400 {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	}
	// Refresh tokens are stored hashed, never as given.
	keys, _ := s.Redis.Keys(testenv.Context(t, 5*time.Second), s.Prefix+"*"+second.RefreshToken+"*").Result()
	if len(keys) != 0 {
		t.Fatalf("plain refresh token in Redis key names: %v", keys)
	}
}

func TestLogout(t *testing.T) {
	s := authtest.Start(t, nil)
	email := newEmail()
	s.Signup(t, email, password)
	tok := s.Login(t, email, password)
	_, c := unverifiedClaims(t, tok.AccessToken)
	t.Cleanup(func() { s.Redis.Del(context.Background(), authn.DenyKey(c.ID)) })

	if r := s.Do(t, "POST", "/v1/logout", nil, "Authorization", "Bearer "+tok.AccessToken); r.Status != 204 {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	ttl, err := s.Redis.TTL(testenv.Context(t, 5*time.Second), authn.DenyKey(c.ID)).Result()
	if err != nil || ttl <= 14*time.Minute || ttl > 16*time.Minute {
		t.Fatalf("deny key TTL = %s, %v; want the token's remaining lifetime", ttl, err)
	}
	if r := s.Do(t, "POST", "/v1/validate", nil, "Authorization", "Bearer "+tok.AccessToken); r.Status != 401 {
		t.Fatalf("validate after logout: %d", r.Status)
	}
	if r := s.Do(t, "POST", "/v1/token/refresh", map[string]string{"refresh_token": tok.RefreshToken}); r.Status != 401 {
		t.Fatalf("refresh after logout: %d", r.Status)
	}
	t.Run("ByRefreshToken", func(t *testing.T) {
		tok := s.Login(t, email, password)
		if r := s.Do(t, "POST", "/v1/logout", map[string]string{"refresh_token": tok.RefreshToken}); r.Status != 204 {
			t.Fatalf("logout: %d %s", r.Status, r.Body)
		}
		if r := s.Do(t, "POST", "/v1/token/refresh", map[string]string{"refresh_token": tok.RefreshToken}); r.Status != 401 {
			t.Fatalf("refresh after logout: %d", r.Status)
		}
	})
	t.Run("ErrNoCredentials", func(t *testing.T) {
		if r := s.Do(t, "POST", "/v1/logout", nil); r.Status != 401 {
			t.Fatalf("%d", r.Status)
		}
	})
}

// localVerifier verifies s's tokens as every other service does: the JWKS
// and the deny list in Redis, no call to auth per token.
func localVerifier(t *testing.T, s *authtest.Server) *authn.Verifier {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	keys, err := authn.JWKSFromURL(ctx, s.URL+authn.JWKSPath, authn.JWKSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := authn.New(authn.Options{Issuer: authn.DefaultIssuer, Audience: authn.DefaultAudience, Keys: keys, DenyList: s.Redis})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func refreshTokens(t *testing.T, s *authtest.Server, refresh string) web.TokenResponse {
	t.Helper()
	r := s.Do(t, "POST", "/v1/token/refresh", map[string]string{"refresh_token": refresh})
	if r.Status != 200 {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	var tok web.TokenResponse
	r.JSON(t, &tok)
	return tok
}

// cleanupDeny removes the deny-list keys (outside the test's prefix) of tokens.
func cleanupDeny(t *testing.T, s *authtest.Server, tokens ...string) {
	t.Cleanup(func() {
		for _, raw := range tokens {
			_, c := unverifiedClaims(t, raw)
			s.Redis.Del(context.Background(), authn.DenyKey(c.ID), authn.SessionDenyKey(c.SessionID))
		}
	})
}

// TestLogoutEndsTheSession: logout used to deny the presented token's jti
// only, so another access token of the same session (the one a refresh
// gave) stayed valid until it expired. Now every token of the session is
// refused, by a service verifying locally too.
func TestLogoutEndsTheSession(t *testing.T) {
	s := authtest.Start(t, nil)
	v := localVerifier(t, s)
	ctx := testenv.Context(t, 20*time.Second)
	email := newEmail()
	s.Signup(t, email, password)
	first := s.Login(t, email, password)
	second := refreshTokens(t, s, first.RefreshToken)
	other := s.Login(t, email, password) // another session: stays
	cleanupDeny(t, s, first.AccessToken, second.AccessToken, other.AccessToken)
	for _, tok := range []string{first.AccessToken, second.AccessToken, other.AccessToken} {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("before logout: %v", err)
		}
	}
	if r := s.Do(t, "POST", "/v1/logout", nil, "Authorization", "Bearer "+second.AccessToken); r.Status != 204 {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	for name, tok := range map[string]string{"first": first.AccessToken, "second": second.AccessToken} {
		if _, err := v.Verify(ctx, tok); errs.CodeOf(err) != errs.Unauthorized {
			t.Errorf("%s access token of the session after logout: %v; want refused", name, err)
		}
		if r := s.Do(t, "POST", "/v1/validate", nil, "Authorization", "Bearer "+tok); r.Status != 401 {
			t.Errorf("%s access token at /v1/validate after logout: %d", name, r.Status)
		}
	}
	if _, err := v.Verify(ctx, other.AccessToken); err != nil {
		t.Fatalf("another session's token after logout: %v", err)
	}
	if r := s.Do(t, "POST", "/v1/token/refresh", map[string]string{"refresh_token": second.RefreshToken}); r.Status != 401 {
		t.Fatalf("refresh after logout: %d", r.Status)
	}

	// Logging out with the refresh token alone ends its session too.
	t.Run("ByRefreshToken", func(t *testing.T) {
		tok := s.Login(t, email, password)
		cleanupDeny(t, s, tok.AccessToken)
		if r := s.Do(t, "POST", "/v1/logout", map[string]string{"refresh_token": tok.RefreshToken}); r.Status != 204 {
			t.Fatalf("logout: %d %s", r.Status, r.Body)
		}
		if _, err := v.Verify(ctx, tok.AccessToken); errs.CodeOf(err) != errs.Unauthorized {
			t.Fatalf("access token after logout by refresh token: %v", err)
		}
	})
}

// TestLogoutEverywhere: POST /v1/logout?all=true ends every session of the
// user (two logins, one refreshed), and no other user's.
func TestLogoutEverywhere(t *testing.T) {
	s := authtest.Start(t, nil)
	v := localVerifier(t, s)
	ctx := testenv.Context(t, 20*time.Second)
	email, bystander := newEmail(), newEmail()
	s.Signup(t, email, password)
	s.Signup(t, bystander, password)
	laptop := s.Login(t, email, password)
	phone := refreshTokens(t, s, s.Login(t, email, password).RefreshToken)
	theirs := s.Login(t, bystander, password)
	cleanupDeny(t, s, laptop.AccessToken, phone.AccessToken, theirs.AccessToken)

	if r := s.Do(t, "POST", "/v1/logout?all=maybe", nil, "Authorization", "Bearer "+laptop.AccessToken); r.Status != 400 {
		t.Fatalf("all=maybe: %d %s", r.Status, r.Body)
	}
	if _, err := v.Verify(ctx, laptop.AccessToken); err != nil {
		t.Fatalf("bad request changed something: %v", err)
	}
	if r := s.Do(t, "POST", "/v1/logout?all=true", nil, "Authorization", "Bearer "+laptop.AccessToken); r.Status != 204 {
		t.Fatalf("logout everywhere: %d %s", r.Status, r.Body)
	}
	for name, tok := range map[string]web.TokenResponse{"laptop": laptop, "phone": phone} {
		if _, err := v.Verify(ctx, tok.AccessToken); errs.CodeOf(err) != errs.Unauthorized {
			t.Errorf("%s access token after logging out everywhere: %v", name, err)
		}
		if r := s.Do(t, "POST", "/v1/token/refresh", map[string]string{"refresh_token": tok.RefreshToken}); r.Status != 401 {
			t.Errorf("%s refresh after logging out everywhere: %d", name, r.Status)
		}
	}
	if _, err := v.Verify(ctx, theirs.AccessToken); err != nil {
		t.Fatalf("another user's token: %v", err)
	}
	refreshTokens(t, s, theirs.RefreshToken)
}

// TestSessionMaxAge: a session cannot be kept alive by refreshing past
// SESSION_MAX_AGE; the answer says why.
func TestSessionMaxAge(t *testing.T) {
	s := authtest.Start(t, map[string]string{"SESSION_MAX_AGE": "2s"})
	email := newEmail()
	s.Signup(t, email, password)
	tok := s.Login(t, email, password)
	time.Sleep(time.Second)
	tok = refreshTokens(t, s, tok.RefreshToken)
	time.Sleep(1200 * time.Millisecond)
	r := s.Do(t, "POST", "/v1/token/refresh", map[string]string{"refresh_token": tok.RefreshToken})
	if r.Status != 401 || r.ErrorCode() != "unauthorized" || !strings.Contains(string(r.Body), "maximum age") {
		t.Fatalf("refresh past the max age: %d %s", r.Status, r.Body)
	}
}

func TestValidateRejects(t *testing.T) {
	s := authtest.Start(t, nil)
	for _, h := range []string{"Bearer 111", "Bearer a.b", "Bearer a.b.c", "Bearer 111.111.111", "Bearer", "Bearer .....",
		"Bearer " + strings.Repeat("x", 5000), "Basic Zm9vOmJhcg=="} {
		t.Run(h[:min(len(h), 20)], func(t *testing.T) {
			r := s.Do(t, "POST", "/v1/validate", nil, "Authorization", h)
			if r.Status != 401 || r.ErrorCode() != "unauthorized" {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	}
	if r := s.Do(t, "POST", "/v1/validate", `{"token":{"$ne":""}}`); r.Status != 400 {
		t.Fatalf("operator token: %d", r.Status)
	}
	if r := s.Do(t, "POST", "/v1/validate", nil); r.Status != 401 {
		t.Fatalf("nothing: %d", r.Status)
	}
}

func TestServiceAccounts(t *testing.T) {
	s := authtest.Start(t, nil)
	check := func(t *testing.T, r testenv.Response, wantScope string) {
		t.Helper()
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		var tok web.TokenResponse
		r.JSON(t, &tok)
		if tok.RefreshToken != "" || tok.Scope != wantScope {
			t.Fatalf("token response = %+v", tok)
		}
		_, c := unverifiedClaims(t, tok.AccessToken)
		if !strings.HasPrefix(c.Subject, authn.ServiceSubjectPrefix) || c.Scope != wantScope || c.Email != "" {
			t.Fatalf("claims = %+v", c)
		}
		v := s.Do(t, "POST", "/v1/validate", nil, "Authorization", "Bearer "+tok.AccessToken)
		if v.Status != 200 {
			t.Fatalf("validate service token: %d", v.Status)
		}
	}
	t.Run("JSON", func(t *testing.T) {
		check(t, s.Do(t, "POST", "/v1/token", map[string]string{"grant_type": "client_credentials", "client_id": "gateway", "client_secret": authtest.ClientSecret}), "storage:admin storage:read")
	})
	t.Run("Form", func(t *testing.T) {
		check(t, s.Do(t, "POST", "/v1/token", "grant_type=client_credentials&client_id=gateway&client_secret="+authtest.ClientSecret, "Content-Type", "application/x-www-form-urlencoded"), "storage:admin storage:read")
	})
	t.Run("Basic", func(t *testing.T) {
		basic := base64.StdEncoding.EncodeToString([]byte("converter:" + authtest.ConverterSecret))
		check(t, s.Do(t, "POST", "/v1/token", "grant_type=client_credentials", "Content-Type", "application/x-www-form-urlencoded", "Authorization", "Basic "+basic), "storage:read")
	})
	t.Run("NarrowerScope", func(t *testing.T) {
		check(t, s.Do(t, "POST", "/v1/token", map[string]string{"grant_type": "client_credentials", "client_id": "gateway", "client_secret": authtest.ClientSecret, "scope": "storage:read"}), "storage:read")
	})
	t.Run("ErrScopeNotGranted", func(t *testing.T) {
		r := s.Do(t, "POST", "/v1/token", map[string]string{"grant_type": "client_credentials", "client_id": "converter", "client_secret": authtest.ConverterSecret, "scope": "storage:admin"})
		if r.Status != 403 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	for name, body := range map[string]map[string]string{
		"ErrWrongSecret":    {"grant_type": "client_credentials", "client_id": "gateway", "client_secret": "wrong-secret-0123456789"},
		"ErrUnknownClient":  {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": authtest.ClientSecret},
		"ErrHashAsSecret":   {"grant_type": "client_credentials", "client_id": "converter", "client_secret": sha256hex(authtest.ConverterSecret)},
		"ErrMissingSecret":  {"grant_type": "client_credentials", "client_id": "gateway"},
		"ErrUserOnClient":   {"grant_type": "client_credentials", "email": "a@example.com", "password": password},
		"ErrClientOnUser":   {"client_id": "gateway", "client_secret": authtest.ClientSecret},
		"ErrPasswordGrant2": {"grant_type": "password", "client_id": "gateway", "client_secret": authtest.ClientSecret},
	} {
		t.Run(name, func(t *testing.T) {
			r := s.Do(t, "POST", "/v1/token", body)
			if r.Status != 401 && r.Status != 400 {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	}
}

type jwks struct {
	Keys []struct {
		KID string `json:"kid"`
		KTY string `json:"kty"`
		CRV string `json:"crv"`
		ALG string `json:"alg"`
		X   string `json:"x"`
		D   string `json:"d"`
	} `json:"keys"`
}

func jwksOf(tb testing.TB, s *authtest.Server) jwks {
	tb.Helper()
	r := s.Do(tb, "GET", authn.JWKSPath, nil)
	if r.Status != 200 {
		tb.Fatalf("jwks: %d %s", r.Status, r.Body)
	}
	var set jwks
	r.JSON(tb, &set)
	for _, k := range set.Keys {
		if k.D != "" || k.KTY != "OKP" || k.CRV != "Ed25519" || k.ALG != "EdDSA" {
			tb.Fatalf("jwks key %+v", k)
		}
	}
	return set
}

func TestKeyRotation(t *testing.T) {
	admin := newEmail()
	s := authtest.Start(t, map[string]string{"ADMIN_EMAIL": admin, "ADMIN_PASSWORD": "admin password 1"})
	before := jwksOf(t, s)
	if len(before.Keys) != 1 {
		t.Fatalf("fresh JWKS has %d keys", len(before.Keys))
	}
	user := newEmail()
	s.Signup(t, user, password)
	old := s.Login(t, user, password)

	ctx := testenv.Context(t, 30*time.Second)
	verifierKeys, err := authn.JWKSFromURL(ctx, s.URL+authn.JWKSPath, authn.JWKSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	remote, err := authn.New(authn.Options{Issuer: authn.DefaultIssuer, Audience: authn.DefaultAudience, Keys: verifierKeys, DenyList: s.Redis})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Verify(ctx, old.AccessToken); err != nil {
		t.Fatalf("service-side verify before rotation: %v", err)
	}

	t.Run("ErrNotAdmin", func(t *testing.T) {
		if r := s.Do(t, "POST", "/v1/keys/rotate", nil, "Authorization", "Bearer "+old.AccessToken); r.Status != 403 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if r := s.Do(t, "POST", "/v1/keys/rotate", nil); r.Status != 401 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	adminTok := s.Login(t, admin, "admin password 1")
	r := s.Do(t, "POST", "/v1/keys/rotate", nil, "Authorization", "Bearer "+adminTok.AccessToken)
	if r.Status != 200 {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	var rotated struct{ KID string }
	r.JSON(t, &rotated)
	after := jwksOf(t, s)
	if len(after.Keys) != 2 || after.Keys[0].KID != rotated.KID || after.Keys[1].KID != before.Keys[0].KID {
		t.Fatalf("JWKS after rotation = %+v, want new %s then old %s", after, rotated.KID, before.Keys[0].KID)
	}
	fresh := s.Login(t, user, password)
	if hdr, _ := unverifiedClaims(t, fresh.AccessToken); hdr["kid"] != rotated.KID {
		t.Fatalf("new token signed by %v, want %s", hdr["kid"], rotated.KID)
	}
	for name, tok := range map[string]string{"SignedByPrevious": old.AccessToken, "SignedByCurrent": fresh.AccessToken} {
		t.Run(name, func(t *testing.T) {
			if r := s.Do(t, "POST", "/v1/validate", nil, "Authorization", "Bearer "+tok); r.Status != 200 {
				t.Fatalf("auth validate: %d %s", r.Status, r.Body)
			}
			if _, err := remote.Verify(ctx, tok); err != nil {
				t.Fatalf("service-side verify: %v", err)
			}
		})
	}

	t.Run("Command", func(t *testing.T) {
		var out, errOut strings.Builder
		code := app.RotateKeys(ctx, func(k string) string { return s.Env[k] }, &out, &errOut)
		if code != 0 {
			t.Fatalf("rotate-keys exit %d: %s", code, errOut.String())
		}
		var plain, sealed int
		if err := s.DB.QueryRow(ctx, "select count(*) filter (where seed is not null), count(sealed_seed) from signing_keys").Scan(&plain, &sealed); err != nil || plain != 0 || sealed < 3 {
			t.Fatalf("%d plaintext and %d sealed seeds after rotate-keys (%v); want all sealed", plain, sealed, err)
		}
		testenv.Eventually(t, 10*time.Second, func() bool {
			set := jwksOf(t, s)
			return len(set.Keys) >= 3 && strings.Contains(out.String(), set.Keys[0].KID)
		}, "the running service did not publish the key made by rotate-keys (%s)", out.String())
		if r := s.Do(t, "POST", "/v1/validate", nil, "Authorization", "Bearer "+old.AccessToken); r.Status != 200 {
			t.Fatalf("token of two rotations ago, still within its lifetime: %d", r.Status)
		}
	})
}

// TestAdminBootstrapRefusesSquattedEmail: someone signs up with the
// address an operator later configures as ADMIN_EMAIL; auth must not make
// that stranger's account an admin. It says so in its log and runs on.
func TestAdminBootstrapRefusesSquattedEmail(t *testing.T) {
	first := authtest.Start(t, nil)
	admin := newEmail()
	squatter := first.Signup(t, admin, "the squatter's password")

	s := authtest.Start(t, map[string]string{"DATABASE_URL": first.DatabaseURL,
		"ADMIN_EMAIL": admin, "ADMIN_PASSWORD": "the operator's password"})
	tok := s.Login(t, admin, "the squatter's password")
	_, c := unverifiedClaims(t, tok.AccessToken)
	if c.Subject != squatter.ID || slices.Contains(c.Roles, "admin") {
		t.Fatalf("squatter's token: sub %s roles %v; want no admin", c.Subject, c.Roles)
	}
	if r := s.Do(t, "POST", "/v1/keys/rotate", nil, "Authorization", "Bearer "+tok.AccessToken); r.Status != 403 {
		t.Fatalf("squatter rotates keys: %d %s", r.Status, r.Body)
	}
	if !strings.Contains(s.Logs.String(), "admin bootstrap refused") {
		t.Fatalf("no log line saying the bootstrap was refused:\n%s", s.Logs.String())
	}
	if r := s.Do(t, "POST", "/v1/token", map[string]string{"email": admin, "password": "the operator's password"}); r.Status != 401 {
		t.Fatalf("operator's password on the squatter's account: %d; its password must be left alone", r.Status)
	}

	// Whoever registered the address with ADMIN_PASSWORD itself is the operator.
	t.Run("PromotedWithAdminPassword", func(t *testing.T) {
		admin := newEmail()
		first.Signup(t, admin, "the operator's password")
		s := authtest.Start(t, map[string]string{"DATABASE_URL": first.DatabaseURL,
			"ADMIN_EMAIL": admin, "ADMIN_PASSWORD": "the operator's password"})
		_, c := unverifiedClaims(t, s.Login(t, admin, "the operator's password").AccessToken)
		if !slices.Contains(c.Roles, "admin") {
			t.Fatalf("roles %v; want admin", c.Roles)
		}
	})
}

func TestReplicasShareKeysAndAdminBootstrapIsIdempotent(t *testing.T) {
	admin := newEmail()
	env := map[string]string{"ADMIN_EMAIL": admin, "ADMIN_PASSWORD": "admin password 1"}
	a := authtest.Start(t, env)
	env["DATABASE_URL"] = a.DatabaseURL
	env["REDIS_KEY_PREFIX"] = a.Prefix
	b := authtest.Start(t, env) // second replica, same database: bootstrap runs again

	if ka, kb := jwksOf(t, a), jwksOf(t, b); len(ka.Keys) != 1 || len(kb.Keys) != 1 || ka.Keys[0].KID != kb.Keys[0].KID {
		t.Fatalf("replicas publish different keys: %+v vs %+v", ka, kb)
	}
	tok := a.Login(t, admin, "admin password 1")
	if r := b.Do(t, "POST", "/v1/validate", nil, "Authorization", "Bearer "+tok.AccessToken); r.Status != 200 {
		t.Fatalf("replica b rejects a token of replica a: %d %s", r.Status, r.Body)
	}
	var v web.ValidateResponse
	b.Do(t, "POST", "/v1/validate", nil, "Authorization", "Bearer "+tok.AccessToken).JSON(t, &v)
	if len(v.Roles) != 2 || v.Roles[1] != "admin" {
		t.Fatalf("admin roles = %v", v.Roles)
	}
	var n int
	err := a.DB.QueryRow(testenv.Context(t, 5*time.Second), "select count(*) from users where lower(email) = $1", admin).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("admin accounts = %d, %v", n, err)
	}
	// A refresh token from one replica works at the other.
	if r := b.Do(t, "POST", "/v1/token/refresh", map[string]string{"refresh_token": tok.RefreshToken}); r.Status != 200 {
		t.Fatalf("refresh at the other replica: %d %s", r.Status, r.Body)
	}
}

// withKEK looks variables up in env, with a valid AUTH_KEK unless env sets one.
func withKEK(env map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := env[k]; ok || k != "AUTH_KEK" {
			return v
		}
		return authtest.KEKFor("config test")
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		bad  []string // variables the error must name
	}{
		{"Defaults", nil, nil},
		{"ErrBcryptCost", map[string]string{"BCRYPT_COST": "4"}, []string{"BCRYPT_COST"}},
		{"ErrRotationShorterThanTokens", map[string]string{"KEY_ROTATION_INTERVAL": "10m"}, []string{"KEY_ROTATION_INTERVAL"}},
		{"RotationOff", map[string]string{"KEY_ROTATION_INTERVAL": "0s"}, nil},
		{"ErrAdminHalf", map[string]string{"ADMIN_EMAIL": "a@example.com"}, []string{"ADMIN_EMAIL"}},
		{"ErrAdminShortPassword", map[string]string{"ADMIN_EMAIL": "a@example.com", "ADMIN_PASSWORD": "short"}, []string{"ADMIN_PASSWORD"}},
		{"ErrClients", map[string]string{"SERVICE_CLIENTS": "gateway"}, []string{"SERVICE_CLIENTS"}},
		{"ErrClientShortSecret", map[string]string{"SERVICE_CLIENTS": "gateway:short:storage:admin"}, []string{"SERVICE_CLIENTS"}},
		{"ErrClientsFile", map[string]string{"SERVICE_CLIENTS_FILE": "/nonexistent/clients"}, []string{"SERVICE_CLIENTS_FILE"}},
		{"ErrProxies", map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8,nope"}, []string{"TRUSTED_PROXIES"}},
		{"ErrTTL", map[string]string{"ACCESS_TOKEN_TTL": "soon"}, []string{"ACCESS_TOKEN_TTL"}},
		{"ErrSessionMaxAge", map[string]string{"SESSION_MAX_AGE": "0s"}, []string{"SESSION_MAX_AGE"}},
		{"ErrBackoffMax", map[string]string{"LOGIN_BACKOFF_BASE": "1m", "LOGIN_BACKOFF_MAX": "1s"}, []string{"LOGIN_BACKOFF_MAX"}},
		{"ErrNoKEK", map[string]string{"AUTH_KEK": ""}, []string{"AUTH_KEK_FILE"}},
		{"ErrKEK", map[string]string{"AUTH_KEK": "short"}, []string{"AUTH_KEK"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := config.NewReader(withKEK(tt.env))
			// What auth reads at start: the common variables (TRUSTED_PROXIES
			// among them), then its own.
			service.ReadBase(r, app.Spec("test"))
			cfg := app.ReadConfig(r)
			err := r.Err()
			if len(tt.bad) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.BcryptCost != 12 || cfg.AccessTokenTTL != 15*time.Minute || cfg.LoginMaxFailures != 10 ||
					cfg.SessionMaxAge != 30*24*time.Hour || cfg.LoginBackoffBase != time.Second || cfg.KEK == nil {
					t.Fatalf("defaults = %+v", cfg)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, v := range tt.bad {
				if !strings.Contains(err.Error(), v) {
					t.Fatalf("error %q does not name %s", err, v)
				}
			}
			if strings.Contains(err.Error(), "short:") {
				t.Fatalf("error leaks a secret: %v", err)
			}
		})
	}
}

func TestClientsFile(t *testing.T) {
	path := t.TempDir() + "/clients"
	content := "# service accounts\ngateway:" + authtest.ClientSecret + ":storage:admin\n\nnotifier:notifier-secret-0123456789:storage:read # mails links\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	r := config.NewReader(withKEK(map[string]string{"SERVICE_CLIENTS_FILE": path}))
	cfg := app.ReadConfig(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	c, ok := cfg.Clients.Authenticate("notifier", "notifier-secret-0123456789")
	if !ok || len(c.Scopes) != 1 || c.Scopes[0] != "storage:read" || cfg.Clients.Len() != 2 {
		t.Fatalf("clients from file: %+v %v", c, ok)
	}
}

// An admin grants and revokes a user the role storage; the user's next
// access token (a login or a refresh) carries the scope storage, or not.
func TestGrantStorageRole(t *testing.T) {
	admin := newEmail()
	s := authtest.Start(t, map[string]string{"ADMIN_EMAIL": admin, "ADMIN_PASSWORD": "admin password 1"})
	email := newEmail()
	acct := s.Signup(t, email, password)
	scopeOf := func(t *testing.T, raw string) string {
		t.Helper()
		_, c := unverifiedClaims(t, raw)
		return c.Scope
	}
	user := s.Login(t, email, password)
	if sc := scopeOf(t, user.AccessToken); sc != "" {
		t.Fatalf("a new user's token has scope %q", sc)
	}
	adminTok := s.Login(t, admin, "admin password 1").AccessToken
	path := "/v1/users/" + acct.ID + "/roles/storage"
	change := func(t *testing.T, method, path, token string) testenv.Response {
		t.Helper()
		if token == "" {
			return s.Do(t, method, path, nil)
		}
		return s.Do(t, method, path, nil, "Authorization", "Bearer "+token)
	}
	wantRoles := func(t *testing.T, r testenv.Response, roles string) {
		t.Helper()
		var a web.Account
		if r.Status != http.StatusOK {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		r.JSON(t, &a)
		if a.ID != acct.ID || a.Email != email || strings.Join(a.Roles, ",") != roles {
			t.Fatalf("account = %+v, want roles %s", a, roles)
		}
	}

	t.Run("ErrNotAdmin", func(t *testing.T) {
		for _, method := range []string{http.MethodPut, http.MethodDelete} {
			if r := change(t, method, path, user.AccessToken); r.Status != http.StatusForbidden || r.ErrorCode() != "forbidden" {
				t.Fatalf("%s by the user: %d %s", method, r.Status, r.Body)
			}
			if r := change(t, method, path, ""); r.Status != http.StatusUnauthorized {
				t.Fatalf("%s without a token: %d %s", method, r.Status, r.Body)
			}
		}
	})
	t.Run("ErrUnknownUser", func(t *testing.T) {
		for _, method := range []string{http.MethodPut, http.MethodDelete} {
			if r := change(t, method, "/v1/users/000000000000000000000000/roles/storage", adminTok); r.Status != http.StatusNotFound || r.ErrorCode() != "not_found" {
				t.Fatalf("%s of an unknown user: %d %s", method, r.Status, r.Body)
			}
		}
	})
	t.Run("ErrRole", func(t *testing.T) {
		if r := change(t, http.MethodPut, "/v1/users/"+acct.ID+"/roles/admin", adminTok); r.Status != http.StatusBadRequest || r.ErrorCode() != "invalid" {
			t.Fatalf("grant admin: %d %s", r.Status, r.Body)
		}
	})
	// Nothing above changed the account.
	if sc := scopeOf(t, s.Login(t, email, password).AccessToken); sc != "" {
		t.Fatalf("scope after refused grants = %q", sc)
	}

	for range 2 { // idempotent
		wantRoles(t, change(t, http.MethodPut, path, adminTok), "user,storage")
	}
	granted := s.Login(t, email, password)
	if sc := scopeOf(t, granted.AccessToken); sc != "storage" {
		t.Fatalf("scope after the grant = %q, want storage", sc)
	}
	var v web.ValidateResponse
	s.Do(t, "POST", "/v1/validate", nil, "Authorization", "Bearer "+granted.AccessToken).JSON(t, &v)
	if v.Scope != "storage" {
		t.Fatalf("validate = %+v", v)
	}

	for range 2 {
		wantRoles(t, change(t, http.MethodDelete, path, adminTok), "user")
	}
	if sc := scopeOf(t, s.Login(t, email, password).AccessToken); sc != "" {
		t.Fatalf("scope after the revoke = %q", sc)
	}
	// A refresh reads the roles anew.
	r := s.Do(t, "POST", "/v1/token/refresh", map[string]string{"refresh_token": granted.RefreshToken})
	var refreshed web.TokenResponse
	r.JSON(t, &refreshed)
	if r.Status != http.StatusOK || scopeOf(t, refreshed.AccessToken) != "" {
		t.Fatalf("refresh after the revoke: %d, scope %q", r.Status, scopeOf(t, refreshed.AccessToken))
	}
}
