// Package links signs and checks the short-lived links to a job's MP3 that
// the web page puts in a plain <a href download> and an <audio src>, where
// no bearer token can go (docs/security.md "Signed links"):
//
//	/api/v1/jobs/{id}/audio?exp=<unix seconds>&sig=<base64url HMAC-SHA256>
//
// The MAC covers the job id, the job's owner and the expiry, with a key all
// gateway replicas share (GATEWAY_LINK_KEY_FILE / GATEWAY_LINK_KEY).
package links

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// MinKeyLen is the shortest key accepted, in bytes.
const MinKeyLen = 32

// DefaultTTL is how long a link works.
const DefaultTTL = 10 * time.Minute

// Errors of Check.
var (
	ErrMalformed = errors.New("links: malformed exp or sig")
	ErrExpired   = errors.New("links: the link has expired")
	ErrBadSig    = errors.New("links: the signature does not match")
)

// Signer signs and checks links.
type Signer struct {
	key []byte
	ttl time.Duration
}

// New returns a Signer with key (at least MinKeyLen bytes) and links valid
// for ttl.
func New(key []byte, ttl time.Duration) (*Signer, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("links: the key has %d bytes, want at least %d", len(key), MinKeyLen)
	}
	if ttl <= 0 {
		return nil, errors.New("links: the lifetime must be positive")
	}
	return &Signer{key: append([]byte(nil), key...), ttl: ttl}, nil
}

// Sign returns the query (exp, sig) of a link to job's MP3 for owner, and
// when it expires.
func (s *Signer) Sign(job, owner string, now time.Time) (exp time.Time, expParam, sig string) {
	exp = now.Add(s.ttl).Truncate(time.Second)
	expParam = strconv.FormatInt(exp.Unix(), 10)
	return exp, expParam, s.mac(job, owner, expParam)
}

// Precheck is what Check can tell without the job: the link's shape
// (ErrMalformed) and its expiry (ErrExpired), so that a malformed or
// expired link costs no lookup.
func Precheck(expParam, sig string, now time.Time) error {
	unix, err := strconv.ParseInt(expParam, 10, 64)
	if err != nil || unix <= 0 || len(sig) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return ErrMalformed
	}
	if now.Unix() > unix {
		return ErrExpired
	}
	return nil
}

// Check reports whether sig signs (job, owner, expParam) and expParam is
// not past now (Precheck first).
func (s *Signer) Check(job, owner, expParam, sig string, now time.Time) error {
	if err := Precheck(expParam, sig, now); err != nil {
		return err
	}
	if !hmac.Equal([]byte(sig), []byte(s.mac(job, owner, expParam))) {
		return ErrBadSig
	}
	return nil
}

func (s *Signer) mac(job, owner, exp string) string {
	m := hmac.New(sha256.New, s.key)
	// Length-prefixed fields: no two (job, owner, exp) share an input.
	for _, f := range []string{"audiomill-link-v1", job, owner, exp} {
		fmt.Fprintf(m, "%d:%s;", len(f), f)
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
