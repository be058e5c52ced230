// Package tokens issues auth's tokens: EdDSA-signed access tokens (JWTs) and
// opaque, rotating refresh tokens kept hashed in Redis.
package tokens

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/audiomill/audiomill/auth/internal/keys"
	"github.com/audiomill/audiomill/platform/authn"
)

// Issuer signs access tokens with the current key.
type Issuer struct {
	keys     *keys.Manager
	issuer   string
	audience string
	now      func() time.Time
}

// NewIssuer returns an Issuer signing with the current key of km, for
// issuer and audience. now is the clock (time.Now when nil).
func NewIssuer(km *keys.Manager, issuer, audience string, now func() time.Time) *Issuer {
	if now == nil {
		now = time.Now
	}
	return &Issuer{keys: km, issuer: issuer, audience: audience, now: now}
}

// Subject is who an access token is for.
type Subject struct {
	ID        string // user id, or authn.ServiceSubjectPrefix + client id
	Email     string
	Roles     []string
	Scopes    []string
	SessionID string // the refresh family, for users
	// EmailVerified is the claim email_verified of a user's token
	// (service tokens carry no such claim).
	EmailVerified bool
}

// Access is a signed access token.
type Access struct {
	Token     string
	ID        string // jti
	ExpiresAt time.Time
}

// Issue signs an access token for s, valid for ttl.
func (i *Issuer) Issue(s Subject, ttl time.Duration) (Access, error) {
	key, err := i.keys.Current()
	if err != nil {
		return Access{}, fmt.Errorf("sign token: %w", err)
	}
	now := i.now().Truncate(time.Second)
	exp := now.Add(ttl)
	jti := RandomID(16)
	claims := authn.Claims{
		Email:     s.Email,
		Roles:     s.Roles,
		Scope:     strings.Join(s.Scopes, " "),
		SessionID: s.SessionID,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.issuer,
			Subject:   s.ID,
			Audience:  jwt.ClaimStrings{i.audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        jti,
		},
	}
	if !strings.HasPrefix(s.ID, authn.ServiceSubjectPrefix) {
		verified := s.EmailVerified
		claims.EmailVerified = &verified
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = key.ID
	raw, err := t.SignedString(key.Private())
	if err != nil {
		return Access{}, fmt.Errorf("sign token: %w", err)
	}
	return Access{Token: raw, ID: jti, ExpiresAt: exp}, nil
}

// RandomID returns n random bytes, base64url-encoded.
func RandomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}
