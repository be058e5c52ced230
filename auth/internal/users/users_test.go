package users_test

import (
	"strings"
	"testing"

	"github.com/audiomill/audiomill/auth/internal/users"
)

func TestNormalizeAndValidateEmail(t *testing.T) {
	if got := users.NormalizeEmail("  Ada.Lovelace@Example.COM "); got != "ada.lovelace@example.com" {
		t.Fatalf("normalised %q", got)
	}
	for _, ok := range []string{"a@example.com", "first.last+tag@sub.example.org"} {
		if err := users.ValidateEmail(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "plain", "@example.com", "a@", "a@localhost", "a@.com", "a@example.", "Ada <a@example.com>",
		"a@example.com (comment)", "a b@example.com", strings.Repeat("a", 250) + "@example.com", "a@example.com\n"} {
		if err := users.ValidateEmail(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestValidatePassword(t *testing.T) {
	for pw, ok := range map[string]bool{
		"1234567": false, "12345678": true, "ééééééé": false, "éééééééé": true,
		strings.Repeat("x", 72): true, strings.Repeat("x", 73): false, strings.Repeat("é", 37): false,
	} {
		if err := users.ValidatePassword(pw); (err == nil) != ok {
			t.Errorf("password of %d bytes: err = %v", len(pw), err)
		}
	}
}

func TestPasswords(t *testing.T) {
	p, err := users.NewPasswords(users.MinBcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Check(h, "correct horse") || p.Check(h, "wrong horse") || p.Check(nil, "correct horse") || p.Check(h, strings.Repeat("x", 100)) {
		t.Fatal("Check is wrong")
	}
	if _, err := users.NewPasswords(4); err == nil {
		t.Fatal("cost 4 accepted")
	}
}
