package events

import "time"

// Routing keys of the account events auth publishes for the notifier. The
// envelope's job_id names the email (one per issued link or notice), so a
// redelivered event sends no second email.
const (
	// TypeAccountVerify: send the owner of a new (or unverified) account
	// the link that verifies its address.
	TypeAccountVerify = "account.verify"
	// TypeAccountExists: someone tried to sign up with the address of an
	// existing account; tell its owner (the sign-up answer does not).
	TypeAccountExists = "account.exists"
)

// AccountVerify is the payload of an account.verify event.
type AccountVerify struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
	Locale string `json:"locale,omitempty"`
	// Token is the single-use secret of the link
	// (${PUBLIC_URL}/api/v1/verify?token=…); auth keeps only its hash.
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AccountExists is the payload of an account.exists event.
type AccountExists struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
	Locale string `json:"locale,omitempty"`
}

// Compile-time checks.
var (
	_ Payload = AccountVerify{}
	_ Payload = AccountExists{}
)

// EventType implements Payload.
func (AccountVerify) EventType() string { return TypeAccountVerify }

// EventType implements Payload.
func (AccountExists) EventType() string { return TypeAccountExists }

// Validate implements Payload.
func (p AccountVerify) Validate() error {
	var c checker
	c.id("user_id", p.UserID)
	c.email("email", p.Email)
	c.id("token", p.Token)
	if p.ExpiresAt.IsZero() {
		c.add("expires_at", "is required")
	}
	return c.err(TypeAccountVerify)
}

// Validate implements Payload.
func (p AccountExists) Validate() error {
	var c checker
	c.id("user_id", p.UserID)
	c.email("email", p.Email)
	return c.err(TypeAccountExists)
}
