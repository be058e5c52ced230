package users

import (
	"crypto/rand"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// Bcrypt cost bounds: below 10 is too cheap to resist offline guessing,
// above 16 takes seconds per login.
const (
	MinBcryptCost     = 10
	MaxBcryptCost     = 16
	DefaultBcryptCost = 12
)

// Passwords hashes and checks passwords with bcrypt at a fixed cost.
type Passwords struct {
	cost  int
	dummy []byte
}

// NewPasswords returns a Passwords hashing at cost. It hashes a random
// password once, to compare against when an email is unknown, so that a
// wrong password and an unknown email take about the same time.
func NewPasswords(cost int) (*Passwords, error) {
	if cost < MinBcryptCost || cost > MaxBcryptCost {
		return nil, fmt.Errorf("bcrypt cost %d is outside %d-%d", cost, MinBcryptCost, MaxBcryptCost)
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	dummy, err := bcrypt.GenerateFromPassword(b[:], cost)
	if err != nil {
		return nil, fmt.Errorf("bcrypt: %w", err)
	}
	return &Passwords{cost: cost, dummy: dummy}, nil
}

// Hash returns the bcrypt hash of pw.
func (p *Passwords) Hash(pw string) ([]byte, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), p.cost)
	if err != nil {
		return nil, fmt.Errorf("bcrypt: %w", err)
	}
	return h, nil
}

// Check reports whether pw matches hash. A nil hash (unknown account) is
// compared against the dummy hash, taking the same time, and never matches.
func (p *Passwords) Check(hash []byte, pw string) bool {
	if len(pw) > MaxPasswordLen { // bcrypt refuses it; spend the same time anyway
		_ = bcrypt.CompareHashAndPassword(p.dummy, []byte(pw[:MaxPasswordLen]))
		return false
	}
	if hash == nil {
		_ = bcrypt.CompareHashAndPassword(p.dummy, []byte(pw))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(pw)) == nil
}
