package clients_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/audiomill/audiomill/auth/internal/clients"
)

func TestParse(t *testing.T) {
	sum := sha256.Sum256([]byte("hashed-secret-0123456789"))
	reg, err := clients.Parse("gateway:plain-secret-0123456:storage:admin storage:read,\n# comment\nnotifier:sha256:" + hex.EncodeToString(sum[:]) + ":storage:read\n")
	if err != nil {
		t.Fatal(err)
	}
	if reg.Len() != 2 {
		t.Fatalf("%d clients", reg.Len())
	}
	c, ok := reg.Authenticate("gateway", "plain-secret-0123456")
	if !ok || strings.Join(c.Scopes, " ") != "storage:admin storage:read" {
		t.Fatalf("gateway: %+v %v", c, ok)
	}
	if _, ok := reg.Authenticate("notifier", "hashed-secret-0123456789"); !ok {
		t.Fatal("hashed secret refused")
	}
	for name, tt := range map[string][2]string{
		"ErrWrongSecret":   {"gateway", "plain-secret-0123457"},
		"ErrUnknownClient": {"nobody", "plain-secret-0123456"},
		"ErrEmptySecret":   {"gateway", ""},
		"ErrHashAsSecret":  {"notifier", hex.EncodeToString(sum[:])},
	} {
		t.Run(name, func(t *testing.T) {
			if _, ok := reg.Authenticate(tt[0], tt[1]); ok {
				t.Fatal("accepted")
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for name, spec := range map[string]string{
		"ErrNoSecret":     "gateway",
		"ErrEmptyID":      ":secret-0123456789abcdef:x",
		"ErrShortSecret":  "gateway:short:x",
		"ErrBadHash":      "gateway:sha256:zz:x",
		"ErrDuplicate":    "a:secret-0123456789abcdef:x,a:secret-0123456789abcdef:y",
		"ErrSpaceInID":    "gate way:secret-0123456789abcdef:x",
		"ErrShortHashHex": "gateway:sha256:abcd:x",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := clients.Parse(spec)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "secret-0123456789abcdef") || strings.Contains(err.Error(), "short") && name != "ErrShortSecret" {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
	if reg, err := clients.Parse(""); err != nil || reg.Len() != 0 {
		t.Fatalf("empty: %v", err)
	}
}
