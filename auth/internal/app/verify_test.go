package app_test

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/audiomill/audiomill/auth/internal/authtest"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

func emailVerified(t *testing.T, token string) bool {
	t.Helper()
	c, err := testenv.UnverifiedClaims(token)
	if err != nil || c.EmailVerified == nil {
		t.Fatalf("access token without email_verified (%v)", err)
	}
	return *c.EmailVerified
}

func verifyLink(t *testing.T, s *authtest.Server, token string) testenv.Response {
	t.Helper()
	return s.Do(t, "GET", "/v1/verify?token="+url.QueryEscape(token), nil)
}

// Sign-up answers a taken address exactly as a free one (status, headers,
// body), and the taken address's owner gets a notice instead.
func TestSignupDoesNotTellWhetherTheAddressExists(t *testing.T) {
	s := authtest.Start(t, nil)
	taken := newEmail()
	owner := s.Signup(t, taken, password)
	s.VerificationFor(t, taken)

	start := time.Now()
	fresh := s.Do(t, "POST", "/v1/users", map[string]string{"email": newEmail(), "password": password})
	freshTook := time.Since(start)
	start = time.Now()
	again := s.Do(t, "POST", "/v1/users", map[string]string{"email": taken, "password": "another-password-9"})
	againTook := time.Since(start)
	t.Logf("free address answered in %s, taken one in %s", freshTook, againTook)
	if fresh.Status != http.StatusAccepted || again.Status != fresh.Status || string(again.Body) != string(fresh.Body) {
		t.Fatalf("free address: %d %s; taken: %d %s", fresh.Status, fresh.Body, again.Status, again.Body)
	}
	for k := range fresh.Header {
		if k == "X-Request-Id" || k == "Date" {
			continue
		}
		if again.Header.Get(k) != fresh.Header.Get(k) || len(again.Header) != len(fresh.Header) {
			t.Errorf("header %s: free %q, taken %q", k, fresh.Header.Get(k), again.Header.Get(k))
		}
	}
	if env := s.NextMail(t); env.Type != events.TypeAccountVerify {
		t.Fatalf("the new account's email: %s", env.Type)
	}
	env := s.NextMail(t)
	p, err := events.Decode[events.AccountExists](env.Payload)
	if env.Type != events.TypeAccountExists || err != nil || p.UserID != owner.ID || p.Email != taken {
		t.Fatalf("the existing owner's notice: %s %s (%v)", env.Type, env.Payload, err)
	}
	// The taken address's password did not change, and a second try within
	// the hour sends no second notice.
	s.Login(t, taken, password)
	s.Do(t, "POST", "/v1/users", map[string]string{"email": taken, "password": password})
	if n := testenv.QueueLen(t, s.AMQPURL, s.MailQueue); n != 0 {
		t.Errorf("%d more emails after a second sign-up with a taken address", n)
	}
}

// The verification link works once, and only until it expires; the
// access token says whether the address is verified.
func TestVerificationLink(t *testing.T) {
	s := authtest.Start(t, nil)
	email := newEmail()
	s.Signup(t, email, password)
	link := s.VerificationFor(t, email)
	if !link.ExpiresAt.After(time.Now().Add(23 * time.Hour)) {
		t.Errorf("link expires at %s, want in 24h", link.ExpiresAt)
	}
	if emailVerified(t, s.Login(t, email, password).AccessToken) {
		t.Fatal("a new account's token says email_verified true")
	}
	for _, bad := range []string{"/v1/verify", "/v1/verify?token=", "/v1/verify?token=nope", "/v1/verify?token=a&token=b"} {
		if r := s.Do(t, "GET", bad, nil); r.Status != http.StatusBadRequest || r.ErrorCode() != "invalid" {
			t.Errorf("GET %s = %d %s", bad, r.Status, r.Body)
		}
	}
	if r := verifyLink(t, s, link.Token); r.Status != http.StatusOK {
		t.Fatalf("verify = %d %s", r.Status, r.Body)
	}
	if !emailVerified(t, s.Login(t, email, password).AccessToken) {
		t.Fatal("token after verifying says email_verified false")
	}
	if r := verifyLink(t, s, link.Token); r.Status != http.StatusBadRequest || r.ErrorCode() != "invalid" {
		t.Errorf("reused link = %d %s", r.Status, r.Body)
	}

	t.Run("ErrExpired", func(t *testing.T) {
		s := authtest.Start(t, map[string]string{"AUTH_VERIFY_TTL": "1s"})
		email := newEmail()
		s.Signup(t, email, password)
		link := s.VerificationFor(t, email)
		time.Sleep(1200 * time.Millisecond)
		if r := verifyLink(t, s, link.Token); r.Status != http.StatusBadRequest || r.ErrorCode() != "invalid" {
			t.Fatalf("expired link = %d %s", r.Status, r.Body)
		}
		if emailVerified(t, s.Login(t, email, password).AccessToken) {
			t.Fatal("an expired link verified the address")
		}
	})
}

// A new link is sent at most once per interval and a few times a day; a
// new link replaces the old one.
func TestResendIsLimited(t *testing.T) {
	s := authtest.Start(t, map[string]string{"AUTH_VERIFY_RESEND_INTERVAL": "1s", "AUTH_VERIFY_RESEND_PER_DAY": "2"})
	email := newEmail()
	s.Signup(t, email, password)
	first := s.VerificationFor(t, email)
	bearer := "Bearer " + s.Login(t, email, password).AccessToken
	resend := func() testenv.Response {
		return s.Do(t, "POST", "/v1/users/verify/resend", nil, "Authorization", bearer)
	}

	if r := s.Do(t, "POST", "/v1/users/verify/resend", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("resend without a token = %d", r.Status)
	}
	if r := resend(); r.Status != http.StatusAccepted {
		t.Fatalf("resend = %d %s", r.Status, r.Body)
	}
	second := s.VerificationFor(t, email)
	r := resend()
	if secs, _ := strconv.Atoi(r.Header.Get("Retry-After")); r.Status != http.StatusTooManyRequests || r.ErrorCode() != "rate_limited" || secs < 1 {
		t.Fatalf("resend at once = %d %s (Retry-After %q)", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	time.Sleep(1100 * time.Millisecond)
	if r := resend(); r.Status != http.StatusAccepted {
		t.Fatalf("resend after the interval = %d %s", r.Status, r.Body)
	}
	third := s.VerificationFor(t, email)
	time.Sleep(1100 * time.Millisecond)
	r = resend()
	if secs, _ := strconv.Atoi(r.Header.Get("Retry-After")); r.Status != http.StatusTooManyRequests || secs < 3600 {
		t.Fatalf("third resend of the day = %d %s (Retry-After %q)", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	for _, old := range []string{first.Token, second.Token} {
		if r := verifyLink(t, s, old); r.Status != http.StatusBadRequest {
			t.Errorf("a replaced link = %d %s", r.Status, r.Body)
		}
	}
	if r := verifyLink(t, s, third.Token); r.Status != http.StatusOK {
		t.Fatalf("newest link = %d %s", r.Status, r.Body)
	}
	if r := resend(); r.Status != http.StatusConflict {
		t.Errorf("resend for a verified address = %d %s", r.Status, r.Body)
	}
}

// Sign-ups are limited per client address (the peer, or the X-Real-IP of
// a trusted proxy), whatever the addresses signed up.
func TestSignupRateLimitPerClient(t *testing.T) {
	s := authtest.Start(t, map[string]string{"SIGNUP_MAX_PER_CLIENT": "3"})
	signup := func(hdr ...string) testenv.Response {
		return s.Do(t, "POST", "/v1/users", map[string]string{"email": newEmail(), "password": password}, hdr...)
	}
	for i := range 3 {
		if r := signup(); r.Status != http.StatusAccepted {
			t.Fatalf("sign-up %d = %d %s", i+1, r.Status, r.Body)
		}
	}
	r := signup()
	if secs, _ := strconv.Atoi(r.Header.Get("Retry-After")); r.Status != http.StatusTooManyRequests || r.ErrorCode() != "rate_limited" || secs < 1 {
		t.Fatalf("4th sign-up = %d %s (Retry-After %q)", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	if r := signup("X-Real-IP", "203.0.113.7"); r.Status != http.StatusAccepted {
		t.Errorf("another client behind the trusted proxy = %d %s", r.Status, r.Body)
	}
}

// The configured admin counts as verified.
func TestAdminCountsAsVerified(t *testing.T) {
	admin := newEmail()
	s := authtest.Start(t, map[string]string{"ADMIN_EMAIL": admin, "ADMIN_PASSWORD": password})
	if !emailVerified(t, s.Login(t, admin, password).AccessToken) {
		t.Fatal("admin's token says email_verified false")
	}
}
