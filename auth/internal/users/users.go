// Package users keeps auth's accounts in PostgreSQL (table users, see
// auth/internal/schema): a unique, normalised email, a bcrypt password hash
// and roles.
package users

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/pgdb"
)

// Roles.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
	// RoleStorage gives the user's access tokens the scope storage: the
	// file-storage API (filestorage) for the user's own files. Only an
	// admin grants it (GrantRole).
	RoleStorage = "storage"
)

// Limits on credentials.
const (
	MaxEmailLen    = 254
	MinPasswordLen = 8  // characters
	MaxPasswordLen = 72 // bytes: bcrypt ignores anything longer, so it is refused
)

// emailIndex is the unique index on lower(email) (migration 001).
const emailIndex = "users_email_lower_key"

// User is one account.
type User struct {
	ID           string
	Email        string
	PasswordHash []byte
	Roles        []string
	// EmailVerified: the owner proved the address is theirs (the link of
	// the verification email), or the account predates verification.
	EmailVerified bool
	CreatedAt     time.Time
}

// NormalizeEmail returns the form an email is stored and looked up in:
// trimmed and lower-cased, so "Ada@Example.com" and "ada@example.com" are one account.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// ValidateEmail checks a normalised email: a bare address (no display
// name, no comments) of at most MaxEmailLen bytes with a dotted domain.
// The error is errs.Invalid.
func ValidateEmail(email string) error {
	if email == "" || len(email) > MaxEmailLen {
		return errs.E(errs.Invalid, "email must be a valid address of at most %d characters", MaxEmailLen)
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return errs.E(errs.Invalid, "email must be a valid address like name@example.com")
	}
	_, domain, _ := strings.Cut(email, "@")
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return errs.E(errs.Invalid, "email must be a valid address like name@example.com")
	}
	return nil
}

// ValidatePassword checks a new password's length. The error is errs.Invalid.
func ValidatePassword(pw string) error {
	if utf8.RuneCountInString(pw) < MinPasswordLen {
		return errs.E(errs.Invalid, "password must have at least %d characters", MinPasswordLen)
	}
	if len(pw) > MaxPasswordLen {
		return errs.E(errs.Invalid, "password must be at most %d bytes", MaxPasswordLen)
	}
	return nil
}

// Store is the table of accounts.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns the store in pool's database, whose schema is migrated
// (auth/internal/schema).
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// NewID returns a new account id: 24 random hex digits, the shape of the
// MongoDB ObjectIDs that accounts made before PostgreSQL keep.
func NewID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Create inserts u, giving it an id and creation time when they are
// empty. A taken email (whatever its case) is errs.Conflict; a database
// that does not answer is errs.Unavailable.
func (s *Store) Create(ctx context.Context, u *User) error {
	if u.ID == "" {
		u.ID = NewID()
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now().UTC().Truncate(time.Microsecond)
	}
	if u.Roles == nil {
		u.Roles = []string{}
	}
	_, err := s.pool.Exec(ctx,
		`insert into users (id, email, password_hash, roles, email_verified, created_at) values ($1, $2, $3, $4, $5, $6)`,
		u.ID, u.Email, u.PasswordHash, u.Roles, u.EmailVerified, u.CreatedAt)
	if pgdb.IsUniqueViolation(err, emailIndex) {
		return errs.Wrap(err, errs.Conflict, "an account with this email already exists")
	}
	return pgdb.Err(err, "account", "users: insert")
}

const selectUser = `select id, email, password_hash, roles, email_verified, created_at from users `

// ByEmail returns the account with email (compared case-insensitively);
// errs.NotFound when none.
func (s *Store) ByEmail(ctx context.Context, email string) (User, error) {
	return s.find(ctx, "by email", selectUser+`where lower(email) = lower($1)`, email)
}

// ByID returns the account with id; errs.NotFound when none.
func (s *Store) ByID(ctx context.Context, id string) (User, error) {
	return s.find(ctx, "by id", selectUser+`where id = $1`, id)
}

func (s *Store) find(ctx context.Context, what, query string, args ...any) (User, error) {
	var u User
	err := s.pool.QueryRow(ctx, query, args...).Scan(&u.ID, &u.Email, &u.PasswordHash, &u.Roles, &u.EmailVerified, &u.CreatedAt)
	if pgdb.IsNotFound(err) {
		return User{}, errs.E(errs.NotFound, "no such account")
	}
	if err != nil {
		return User{}, pgdb.Err(err, "account", "users: find "+what)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

// AdminResult is what EnsureAdmin did.
type AdminResult int

// The results of EnsureAdmin.
const (
	// AdminCreated: there was no account with the email; it was created
	// as an admin with the configured password.
	AdminCreated AdminResult = iota + 1
	// AdminExisting: the account was an admin already; nothing changed.
	AdminExisting
	// AdminPromoted: the account existed without the role admin and its
	// password is the configured one; the role was added.
	AdminPromoted
	// AdminRefused: the account exists and its password is not the
	// configured one: someone else may have registered the address first,
	// so it is not promoted.
	AdminRefused
)

// EnsureAdmin makes sure the account with email is an admin. It creates
// the account with hash and the roles user and admin when there is none
// (replicas running it at once make one); the admin's address counts as
// verified (it is configured, not signed up). An existing account that is not
// an admin yet is promoted only when isAdminPassword accepts its password
// hash (whoever registered it knows the configured admin password), in a
// statement that promotes it only if that hash is still its password;
// otherwise EnsureAdmin changes nothing and reports AdminRefused. The
// account's password is never changed. It returns the account's id.
func (s *Store) EnsureAdmin(ctx context.Context, email string, hash []byte, isAdminPassword func(hash []byte) bool) (AdminResult, string, error) {
	id := NewID()
	var got string
	err := s.pool.QueryRow(ctx, `
		insert into users (id, email, password_hash, roles, email_verified, created_at)
		values ($1, $2, $3, array[$4::text, $5::text], true, $6)
		on conflict ((lower(email))) do nothing
		returning id`,
		id, email, hash, RoleUser, RoleAdmin, time.Now().UTC().Truncate(time.Microsecond)).Scan(&got)
	if err == nil {
		return AdminCreated, got, nil
	}
	if !pgdb.IsNotFound(err) {
		return 0, "", pgdb.Err(err, "account", "users: ensure admin")
	}
	u, err := s.ByEmail(ctx, email)
	if err != nil {
		return 0, "", err
	}
	if slices.Contains(u.Roles, RoleAdmin) {
		return AdminExisting, u.ID, nil
	}
	if !isAdminPassword(u.PasswordHash) {
		return AdminRefused, u.ID, nil
	}
	tag, err := s.pool.Exec(ctx, `
		update users set roles = case when $3::text = any(roles) then roles else array_append(roles, $3::text) end,
			email_verified = true
		where id = $1 and password_hash = $2`, u.ID, u.PasswordHash, RoleAdmin)
	if err != nil {
		return 0, "", pgdb.Err(err, "account", "users: promote admin")
	}
	if tag.RowsAffected() == 0 { // its password changed meanwhile: not proven any more
		return AdminRefused, u.ID, nil
	}
	return AdminPromoted, u.ID, nil
}

// GrantRole gives the account id role, once (granting a role it has
// changes nothing), in one statement, and returns the account;
// errs.NotFound when there is none.
func (s *Store) GrantRole(ctx context.Context, id, role string) (User, error) {
	return s.find(ctx, "grant role", `
		update users set roles = case when $2::text = any(roles) then roles else array_append(roles, $2::text) end
		where id = $1
		returning id, email, password_hash, roles, email_verified, created_at`, id, role)
}

// RevokeRole takes role from the account id (revoking a role it lacks
// changes nothing) and returns the account; errs.NotFound when there is
// none.
func (s *Store) RevokeRole(ctx context.Context, id, role string) (User, error) {
	return s.find(ctx, "revoke role", `
		update users set roles = array_remove(roles, $2::text)
		where id = $1
		returning id, email, password_hash, roles, email_verified, created_at`, id, role)
}
