package app_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/crypto/bcrypt"

	"github.com/audiomill/audiomill/auth/internal/app"
	"github.com/audiomill/audiomill/auth/internal/authtest"
	"github.com/audiomill/audiomill/auth/internal/keys"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/service"
	"github.com/audiomill/audiomill/platform/testenv"
)

// oldUser and oldKey are the documents the MongoDB code wrote
// (users.Store.Create, keys.Manager.insert before PostgreSQL).
type oldUser struct {
	ID           string    `bson:"_id"`
	Email        string    `bson:"email"`
	PasswordHash []byte    `bson:"password_hash"`
	Roles        []string  `bson:"roles"`
	CreatedAt    time.Time `bson:"created_at"`
}

type oldKey struct {
	ID        string    `bson:"_id"`
	Seq       int64     `bson:"seq"`
	Seed      []byte    `bson:"seed"`
	CreatedAt time.Time `bson:"created_at"`
}

// oldStack is the MongoDB database of a stack made before PostgreSQL.
type oldStack struct {
	uri, db string
	users   []oldUser
	keys    []oldKey // by seq; the last is current
}

// newOldStack writes two accounts and two signing keys into FerretDB as
// the MongoDB code did; the database is dropped when the test ends.
func newOldStack(t *testing.T) *oldStack {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	s := &oldStack{uri: testenv.MongoURI(t), db: fmt.Sprintf("audiomill_auth_old_%d", time.Now().UnixNano())}
	mc, err := mongo.Connect(options.Client().ApplyURI(s.uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = mc.Database(s.db).Drop(ctx)
		_ = mc.Disconnect(ctx)
	})
	hash, err := bcrypt.GenerateFromPassword([]byte(password), 10)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	s.users = []oldUser{
		{ID: bson.NewObjectID().Hex(), Email: "ada@example.com", PasswordHash: hash, Roles: []string{"user"}, CreatedAt: now.Add(-72 * time.Hour)},
		{ID: bson.NewObjectID().Hex(), Email: "root@example.com", PasswordHash: hash, Roles: []string{"user", "admin"}, CreatedAt: now.Add(-96 * time.Hour)},
	}
	for i, age := range []time.Duration{48 * time.Hour, time.Hour} {
		seed := make([]byte, ed25519.SeedSize)
		_, _ = rand.Read(seed)
		idb := make([]byte, 9)
		_, _ = rand.Read(idb)
		s.keys = append(s.keys, oldKey{ID: base64.RawURLEncoding.EncodeToString(idb), Seq: int64(i + 1), Seed: seed, CreatedAt: now.Add(-age)})
	}
	db := mc.Database(s.db)
	for _, u := range s.users {
		if _, err := db.Collection("users").InsertOne(ctx, u); err != nil {
			t.Fatalf("FerretDB (MONGO_URI): %v", err)
		}
	}
	for _, k := range s.keys {
		if _, err := db.Collection("signing_keys").InsertOne(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// migrate runs "auth migrate-from-mongo" from s into the database at url
// and returns what it printed.
func (s *oldStack) migrate(t *testing.T, url string) string {
	t.Helper()
	env := map[string]string{"MONGO_URI": s.uri, "MONGO_DATABASE": s.db, "DATABASE_URL": url}
	var out, errOut strings.Builder
	if code := app.MigrateFromMongo(testenv.Context(t, 60*time.Second), func(k string) string { return env[k] }, &out, &errOut); code != 0 {
		t.Fatalf("migrate-from-mongo exit %d: %s\n%s", code, errOut.String(), out.String())
	}
	return out.String()
}

// token signs an access token for u with k, as the MongoDB-era auth did.
func (k oldKey) token(t *testing.T, u oldUser) string {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, authn.Claims{
		Email: u.Email, Roles: u.Roles,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: authn.DefaultIssuer, Subject: u.ID, Audience: jwt.ClaimStrings{authn.DefaultAudience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Minute)), ID: fmt.Sprintf("old-%d", now.UnixNano()),
		},
	})
	tok.Header["kid"] = k.ID
	raw, err := tok.SignedString(ed25519.NewKeyFromSeed(k.Seed))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func pgPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// checkCopied checks that PostgreSQL holds exactly the old users and keys
// (seqs shifted by shift), with their ids, hashes, roles and times.
func (s *oldStack) checkCopied(t *testing.T, pool *pgxpool.Pool, shift int64) {
	t.Helper()
	ctx := testenv.Context(t, 10*time.Second)
	for _, u := range s.users {
		var email string
		var hash []byte
		var roles []string
		var created time.Time
		err := pool.QueryRow(ctx, "select email, password_hash, roles, created_at from users where id = $1", u.ID).Scan(&email, &hash, &roles, &created)
		if err != nil {
			t.Fatalf("user %s: %v", u.ID, err)
		}
		if email != u.Email || string(hash) != string(u.PasswordHash) || !slices.Equal(roles, u.Roles) || !created.Equal(u.CreatedAt) {
			t.Fatalf("user %s copied as %s %v %v", u.ID, email, roles, created)
		}
	}
	for _, k := range s.keys {
		var seq int64
		var seed []byte
		var created time.Time
		if err := pool.QueryRow(ctx, "select seq, seed, created_at from signing_keys where id = $1", k.ID).Scan(&seq, &seed, &created); err != nil {
			t.Fatalf("key %s: %v", k.ID, err)
		}
		if seq != k.Seq+shift || string(seed) != string(k.Seed) || !created.Equal(k.CreatedAt) {
			t.Fatalf("key %s copied as seq %d (want %d), created %v", k.ID, seq, k.Seq+shift, created)
		}
	}
}

func count(t *testing.T, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "select count(*) from "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrateFromMongo(t *testing.T) {
	old := newOldStack(t)
	url := testenv.NewDatabase(t)
	out := old.migrate(t, url)
	if !strings.Contains(out, "users: 2 copied, 0 already there") || !strings.Contains(out, "signing keys: 2 copied, 0 already there") {
		t.Fatalf("first run printed:\n%s", out)
	}
	pool := pgPool(t, url)
	old.checkCopied(t, pool, 0)

	t.Run("SecondRunCopiesNothing", func(t *testing.T) {
		out := old.migrate(t, url)
		if !strings.Contains(out, "users: 0 copied, 2 already there") || !strings.Contains(out, "signing keys: 0 copied, 2 already there") {
			t.Fatalf("second run printed:\n%s", out)
		}
		if count(t, pool, "users") != 2 || count(t, pool, "signing_keys") != 2 {
			t.Fatal("the second run added rows")
		}
		old.checkCopied(t, pool, 0)
	})

	s := authtest.Start(t, map[string]string{"DATABASE_URL": url})
	t.Run("OldPasswordLogsIn", func(t *testing.T) {
		tok := s.Login(t, "ada@example.com", password)
		hdr, claims := unverifiedClaims(t, tok.AccessToken)
		if claims.Subject != old.users[0].ID {
			t.Fatalf("sub %s, want the old id %s", claims.Subject, old.users[0].ID)
		}
		if hdr["kid"] != old.keys[1].ID {
			t.Fatalf("signed by %v, want the old current key %s", hdr["kid"], old.keys[1].ID)
		}
		if s.Login(t, "root@example.com", password).AccessToken == "" {
			t.Fatal("no token for root")
		}
	})
	t.Run("TokensSignedBeforeVerify", func(t *testing.T) {
		for i, k := range old.keys {
			if r := s.Do(t, "POST", "/v1/validate", nil, "Authorization", "Bearer "+k.token(t, old.users[0])); r.Status != 200 {
				t.Fatalf("token signed by old key seq %d: %d %s", i+1, r.Status, r.Body)
			}
		}
	})
	t.Run("NoNewKey", func(t *testing.T) {
		if n := count(t, pool, "signing_keys"); n != 2 {
			t.Fatalf("%d keys: auth made a key although it had the old ones", n)
		}
	})
	t.Run("CopiedSeedsSealedAtStart", func(t *testing.T) {
		var plain int
		if err := pool.QueryRow(context.Background(), "select count(*) from signing_keys where seed is not null").Scan(&plain); err != nil || plain != 0 {
			t.Fatalf("%d plaintext seeds after auth started (%v), want 0", plain, err)
		}
	})
}

// The copy runs after auth already started on PostgreSQL (and made its own
// key and admin): the copied keys go below auth's key, which stays current,
// and tokens of both verify.
func TestMigrateFromMongoAfterAuthStarted(t *testing.T) {
	old := newOldStack(t)
	url := testenv.NewDatabase(t)
	s := authtest.Start(t, map[string]string{"DATABASE_URL": url, "ADMIN_EMAIL": "root@example.com", "ADMIN_PASSWORD": "a new admin password"})
	current := jwksOf(t, s).Keys[0].KID
	out := old.migrate(t, url)
	if !strings.Contains(out, "users: 1 copied, 0 already there, 1 not copied because another account has their email (ids "+old.users[1].ID+")") ||
		!strings.Contains(out, "signing keys: 2 copied, 0 already there (numbered below") {
		t.Fatalf("printed:\n%s", out)
	}
	if out := old.migrate(t, url); !strings.Contains(out, "users: 0 copied, 1 already there, 1 not copied") || !strings.Contains(out, "signing keys: 0 copied, 2 already there\n") {
		t.Fatalf("second run printed:\n%s", out)
	}
	pool := pgPool(t, url)
	var seqs []int64
	rows, err := pool.Query(context.Background(), "select seq from signing_keys order by seq")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var q int64
		_ = rows.Scan(&q)
		seqs = append(seqs, q)
	}
	if !slices.Equal(seqs, []int64{-1, 0, 1}) {
		t.Fatalf("seqs %v, want the old keys at -1 0 below auth's 1", seqs)
	}
	if tok := s.Login(t, "ada@example.com", password); tok.AccessToken == "" {
		t.Fatal("old account cannot log in")
	} else if hdr, _ := unverifiedClaims(t, tok.AccessToken); hdr["kid"] != current {
		t.Fatalf("new tokens signed by %v, want auth's own current key %s", hdr["kid"], current)
	}
	if s.Login(t, "root@example.com", "a new admin password").AccessToken == "" {
		t.Fatal("the admin auth made cannot log in")
	}
	// The old current key is the previous one now: its tokens verify.
	if r := s.Do(t, "POST", "/v1/validate", nil, "Authorization", "Bearer "+old.keys[1].token(t, old.users[0])); r.Status != 200 {
		t.Fatalf("token signed by the old current key: %d %s", r.Status, r.Body)
	}
}

func TestMigrateFromMongoBadInput(t *testing.T) {
	for name, tt := range map[string]struct {
		env map[string]string
		bad string
	}{
		"ErrDatabaseURL": {map[string]string{"DATABASE_URL": "mysql://u:hunter2secret@127.0.0.1/x"}, "DATABASE_URL"},
		"ErrMongoURI":    {map[string]string{"MONGO_URI": "http://127.0.0.1:27017"}, "MONGO_URI"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := app.MigrateFromMongo(context.Background(), func(k string) string { return tt.env[k] }, &out, &errOut)
			if code != 2 || !strings.Contains(errOut.String(), tt.bad) || strings.Contains(errOut.String(), "hunter2secret") {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
		})
	}
}

// A DATABASE_URL that is not a PostgreSQL URL stops auth at start with a
// message naming the variable (and not its password).
// TestKEKStopsStart: no key-encryption key, a malformed one, or one that
// does not open the signing keys in the database each stop start with an
// error naming the variable, and no key is made in place of the sealed ones.
func TestKEKStopsStart(t *testing.T) {
	url := testenv.NewDatabase(t)
	s := authtest.Start(t, map[string]string{"DATABASE_URL": url})
	kid := jwksOf(t, s).Keys[0].KID
	dir := t.TempDir()
	for name, tt := range map[string]struct {
		env  map[string]string
		want string
	}{
		"ErrMissing":   {map[string]string{}, "AUTH_KEK_FILE"},
		"ErrMalformed": {map[string]string{"AUTH_KEK": "hunter2-not-a-key"}, "AUTH_KEK"},
		"ErrBoth":      {map[string]string{"AUTH_KEK": authtest.KEKFor(url), "AUTH_KEK_FILE": dir + "/kek"}, "AUTH_KEK_FILE"},
		"ErrNoFile":    {map[string]string{"AUTH_KEK_FILE": dir + "/absent"}, "AUTH_KEK_FILE"},
		"ErrWrongKey":  {map[string]string{"AUTH_KEK": keys.GenerateKEK()}, "key-encryption key"},
	} {
		t.Run(name, func(t *testing.T) {
			env := map[string]string{"PORT": "0", "DATABASE_URL": url, "CONSUL_HTTP_ADDR": "127.0.0.1:1",
				"REDIS_ADDR": testenv.RedisAddr(t), "SHUTDOWN_DELAY": "0s"}
			for k, v := range tt.env {
				env[k] = v
			}
			logs := &testenv.LogBuffer{}
			m := service.NewMain(app.Spec("test"), func(k string) string { return env[k] }, logs)
			err := m.Open(testenv.Context(t, 30*time.Second))
			if err == nil {
				_ = m.Close()
				t.Fatalf("auth started:\n%s", logs.String())
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error()+logs.String(), "hunter2") {
				t.Fatalf("error %q, want it to name %s (logs %s)", err, tt.want, logs.String())
			}
		})
	}
	pool := pgPool(t, url)
	var n int
	var current string
	if err := pool.QueryRow(context.Background(), "select count(*), max(id) from signing_keys").Scan(&n, &current); err != nil || n != 1 || current != kid {
		t.Fatalf("%d keys, %s (%v); want only %s", n, current, err, kid)
	}
	t.Run("File", func(t *testing.T) {
		path := dir + "/kek"
		if err := os.WriteFile(path, []byte(authtest.KEKFor(url)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s := authtest.Start(t, map[string]string{"DATABASE_URL": url, "AUTH_KEK": "", "AUTH_KEK_FILE": path})
		if got := jwksOf(t, s).Keys[0].KID; got != kid {
			t.Fatalf("current key %s, want %s", got, kid)
		}
	})
}

func TestBadDatabaseURLStopsStart(t *testing.T) {
	for name, url := range map[string]string{
		"ErrScheme":  "mysql://auth:hunter2secret@127.0.0.1:3306/auth",
		"ErrMongo":   "mongodb://127.0.0.1:27017/audiomill_auth",
		"ErrPort":    "postgres://auth:hunter2secret@127.0.0.1:port/auth",
		"ErrOption":  "postgres://auth:hunter2secret@127.0.0.1/auth?sslmode=sometimes",
		"ErrGarbage": "::not a url::",
	} {
		t.Run(name, func(t *testing.T) {
			env := map[string]string{"PORT": "0", "DATABASE_URL": url, "CONSUL_HTTP_ADDR": "127.0.0.1:1"}
			logs := &testenv.LogBuffer{}
			m := service.NewMain(app.Spec("test"), func(k string) string { return env[k] }, logs)
			err := m.Open(context.Background())
			if err == nil {
				_ = m.Close()
				t.Fatal("auth started")
			}
			if !strings.Contains(err.Error(), "DATABASE_URL") || strings.Contains(err.Error()+logs.String(), "hunter2secret") {
				t.Fatalf("error %q (logs %s)", err, logs.String())
			}
		})
	}
}

// A migration that fails (here: a table of the same name exists already)
// leaves auth running but not ready, naming the schema; once the cause is
// removed auth migrates and becomes ready by itself.
func TestFailedMigrationLeavesAuthNotReady(t *testing.T) {
	url := testenv.NewDatabase(t)
	pool := pgPool(t, url)
	ctx := testenv.Context(t, 60*time.Second)
	if _, err := pool.Exec(ctx, "create table users (x int)"); err != nil {
		t.Fatal(err)
	}
	s := authtest.Open(t, map[string]string{"DATABASE_URL": url})
	for range 3 {
		r := s.Do(t, "GET", "/readyz", nil)
		var body httpapi.ReadyBody
		r.JSON(t, &body)
		if r.Status != 503 || body.Checks["schema"] != "failed" || body.Checks["postgres"] != "ok" {
			t.Fatalf("readyz %d %s", r.Status, r.Body)
		}
		time.Sleep(time.Second)
	}
	var exists bool
	if err := pool.QueryRow(ctx, "select to_regclass('signing_keys') is not null or to_regclass('users_email_lower_key') is not null").Scan(&exists); err != nil || exists {
		t.Fatalf("objects of the failed migration exist (%v)", err)
	}
	if _, err := pool.Exec(ctx, "drop table users"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return s.Readyz(t) == 200 }, "auth did not recover:\n%s", s.Logs.String())
	s.Signup(t, "a@example.com", password)
}
