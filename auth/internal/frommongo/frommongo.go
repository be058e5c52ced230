// Package frommongo copies auth's records from the MongoDB of a stack made
// before auth moved to PostgreSQL ("auth migrate-from-mongo"): the users
// and the signing keys, keeping ids, password hashes, roles, creation
// times and key seeds, so accounts log in with their passwords and tokens
// signed before still verify. Service clients were never in MongoDB (they
// come from SERVICE_CLIENTS, written to PostgreSQL at start).
//
// The copy is idempotent: rows are inserted with "on conflict do nothing",
// so running it again copies nothing twice. The document shapes below are
// the ones the MongoDB code wrote; they live here only.
package frommongo

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The MongoDB collections auth wrote.
const (
	UsersCollection = "users"
	KeysCollection  = "signing_keys"
)

// UserDoc is a document of the users collection, as users.Store wrote it.
type UserDoc struct {
	ID           bson.RawValue `bson:"_id"` // a hex string (an ObjectID is accepted too)
	Email        string        `bson:"email"`
	PasswordHash []byte        `bson:"password_hash"`
	Roles        []string      `bson:"roles"`
	CreatedAt    time.Time     `bson:"created_at"`
}

// KeyDoc is a document of the signing_keys collection, as keys.Manager
// wrote it.
type KeyDoc struct {
	ID        string    `bson:"_id"` // the kid
	Seq       int64     `bson:"seq"`
	Seed      []byte    `bson:"seed"`
	CreatedAt time.Time `bson:"created_at"`
}

// Counts says what a copy did.
type Counts struct {
	Users        int // copied now
	UsersPresent int // copied before (same id)
	// UsersTaken are the ids of accounts not copied because another
	// account of PostgreSQL has their email.
	UsersTaken  []string
	Keys        int // copied now
	KeysPresent int // copied before (same kid)
	// KeysRenumbered says the copied keys were numbered below the keys
	// PostgreSQL had already (auth had started on it and made its own), so
	// that key stays current and the copied ones verify as superseded.
	KeysRenumbered bool
}

// batchSize is how many users go to PostgreSQL in one round trip.
const batchSize = 500

// Copy copies the users and signing keys of db into pool's database, whose
// schema is migrated.
func Copy(ctx context.Context, db *mongo.Database, pool *pgxpool.Pool) (Counts, error) {
	var c Counts
	if err := copyUsers(ctx, db, pool, &c); err != nil {
		return c, err
	}
	if err := copyKeys(ctx, db, pool, &c); err != nil {
		return c, err
	}
	return c, nil
}

func copyUsers(ctx context.Context, db *mongo.Database, pool *pgxpool.Pool, c *Counts) error {
	cur, err := db.Collection(UsersCollection).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return fmt.Errorf("mongodb: find users: %w", err)
	}
	defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
	var batch []UserDoc
	for cur.Next(ctx) {
		var u UserDoc
		if err := cur.Decode(&u); err != nil {
			return fmt.Errorf("mongodb: decode user: %w", err)
		}
		batch = append(batch, u)
		if len(batch) == batchSize {
			if err := insertUsers(ctx, pool, batch, c); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("mongodb: read users: %w", err)
	}
	return insertUsers(ctx, pool, batch, c)
}

// userID returns the id of u as auth used it (the JWT's sub).
func userID(u UserDoc) (string, error) {
	if s, ok := u.ID.StringValueOK(); ok && s != "" {
		return s, nil
	}
	if oid, ok := u.ID.ObjectIDOK(); ok {
		return oid.Hex(), nil
	}
	return "", fmt.Errorf("mongodb: user %s has an _id of type %s", u.Email, u.ID.Type)
}

func insertUsers(ctx context.Context, pool *pgxpool.Pool, us []UserDoc, c *Counts) error {
	if len(us) == 0 {
		return nil
	}
	ids := make([]string, len(us))
	b := &pgx.Batch{}
	for i, u := range us {
		id, err := userID(u)
		if err != nil {
			return err
		}
		if u.Email == "" || len(u.PasswordHash) == 0 {
			return fmt.Errorf("mongodb: user %s has no email or password hash", id)
		}
		roles := u.Roles
		if roles == nil {
			roles = []string{}
		}
		ids[i] = id
		b.Queue(`insert into users (id, email, password_hash, roles, email_verified, created_at) values ($1, $2, $3, $4, true, $5)
			on conflict do nothing`, id, u.Email, u.PasswordHash, roles, u.CreatedAt.UTC())
	}
	var notCopied []string
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		res := tx.SendBatch(ctx, b)
		for _, id := range ids {
			tag, err := res.Exec()
			if err != nil {
				_ = res.Close()
				return fmt.Errorf("insert user %s: %w", id, err)
			}
			if tag.RowsAffected() == 1 {
				c.Users++
			} else {
				notCopied = append(notCopied, id)
			}
		}
		return res.Close()
	})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if len(notCopied) == 0 {
		return nil
	}
	// Not inserted: the same id is there (copied before), or another
	// account has the email.
	present := map[string]bool{}
	rows, err := pool.Query(ctx, `select id from users where id = any($1)`, notCopied)
	if err != nil {
		return fmt.Errorf("postgres: users present: %w", err)
	}
	ps, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("postgres: users present: %w", err)
	}
	for _, id := range ps {
		present[id] = true
	}
	for _, id := range notCopied {
		if present[id] {
			c.UsersPresent++
		} else {
			c.UsersTaken = append(c.UsersTaken, id)
		}
	}
	return nil
}

func copyKeys(ctx context.Context, db *mongo.Database, pool *pgxpool.Pool, c *Counts) error {
	cur, err := db.Collection(KeysCollection).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}))
	if err != nil {
		return fmt.Errorf("mongodb: find signing keys: %w", err)
	}
	var docs []KeyDoc
	if err := cur.All(ctx, &docs); err != nil {
		return fmt.Errorf("mongodb: read signing keys: %w", err)
	}
	for _, k := range docs {
		if len(k.Seed) != ed25519.SeedSize || k.ID == "" {
			return fmt.Errorf("mongodb: signing key %q (seq %d) has a %d-byte seed", k.ID, k.Seq, len(k.Seed))
		}
	}
	if len(docs) == 0 {
		return nil
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// No rotation between reading the keys and inserting.
		if _, err := tx.Exec(ctx, `lock table signing_keys in exclusive mode`); err != nil {
			return fmt.Errorf("lock signing_keys: %w", err)
		}
		rows, err := tx.Query(ctx, `select id, seq from signing_keys`)
		if err != nil {
			return fmt.Errorf("read signing keys: %w", err)
		}
		have := map[string]bool{}
		var minSeq int64
		first := true
		for rows.Next() {
			var id string
			var seq int64
			if err := rows.Scan(&id, &seq); err != nil {
				rows.Close()
				return fmt.Errorf("read signing keys: %w", err)
			}
			have[id] = true
			if first || seq < minSeq {
				minSeq, first = seq, false
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read signing keys: %w", err)
		}
		var todo []KeyDoc
		for _, k := range docs {
			if have[k.ID] {
				c.KeysPresent++
			} else {
				todo = append(todo, k)
			}
		}
		if len(todo) == 0 {
			return nil
		}
		// PostgreSQL has keys of its own (auth started on it before this
		// copy): number the copied keys just below them, in their order.
		var shift int64
		if maxTodo := todo[len(todo)-1].Seq; len(have) > 0 && maxTodo >= minSeq {
			shift = minSeq - 1 - maxTodo
			c.KeysRenumbered = true
		}
		for _, k := range todo {
			tag, err := tx.Exec(ctx, `insert into signing_keys (id, seq, seed, created_at) values ($1, $2, $3, $4)
				on conflict do nothing`, k.ID, k.Seq+shift, k.Seed, k.CreatedAt.UTC())
			if err != nil {
				return fmt.Errorf("insert signing key %s: %w", k.ID, err)
			}
			if tag.RowsAffected() != 1 {
				return errors.New("insert signing key " + k.ID + ": its seq is taken")
			}
			c.Keys++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}
