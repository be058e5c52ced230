// Package users keeps auth's accounts in MongoDB: a unique, normalised email,
// a bcrypt password hash and roles.
package users

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/platform/errs"
)

// Roles.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
)

// Limits on credentials.
const (
	MaxEmailLen    = 254
	MinPasswordLen = 8  // characters
	MaxPasswordLen = 72 // bytes: bcrypt ignores anything longer, so it is refused
)

// Collection is the MongoDB collection of accounts.
const Collection = "users"

// User is one account.
type User struct {
	ID           string    `bson:"_id"`
	Email        string    `bson:"email"`
	PasswordHash []byte    `bson:"password_hash"`
	Roles        []string  `bson:"roles"`
	CreatedAt    time.Time `bson:"created_at"`
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

// Store is the accounts collection.
type Store struct {
	coll *mongo.Collection
}

// NewStore returns the store in db. Call EnsureIndexes before use.
func NewStore(db *mongo.Database) *Store {
	return &Store{coll: db.Collection(Collection)}
}

// EnsureIndexes creates the unique email index when it is missing.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: "email", Value: 1}},
		Options: options.Index().SetUnique(true).SetName("email_unique"),
	})
	if err != nil {
		return fmt.Errorf("users: create email index: %w", err)
	}
	return nil
}

// Create inserts u, giving it an id and creation time when they are
// empty. A taken email is errs.Conflict.
func (s *Store) Create(ctx context.Context, u *User) error {
	if u.ID == "" {
		u.ID = bson.NewObjectID().Hex()
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now().UTC().Truncate(time.Millisecond)
	}
	if _, err := s.coll.InsertOne(ctx, u); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return errs.Wrap(err, errs.Conflict, "an account with this email already exists")
		}
		return fmt.Errorf("users: insert: %w", err)
	}
	return nil
}

// ByEmail returns the account with the normalised email; errs.NotFound when none.
func (s *Store) ByEmail(ctx context.Context, email string) (User, error) {
	return s.find(ctx, bson.D{{Key: "email", Value: email}})
}

// ByID returns the account with id; errs.NotFound when none.
func (s *Store) ByID(ctx context.Context, id string) (User, error) {
	return s.find(ctx, bson.D{{Key: "_id", Value: id}})
}

func (s *Store) find(ctx context.Context, filter bson.D) (User, error) {
	var u User
	err := s.coll.FindOne(ctx, filter).Decode(&u)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return User{}, errs.E(errs.NotFound, "no such account")
	}
	if err != nil {
		return User{}, fmt.Errorf("users: find: %w", err)
	}
	return u, nil
}

// EnsureAdmin makes the account with email an admin: it creates it with
// hash when it does not exist, and otherwise adds the admin role, leaving
// its password as it is. It reports whether it created the account.
func (s *Store) EnsureAdmin(ctx context.Context, email string, hash []byte) (bool, error) {
	err := s.Create(ctx, &User{Email: email, PasswordHash: hash, Roles: []string{RoleUser, RoleAdmin}})
	if err == nil {
		return true, nil
	}
	if errs.CodeOf(err) != errs.Conflict {
		return false, err
	}
	_, err = s.coll.UpdateOne(ctx, bson.D{{Key: "email", Value: email}},
		bson.D{{Key: "$addToSet", Value: bson.D{{Key: "roles", Value: RoleAdmin}}}})
	if err != nil {
		return false, fmt.Errorf("users: grant admin: %w", err)
	}
	return false, nil
}
