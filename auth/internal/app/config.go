// Package app wires the auth service: its configuration, its dependencies
// and routes, and the rotate-keys command.
package app

import (
	"os"
	"time"

	"github.com/audiomill/audiomill/auth/internal/clients"
	"github.com/audiomill/audiomill/auth/internal/keys"
	"github.com/audiomill/audiomill/auth/internal/ratelimit"
	"github.com/audiomill/audiomill/auth/internal/users"
	"github.com/audiomill/audiomill/auth/internal/verify"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/config"
)

// Defaults of auth's own variables.
const (
	DefaultDatabase            = "audiomill_auth"
	DefaultAccessTokenTTL      = 15 * time.Minute
	DefaultServiceTokenTTL     = 15 * time.Minute
	DefaultRefreshTokenTTL     = 7 * 24 * time.Hour
	DefaultSessionMaxAge       = 30 * 24 * time.Hour
	DefaultKeyRotationInterval = 30 * 24 * time.Hour
	DefaultRedisKeyPrefix      = "auth:"
	// Sign-ups per client address within DefaultSignupWindow.
	DefaultSignupMaxPerClient = 10
	DefaultSignupWindow       = time.Hour
	// Verification emails an account may ask for: one per interval, so
	// many a day.
	DefaultVerifyResendInterval = time.Minute
	DefaultVerifyResendPerDay   = 5
	// SignupNoticeInterval: at most one "someone tried to sign up with your
	// address" email per account within it.
	SignupNoticeInterval = time.Hour
)

// Config is auth's own configuration (the common one is service.Base).
type Config struct {
	Issuer               string        // AUTH_ISSUER
	Audience             string        // AUTH_AUDIENCE
	AccessTokenTTL       time.Duration // ACCESS_TOKEN_TTL
	ServiceTokenTTL      time.Duration // SERVICE_TOKEN_TTL
	RefreshTokenTTL      time.Duration // REFRESH_TOKEN_TTL
	SessionMaxAge        time.Duration // SESSION_MAX_AGE: a refresh family's absolute lifetime
	KeyRotationInterval  time.Duration // KEY_ROTATION_INTERVAL; 0 = only by command
	BcryptCost           int           // BCRYPT_COST
	LoginMaxFailures     int           // LOGIN_MAX_FAILURES
	LoginFailureWindow   time.Duration // LOGIN_FAILURE_WINDOW
	LoginBackoffBase     time.Duration // LOGIN_BACKOFF_BASE
	LoginBackoffMax      time.Duration // LOGIN_BACKOFF_MAX
	RedisKeyPrefix       string        // REDIS_KEY_PREFIX
	VerifyTTL            time.Duration // AUTH_VERIFY_TTL
	VerifyResendInterval time.Duration // AUTH_VERIFY_RESEND_INTERVAL
	VerifyResendPerDay   int           // AUTH_VERIFY_RESEND_PER_DAY
	SignupMaxPerClient   int           // SIGNUP_MAX_PER_CLIENT
	SignupWindow         time.Duration // SIGNUP_WINDOW
	AdminEmail           string        // ADMIN_EMAIL
	AdminPassword        string        // ADMIN_PASSWORD
	Clients              *clients.Registry
	// KEK seals the signing keys' private seeds at rest (AUTH_KEK_FILE or AUTH_KEK).
	KEK *keys.KEK
}

// ReadConfig reads auth's variables; problems are recorded in r.
func ReadConfig(r *config.Reader) Config {
	c := Config{
		Issuer:               r.String("AUTH_ISSUER", authn.DefaultIssuer),
		Audience:             r.String("AUTH_AUDIENCE", authn.DefaultAudience),
		AccessTokenTTL:       r.Duration("ACCESS_TOKEN_TTL", DefaultAccessTokenTTL),
		ServiceTokenTTL:      r.Duration("SERVICE_TOKEN_TTL", DefaultServiceTokenTTL),
		RefreshTokenTTL:      r.Duration("REFRESH_TOKEN_TTL", DefaultRefreshTokenTTL),
		SessionMaxAge:        r.Duration("SESSION_MAX_AGE", DefaultSessionMaxAge),
		KeyRotationInterval:  r.Duration("KEY_ROTATION_INTERVAL", DefaultKeyRotationInterval),
		BcryptCost:           r.Int("BCRYPT_COST", users.DefaultBcryptCost),
		LoginMaxFailures:     r.Int("LOGIN_MAX_FAILURES", ratelimit.DefaultMaxFailures),
		LoginFailureWindow:   r.Duration("LOGIN_FAILURE_WINDOW", ratelimit.DefaultWindow),
		LoginBackoffBase:     r.Duration("LOGIN_BACKOFF_BASE", ratelimit.DefaultBackoffBase),
		LoginBackoffMax:      r.Duration("LOGIN_BACKOFF_MAX", ratelimit.DefaultBackoffMax),
		RedisKeyPrefix:       r.String("REDIS_KEY_PREFIX", DefaultRedisKeyPrefix),
		VerifyTTL:            r.Duration("AUTH_VERIFY_TTL", verify.DefaultTTL),
		VerifyResendInterval: r.Duration("AUTH_VERIFY_RESEND_INTERVAL", DefaultVerifyResendInterval),
		VerifyResendPerDay:   r.Int("AUTH_VERIFY_RESEND_PER_DAY", DefaultVerifyResendPerDay),
		SignupMaxPerClient:   r.Int("SIGNUP_MAX_PER_CLIENT", DefaultSignupMaxPerClient),
		SignupWindow:         r.Duration("SIGNUP_WINDOW", DefaultSignupWindow),
		AdminEmail:           users.NormalizeEmail(r.String("ADMIN_EMAIL", "")),
		AdminPassword:        r.String("ADMIN_PASSWORD", ""),
	}
	for name, d := range map[string]time.Duration{
		"ACCESS_TOKEN_TTL": c.AccessTokenTTL, "SERVICE_TOKEN_TTL": c.ServiceTokenTTL,
		"REFRESH_TOKEN_TTL": c.RefreshTokenTTL, "LOGIN_FAILURE_WINDOW": c.LoginFailureWindow,
		"AUTH_VERIFY_TTL": c.VerifyTTL, "AUTH_VERIFY_RESEND_INTERVAL": c.VerifyResendInterval, "SIGNUP_WINDOW": c.SignupWindow, "SESSION_MAX_AGE": c.SessionMaxAge,
	} {
		if d < time.Second {
			r.Fail(name, "must be at least 1s")
		}
	}
	if c.KeyRotationInterval != 0 && c.KeyRotationInterval <= max(c.AccessTokenTTL, c.ServiceTokenTTL) {
		r.Fail("KEY_ROTATION_INTERVAL", "must be 0 (only by command) or longer than the token lifetimes")
	}
	if c.BcryptCost < users.MinBcryptCost || c.BcryptCost > users.MaxBcryptCost {
		r.Fail("BCRYPT_COST", "%d is outside %d-%d", c.BcryptCost, users.MinBcryptCost, users.MaxBcryptCost)
	}
	if c.VerifyResendPerDay < 1 {
		r.Fail("AUTH_VERIFY_RESEND_PER_DAY", "must be at least 1")
	}
	if c.SignupMaxPerClient < 1 {
		r.Fail("SIGNUP_MAX_PER_CLIENT", "must be at least 1")
	}
	if c.LoginMaxFailures < 1 {
		r.Fail("LOGIN_MAX_FAILURES", "must be at least 1")
	}
	if c.LoginBackoffBase < time.Millisecond {
		r.Fail("LOGIN_BACKOFF_BASE", "must be at least 1ms")
	}
	if c.LoginBackoffMax < c.LoginBackoffBase {
		r.Fail("LOGIN_BACKOFF_MAX", "must be at least LOGIN_BACKOFF_BASE")
	}
	if (c.AdminEmail == "") != (c.AdminPassword == "") {
		r.Fail("ADMIN_EMAIL", "ADMIN_EMAIL and ADMIN_PASSWORD must be set together")
	} else if c.AdminEmail != "" {
		if err := users.ValidateEmail(c.AdminEmail); err != nil {
			r.Fail("ADMIN_EMAIL", "not a valid email address")
		}
		if err := users.ValidatePassword(c.AdminPassword); err != nil {
			r.Fail("ADMIN_PASSWORD", "%s", err.Error())
		}
	}
	spec := r.String("SERVICE_CLIENTS", "")
	if path := r.String("SERVICE_CLIENTS_FILE", ""); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			r.Fail("SERVICE_CLIENTS_FILE", "%v", err)
		}
		spec += "\n" + string(b)
	}
	reg, err := clients.Parse(spec)
	if err != nil {
		r.Fail("SERVICE_CLIENTS", "%v", err)
		reg, _ = clients.Parse("")
	}
	c.Clients = reg
	c.KEK = readKEK(r)
	return c
}

// readKEK reads the key-encryption key of the signing keys from the file
// AUTH_KEK_FILE or the variable AUTH_KEK (exactly one of them).
func readKEK(r *config.Reader) *keys.KEK {
	path, inline := r.String("AUTH_KEK_FILE", ""), r.String("AUTH_KEK", "")
	name, text := "AUTH_KEK", inline
	switch {
	case path != "" && inline != "":
		r.Fail("AUTH_KEK_FILE", "set AUTH_KEK_FILE or AUTH_KEK, not both")
		return nil
	case path == "" && inline == "":
		r.Fail("AUTH_KEK_FILE", "the key-encryption key of the signing keys is required: "+
			"AUTH_KEK_FILE (a file holding it) or AUTH_KEK; make one with `openssl rand -base64 32`")
		return nil
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			r.Fail("AUTH_KEK_FILE", "%v", err)
			return nil
		}
		name, text = "AUTH_KEK_FILE", string(b)
	}
	k, err := keys.ParseKEK(text)
	if err != nil {
		r.Fail(name, "%v", err)
		return nil
	}
	return k
}
