package testenv

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// TokenClaims are the claims of an access token a test reads without
// verifying it (UnverifiedClaims).
type TokenClaims struct {
	Subject       string   `json:"sub"`
	Email         string   `json:"email"`
	Roles         []string `json:"roles"`
	EmailVerified *bool    `json:"email_verified"`
	// ID is for the caller to fill (Subject, for a user's token).
	ID string `json:"-"`
}

// UnverifiedClaims decodes the claims of a JWT without checking its
// signature: for tests reading what auth put in a token it just issued.
func UnverifiedClaims(token string) (TokenClaims, error) {
	var c TokenClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, errors.New("testenv: not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, fmt.Errorf("testenv: JWT payload: %w", err)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("testenv: JWT claims: %w", err)
	}
	return c, nil
}
