package authn

import (
	"context"
	"crypto/ed25519"
	"log/slog"

	"github.com/audiomill/audiomill/platform/config"
)

// Defaults of the variables ReadConfig reads; auth uses the same ones.
const (
	DefaultIssuer      = "audiomill-auth"
	DefaultAudience    = "audiomill"
	DefaultAuthService = "auth"
)

// Config says how a service verifies tokens.
type Config struct {
	Issuer   string // AUTH_ISSUER
	Audience string // AUTH_AUDIENCE
	// Service is auth's name in Consul (AUTH_SERVICE), whose JWKS is fetched
	// unless JWKSURL or PublicKey is set.
	Service string
	// JWKSURL fetches the key set from this URL instead (AUTH_JWKS_URL).
	JWKSURL string
	// PublicKey, when set, is the only key (AUTH_PUBLIC_KEY: PEM or base64),
	// with id PublicKeyID (AUTH_PUBLIC_KEY_ID; empty accepts any kid).
	PublicKey   ed25519.PublicKey
	PublicKeyID string
}

// ReadConfig reads AUTH_ISSUER, AUTH_AUDIENCE, AUTH_SERVICE,
// AUTH_JWKS_URL, AUTH_PUBLIC_KEY and AUTH_PUBLIC_KEY_ID.
func ReadConfig(r *config.Reader) Config {
	c := Config{
		Issuer:      r.String("AUTH_ISSUER", DefaultIssuer),
		Audience:    r.String("AUTH_AUDIENCE", DefaultAudience),
		Service:     r.String("AUTH_SERVICE", DefaultAuthService),
		PublicKeyID: r.String("AUTH_PUBLIC_KEY_ID", ""),
	}
	if r.String("AUTH_JWKS_URL", "") != "" {
		c.JWKSURL = r.URL("AUTH_JWKS_URL", "", "http", "https")
	}
	if raw := r.String("AUTH_PUBLIC_KEY", ""); raw != "" {
		k, err := ParsePublicKey(raw)
		if err != nil {
			r.Fail("AUTH_PUBLIC_KEY", "not an Ed25519 public key (PEM or base64): %v", err)
		}
		c.PublicKey = k
	}
	return c
}

// Keys builds the key source c describes: the static key, else the JWKS at
// JWKSURL, else auth's JWKS found through resolver. Background refreshes
// stop when ctx ends.
func (c Config) Keys(ctx context.Context, resolver Picker, logger *slog.Logger) (KeySource, error) {
	switch {
	case c.PublicKey != nil:
		return StaticKey{KID: c.PublicKeyID, Key: c.PublicKey}, nil
	case c.JWKSURL != "":
		return JWKSFromURL(ctx, c.JWKSURL, JWKSOptions{Logger: logger})
	default:
		return JWKSFromConsul(ctx, resolver, c.Service, JWKSOptions{Logger: logger})
	}
}
