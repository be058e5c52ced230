package clients_test

import (
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/auth/internal/clients"
	"github.com/audiomill/audiomill/auth/internal/schema"
	"github.com/audiomill/audiomill/platform/testenv"
)

func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := testenv.NewPool(t, testenv.NewDatabase(t), schema.Migrations())
	return pool
}

func mustParse(t *testing.T, spec string) *clients.Registry {
	t.Helper()
	reg, err := clients.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestStoreSync(t *testing.T) {
	pool := testPool(t)
	ctx := testenv.Context(t, 30*time.Second)
	a := clients.NewStore(pool, nil)
	if _, ok := a.Authenticate("gateway", "gateway-secret-0123456789"); ok {
		t.Fatal("a client authenticates before the table is read")
	}
	res, err := a.Sync(ctx, mustParse(t, "gateway:gateway-secret-0123456789:storage:admin,converter:converter-secret-0123456789:storage:read"))
	if err != nil || res.Written != 2 || res.Removed != 0 {
		t.Fatalf("first sync: %+v %v", res, err)
	}
	if c, ok := a.Authenticate("gateway", "gateway-secret-0123456789"); !ok || !slices.Equal(c.Scopes, []string{"storage:admin"}) {
		t.Fatalf("gateway: %+v %v", c, ok)
	}

	t.Run("NoPlaintextStored", func(t *testing.T) {
		var sum []byte
		if err := pool.QueryRow(ctx, "select secret_sha256 from service_clients where id = 'gateway'").Scan(&sum); err != nil {
			t.Fatal(err)
		}
		want := sha256.Sum256([]byte("gateway-secret-0123456789"))
		if string(sum) != string(want[:]) {
			t.Fatal("the stored value is not the secret's SHA-256")
		}
	})

	t.Run("UnchangedWritesNothing", func(t *testing.T) {
		var before time.Time
		_ = pool.QueryRow(ctx, "select updated_at from service_clients where id = 'gateway'").Scan(&before)
		res, err := a.Sync(ctx, mustParse(t, "converter:converter-secret-0123456789:storage:read,gateway:gateway-secret-0123456789:storage:admin"))
		if err != nil || res.Written != 0 || res.Removed != 0 {
			t.Fatalf("same set again: %+v %v", res, err)
		}
		var after time.Time
		_ = pool.QueryRow(ctx, "select updated_at from service_clients where id = 'gateway'").Scan(&after)
		if !after.Equal(before) {
			t.Fatal("updated_at changed although nothing did")
		}
	})

	// Another replica starts with an edited configuration: the gateway's
	// secret changed, the converter is gone, the notifier is new.
	b := clients.NewStore(pool, nil)
	res, err = b.Sync(ctx, mustParse(t, "gateway:gateway-secret-rotated-012345:storage:admin storage:read,notifier:notifier-secret-0123456789:storage:read"))
	if err != nil || res.Written != 2 || res.Removed != 1 {
		t.Fatalf("edited sync: %+v %v", res, err)
	}
	t.Run("OtherReplicaSeesTheSetAfterLoad", func(t *testing.T) {
		if _, ok := a.Authenticate("converter", "converter-secret-0123456789"); !ok {
			t.Fatal("replica a dropped its copy before reloading")
		}
		if err := a.Load(ctx); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			id, secret string
			ok         bool
		}{
			{"gateway", "gateway-secret-rotated-012345", true},
			{"gateway", "gateway-secret-0123456789", false},
			{"converter", "converter-secret-0123456789", false},
			{"notifier", "notifier-secret-0123456789", true},
		} {
			for name, s := range map[string]*clients.Store{"a": a, "b": b} {
				if _, ok := s.Authenticate(tt.id, tt.secret); ok != tt.ok {
					t.Errorf("replica %s: %s authenticates = %v, want %v", name, tt.id, ok, tt.ok)
				}
			}
		}
		if a.Len() != 2 || b.Len() != 2 {
			t.Fatalf("replicas hold %d and %d clients, want 2", a.Len(), b.Len())
		}
	})
	t.Run("EmptyConfigurationRemovesAll", func(t *testing.T) {
		res, err := b.Sync(ctx, mustParse(t, ""))
		if err != nil || res.Removed != 2 || b.Len() != 0 {
			t.Fatalf("%+v %v, %d left", res, err, b.Len())
		}
	})
}
