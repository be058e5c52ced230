package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KEKSize is the size of a key-encryption key: AES-256.
const KEKSize = 32

// A sealed seed is sealedVersion, the KEK's fingerprint, a random nonce
// and the AES-256-GCM ciphertext of the seed with its tag; the key id is
// the additional data, so a sealed seed cannot be moved to another row.
const (
	sealedVersion  = 1
	fingerprintLen = 8
	nonceLen       = 12
	sealedLen      = 1 + fingerprintLen + nonceLen + 32 + 16
)

// ErrWrongKEK is the cause of the error when a sealed seed was not sealed
// with the configured key-encryption key (or was altered).
var ErrWrongKEK = errors.New("the key-encryption key does not open the signing keys")

// KEK is the key-encryption key that seals the signing keys' private
// seeds at rest (AUTH_KEK_FILE or AUTH_KEK). It is never stored in the
// database beside them; the database holds only its fingerprint, in each
// sealed seed, to tell a wrong KEK from a damaged seed.
type KEK struct {
	aead        cipher.AEAD
	fingerprint [fingerprintLen]byte
}

// ParseKEK reads a key-encryption key written as 32 bytes in base64
// (standard or URL alphabet, padded or not) or 64 hex digits; surrounding
// white space is ignored.
func ParseKEK(text string) (*KEK, error) {
	text = strings.TrimSpace(text)
	var raw []byte
	if b, err := hex.DecodeString(text); err == nil && len(text) == 2*KEKSize {
		raw = b
	} else {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(text); err == nil {
				raw = b
				break
			}
		}
	}
	if len(raw) != KEKSize {
		return nil, fmt.Errorf("a key-encryption key is %d random bytes in base64 or hex (`openssl rand -base64 32`)", KEKSize)
	}
	return NewKEK(raw)
}

// NewKEK returns the KEK of the 32 bytes raw.
func NewKEK(raw []byte) (*KEK, error) {
	if len(raw) != KEKSize {
		return nil, fmt.Errorf("key-encryption key of %d bytes, want %d", len(raw), KEKSize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	k := &KEK{aead: aead}
	sum := sha256.Sum256(append([]byte("audiomill signing-key KEK fingerprint\x00"), raw...))
	copy(k.fingerprint[:], sum[:])
	return k, nil
}

// GenerateKEK returns a new random key-encryption key, base64-encoded.
func GenerateKEK() string {
	b := make([]byte, KEKSize)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.StdEncoding.EncodeToString(b)
}

// Fingerprint names the KEK in logs and errors (not secret).
func (k *KEK) Fingerprint() string { return hex.EncodeToString(k.fingerprint[:]) }

// Seal encrypts the seed of the key kid.
func (k *KEK) Seal(kid string, seed []byte) []byte {
	out := make([]byte, 1+fingerprintLen+nonceLen, sealedLen)
	out[0] = sealedVersion
	copy(out[1:], k.fingerprint[:])
	_, _ = rand.Read(out[1+fingerprintLen:]) // the nonce
	return k.aead.Seal(out, out[1+fingerprintLen:], seed, []byte(kid))
}

// Open decrypts the sealed seed of the key kid. A seed sealed with another
// KEK, or altered, is an error wrapping ErrWrongKEK.
func (k *KEK) Open(kid string, sealed []byte) ([]byte, error) {
	if len(sealed) != sealedLen || sealed[0] != sealedVersion {
		return nil, fmt.Errorf("signing key %s: sealed seed of %d bytes in an unknown format", kid, len(sealed))
	}
	fp := sealed[1 : 1+fingerprintLen]
	if string(fp) != string(k.fingerprint[:]) {
		return nil, fmt.Errorf("signing key %s was sealed with the key-encryption key %x, not the configured %s: %w",
			kid, fp, k.Fingerprint(), ErrWrongKEK)
	}
	nonce := sealed[1+fingerprintLen : 1+fingerprintLen+nonceLen]
	seed, err := k.aead.Open(nil, nonce, sealed[1+fingerprintLen+nonceLen:], []byte(kid))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: sealed seed does not authenticate (altered?): %w", kid, ErrWrongKEK)
	}
	return seed, nil
}
