// Package app wires the auth service: its configuration, its dependencies
// and routes, and the rotate-keys command.
package app

import (
	"os"
	"time"

	"github.com/audiomill/audiomill/auth/internal/clients"
	"github.com/audiomill/audiomill/auth/internal/ratelimit"
	"github.com/audiomill/audiomill/auth/internal/users"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/config"
)

// Defaults of auth's own variables.
const (
	DefaultDatabase            = "audiomill_auth"
	DefaultAccessTokenTTL      = 15 * time.Minute
	DefaultServiceTokenTTL     = 15 * time.Minute
	DefaultRefreshTokenTTL     = 7 * 24 * time.Hour
	DefaultKeyRotationInterval = 30 * 24 * time.Hour
	DefaultRedisKeyPrefix      = "auth:"
)

// Config is auth's own configuration (the common one is service.Base).
type Config struct {
	Issuer              string        // AUTH_ISSUER
	Audience            string        // AUTH_AUDIENCE
	AccessTokenTTL      time.Duration // ACCESS_TOKEN_TTL
	ServiceTokenTTL     time.Duration // SERVICE_TOKEN_TTL
	RefreshTokenTTL     time.Duration // REFRESH_TOKEN_TTL
	KeyRotationInterval time.Duration // KEY_ROTATION_INTERVAL; 0 = only by command
	BcryptCost          int           // BCRYPT_COST
	LoginMaxFailures    int           // LOGIN_MAX_FAILURES
	LoginFailureWindow  time.Duration // LOGIN_FAILURE_WINDOW
	RedisKeyPrefix      string        // REDIS_KEY_PREFIX
	AdminEmail          string        // ADMIN_EMAIL
	AdminPassword       string        // ADMIN_PASSWORD
	Clients             *clients.Registry
}

// ReadConfig reads auth's variables; problems are recorded in r.
func ReadConfig(r *config.Reader) Config {
	c := Config{
		Issuer:              r.String("AUTH_ISSUER", authn.DefaultIssuer),
		Audience:            r.String("AUTH_AUDIENCE", authn.DefaultAudience),
		AccessTokenTTL:      r.Duration("ACCESS_TOKEN_TTL", DefaultAccessTokenTTL),
		ServiceTokenTTL:     r.Duration("SERVICE_TOKEN_TTL", DefaultServiceTokenTTL),
		RefreshTokenTTL:     r.Duration("REFRESH_TOKEN_TTL", DefaultRefreshTokenTTL),
		KeyRotationInterval: r.Duration("KEY_ROTATION_INTERVAL", DefaultKeyRotationInterval),
		BcryptCost:          r.Int("BCRYPT_COST", users.DefaultBcryptCost),
		LoginMaxFailures:    r.Int("LOGIN_MAX_FAILURES", ratelimit.DefaultMaxFailures),
		LoginFailureWindow:  r.Duration("LOGIN_FAILURE_WINDOW", ratelimit.DefaultWindow),
		RedisKeyPrefix:      r.String("REDIS_KEY_PREFIX", DefaultRedisKeyPrefix),
		AdminEmail:          users.NormalizeEmail(r.String("ADMIN_EMAIL", "")),
		AdminPassword:       r.String("ADMIN_PASSWORD", ""),
	}
	for name, d := range map[string]time.Duration{
		"ACCESS_TOKEN_TTL": c.AccessTokenTTL, "SERVICE_TOKEN_TTL": c.ServiceTokenTTL,
		"REFRESH_TOKEN_TTL": c.RefreshTokenTTL, "LOGIN_FAILURE_WINDOW": c.LoginFailureWindow,
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
	if c.LoginMaxFailures < 1 {
		r.Fail("LOGIN_MAX_FAILURES", "must be at least 1")
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
	return c
}
