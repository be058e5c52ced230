package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
)

// RandomHex is n random bytes in hex: names and secrets of one test.
func RandomHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// AuthKEK is a fresh key-encryption key for the signing keys of an auth
// a test starts (AUTH_KEK): 32 random bytes in hex.
func AuthKEK(tb testing.TB) string { return RandomHex(tb, 32) }
