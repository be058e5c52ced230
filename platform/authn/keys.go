package authn

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
)

// ErrUnknownKey is returned by a KeySource that has no key with the given id.
var ErrUnknownKey = errors.New("unknown signing key id")

// KeySource finds the Ed25519 public key that verifies a token, by the kid
// in the token's header. Implementations are safe for concurrent use.
type KeySource interface {
	// PublicKey returns the key with id kid, or an error wrapping
	// ErrUnknownKey when there is none.
	PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error)
}

// StaticKey is a KeySource of one public key, configured rather than fetched:
// for services that start before auth, and for tests.
type StaticKey struct {
	// KID is the key id; empty accepts any kid.
	KID string
	Key ed25519.PublicKey
}

// PublicKey implements KeySource.
func (s StaticKey) PublicKey(_ context.Context, kid string) (ed25519.PublicKey, error) {
	if s.KID != "" && kid != s.KID {
		return nil, fmt.Errorf("kid %q: %w", kid, ErrUnknownKey)
	}
	return s.Key, nil
}

// KeySet is a KeySource over a set of keys that its owner replaces as they
// change (auth keeps it in step with the keys in its database).
type KeySet struct {
	mu   sync.RWMutex
	keys map[string]ed25519.PublicKey
}

// NewKeySet returns a KeySet holding keys (kid → public key).
func NewKeySet(keys map[string]ed25519.PublicKey) *KeySet {
	return &KeySet{keys: maps.Clone(keys)}
}

// Replace replaces every key of the set.
func (s *KeySet) Replace(keys map[string]ed25519.PublicKey) {
	keys = maps.Clone(keys)
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

// PublicKey implements KeySource.
func (s *KeySet) PublicKey(_ context.Context, kid string) (ed25519.PublicKey, error) {
	s.mu.RLock()
	k, ok := s.keys[kid]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("kid %q: %w", kid, ErrUnknownKey)
	}
	return k, nil
}

// ParsePublicKey reads an Ed25519 public key written as PEM ("PUBLIC KEY",
// PKIX), or as base64 (standard or URL alphabet, padded or not) of either
// the raw 32-byte key or its PKIX DER encoding.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty public key")
	}
	var der []byte
	if strings.HasPrefix(s, "-----BEGIN") {
		block, _ := pem.Decode([]byte(s))
		if block == nil {
			return nil, errors.New("public key: malformed PEM")
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("public key: PEM block %q, want PUBLIC KEY", block.Type)
		}
		der = block.Bytes
	} else {
		b, err := decodeBase64(s)
		if err != nil {
			return nil, fmt.Errorf("public key: neither PEM nor base64: %w", err)
		}
		if len(b) == ed25519.PublicKeySize {
			return ed25519.PublicKey(b), nil
		}
		der = b
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	k, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key: %T is not an Ed25519 key", pub)
	}
	return k, nil
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
