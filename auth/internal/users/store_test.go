package users_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/auth/internal/schema"
	"github.com/audiomill/audiomill/auth/internal/users"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/pgdb"
	"github.com/audiomill/audiomill/platform/testenv"
)

// testStore returns a Store on a fresh database with auth's schema.
func testStore(t *testing.T) (*users.Store, *pgxpool.Pool) {
	t.Helper()
	pool := testenv.NewPool(t, testenv.NewDatabase(t), schema.Migrations())
	return users.NewStore(pool), pool
}

func TestStoreCreateAndFind(t *testing.T) {
	s, _ := testStore(t)
	ctx := testenv.Context(t, 30*time.Second)
	u := users.User{Email: "ada@example.com", PasswordHash: []byte("hash"), Roles: []string{users.RoleUser}}
	if err := s.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	if len(u.ID) != 24 || u.CreatedAt.IsZero() {
		t.Fatalf("created %+v", u)
	}
	for name, find := range map[string]func() (users.User, error){
		"ByEmail":          func() (users.User, error) { return s.ByEmail(ctx, "ada@example.com") },
		"ByEmailOtherCase": func() (users.User, error) { return s.ByEmail(ctx, "Ada@Example.COM") },
		"ByID":             func() (users.User, error) { return s.ByID(ctx, u.ID) },
	} {
		t.Run(name, func(t *testing.T) {
			got, err := find()
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != u.ID || got.Email != u.Email || string(got.PasswordHash) != "hash" ||
				!slices.Equal(got.Roles, u.Roles) || !got.CreatedAt.Equal(u.CreatedAt) || got.CreatedAt.Location() != time.UTC {
				t.Fatalf("found %+v, want %+v", got, u)
			}
		})
	}
	t.Run("ErrNotFound", func(t *testing.T) {
		if _, err := s.ByEmail(ctx, "nobody@example.com"); errs.CodeOf(err) != errs.NotFound {
			t.Fatalf("by email: %v", err)
		}
		if _, err := s.ByID(ctx, "000000000000000000000000"); errs.CodeOf(err) != errs.NotFound {
			t.Fatalf("by id: %v", err)
		}
	})
}

// The database refuses a second account with the same email in another
// case, even from a writer that did not normalise it.
func TestStoreEmailUniqueWhateverItsCase(t *testing.T) {
	s, pool := testStore(t)
	ctx := testenv.Context(t, 30*time.Second)
	if err := s.Create(ctx, &users.User{Email: "ada@example.com", PasswordHash: []byte("h")}); err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"ada@example.com", "ADA@example.com", "Ada@Example.Com"} {
		t.Run("ErrTaken_"+email, func(t *testing.T) {
			err := s.Create(ctx, &users.User{Email: email, PasswordHash: []byte("h")})
			if errs.CodeOf(err) != errs.Conflict {
				t.Fatalf("second account %q: %v; want conflict", email, err)
			}
		})
	}
	var n int
	if err := pool.QueryRow(ctx, "select count(*) from users").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d accounts (%v), want 1", n, err)
	}
}

func TestStoreEnsureAdmin(t *testing.T) {
	s, pool := testStore(t)
	ctx := testenv.Context(t, 30*time.Second)
	never := func([]byte) bool { return false }
	t.Run("CreatesOnce", func(t *testing.T) {
		// Replicas bootstrapping at once make one account.
		const replicas = 4
		created := make([]bool, replicas)
		errList := make([]error, replicas)
		var wg sync.WaitGroup
		for i := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var res users.AdminResult
				res, _, errList[i] = s.EnsureAdmin(ctx, "root@example.com", []byte("first"), never)
				created[i] = res == users.AdminCreated
			}()
		}
		wg.Wait()
		n := 0
		for i := range replicas {
			if errList[i] != nil {
				t.Fatal(errList[i])
			}
			if created[i] {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d replicas report they created the admin", n)
		}
		u, err := s.ByEmail(ctx, "root@example.com")
		if err != nil || !slices.Equal(u.Roles, []string{users.RoleUser, users.RoleAdmin}) {
			t.Fatalf("admin %+v %v", u, err)
		}
	})
	// An account registered first with the admin's email by someone who
	// does not know the admin password is not promoted (it used to be).
	t.Run("RefusesSomeoneElsesAccount", func(t *testing.T) {
		u := users.User{Email: "mallory@example.com", PasswordHash: []byte("mallory's"), Roles: []string{users.RoleUser}}
		if err := s.Create(ctx, &u); err != nil {
			t.Fatal(err)
		}
		res, id, err := s.EnsureAdmin(ctx, "mallory@example.com", []byte("admin's"), never)
		if err != nil || res != users.AdminRefused || id != u.ID {
			t.Fatalf("result %v %s %v, want refused", res, id, err)
		}
		got, err := s.ByID(ctx, u.ID)
		if err != nil || string(got.PasswordHash) != "mallory's" || !slices.Equal(got.Roles, []string{users.RoleUser}) {
			t.Fatalf("account %+v %v; want it unchanged", got, err)
		}
	})
	t.Run("PromotesWithAdminPasswordKeepingIt", func(t *testing.T) {
		u := users.User{Email: "grace@example.com", PasswordHash: []byte("mine"), Roles: []string{users.RoleUser}}
		if err := s.Create(ctx, &u); err != nil {
			t.Fatal(err)
		}
		isMine := func(h []byte) bool { return string(h) == "mine" }
		want := []users.AdminResult{users.AdminPromoted, users.AdminExisting, users.AdminExisting}
		for i := range want {
			res, _, err := s.EnsureAdmin(ctx, "grace@example.com", []byte("other"), isMine)
			if err != nil || res != want[i] {
				t.Fatalf("call %d: %v, %v; want %v", i+1, res, err, want[i])
			}
		}
		got, err := s.ByID(ctx, u.ID)
		if err != nil || string(got.PasswordHash) != "mine" || !slices.Equal(got.Roles, []string{users.RoleUser, users.RoleAdmin}) {
			t.Fatalf("promoted %+v %v; want password kept and admin added once", got, err)
		}
	})
	var n int
	if err := pool.QueryRow(ctx, "select count(*) from users").Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d accounts (%v), want 3", n, err)
	}
}

// A stopped database is errs.Unavailable (503), not an internal error.
func TestStoreDatabaseUnreachable(t *testing.T) {
	pool, err := pgdb.Connect(pgdb.Config{URL: "postgres://nobody@127.0.0.1:1/none", ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := users.NewStore(pool)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.ByEmail(ctx, "a@example.com"); errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("by email: %v; want unavailable", err)
	}
	if err := s.Create(ctx, &users.User{Email: "a@example.com", PasswordHash: []byte("h")}); errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("create: %v; want unavailable", err)
	}
}

// Granting and revoking a role are idempotent, and concurrent grants add
// it once.
func TestStoreGrantRevokeRole(t *testing.T) {
	s, _ := testStore(t)
	ctx := testenv.Context(t, 30*time.Second)
	u := users.User{Email: "grace@example.com", PasswordHash: []byte("hash"), Roles: []string{users.RoleUser}}
	if err := s.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := s.GrantRole(ctx, u.ID, users.RoleStorage); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := s.GrantRole(ctx, u.ID, users.RoleStorage)
	if err != nil || !slices.Equal(got.Roles, []string{users.RoleUser, users.RoleStorage}) || got.Email != u.Email {
		t.Fatalf("granted = %+v, %v", got, err)
	}
	for range 2 {
		got, err = s.RevokeRole(ctx, u.ID, users.RoleStorage)
		if err != nil || !slices.Equal(got.Roles, []string{users.RoleUser}) {
			t.Fatalf("revoked = %+v, %v", got, err)
		}
	}
	if found, err := s.ByID(ctx, u.ID); err != nil || !slices.Equal(found.Roles, []string{users.RoleUser}) {
		t.Fatalf("stored = %+v, %v", found, err)
	}
	for name, change := range map[string]func(context.Context, string, string) (users.User, error){"Grant": s.GrantRole, "Revoke": s.RevokeRole} {
		if _, err := change(ctx, "000000000000000000000000", users.RoleStorage); errs.CodeOf(err) != errs.NotFound {
			t.Fatalf("%s on an unknown account: %v, want not_found", name, err)
		}
	}
}
