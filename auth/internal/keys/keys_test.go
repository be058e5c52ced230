package keys_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/auth/internal/keys"
	"github.com/audiomill/audiomill/auth/internal/schema"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/testenv"
)

// testDB returns a pool on a fresh database with auth's schema.
func testDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := testenv.NewPool(t, testenv.NewDatabase(t), schema.Migrations())
	return pool
}

// clock is a settable time source.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *clock               { c := &clock{}; c.ns.Store(time.Now().UnixNano()); return c }
func kids(ks []authn.NamedKey) []string {
	out := []string{}
	for _, k := range ks {
		out = append(out, k.KID)
	}
	return out
}

func TestConcurrentReplicasShareOneKeyAndRotateOnce(t *testing.T) {
	db := testDB(t)
	ctx := testenv.Context(t, 30*time.Second)
	const replicas = 4
	ms := make([]*keys.Manager, replicas)
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for i := range ms {
		ms[i] = keys.NewManager(db, keys.Options{KEK: kek(t), Retain: time.Hour})
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = ms[i].Load(ctx) }()
	}
	wg.Wait()
	first, _ := ms[0].Current()
	for i, m := range ms {
		if errs[i] != nil {
			t.Fatalf("replica %d load: %v", i, errs[i])
		}
		if k, _ := m.Current(); k.ID != first.ID {
			t.Fatalf("replica %d signs with %s, replica 0 with %s", i, k.ID, first.ID)
		}
	}
	rotated := make([]keys.Key, replicas)
	for i, m := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); rotated[i], errs[i] = m.Rotate(ctx) }()
	}
	wg.Wait()
	seqs := map[int64]bool{}
	for i := range ms {
		if errs[i] != nil {
			t.Fatalf("replica %d rotate: %v", i, errs[i])
		}
		seqs[rotated[i].Seq] = true
	}
	// Each concurrent rotation made at most its own step; all agree after a reload.
	all, err := ms[0].Published(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 2 || all[len(all)-1].KID != first.ID {
		t.Fatalf("published %v: the first key must still be there", kids(all))
	}
	if len(all) > replicas+1 {
		t.Fatalf("%d keys after %d concurrent rotations", len(all), replicas)
	}
}

func TestPublishedKeepsPreviousKeyForRetain(t *testing.T) {
	db := testDB(t)
	ctx := testenv.Context(t, 30*time.Second)
	c := newClock()
	m := keys.NewManager(db, keys.Options{KEK: kek(t), Retain: 20 * time.Minute, Now: c.now})
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	k1, _ := m.Current()
	c.add(time.Hour)
	k2, err := m.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.add(5 * time.Minute)
	k3, err := m.Rotate(ctx) // k2 superseded 0 min ago, k1 5 min ago: both within Retain
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := m.Published(ctx)
	if got := kids(pub); len(got) != 3 || got[0] != k3.ID || got[1] != k2.ID || got[2] != k1.ID {
		t.Fatalf("published %v, want %s %s %s", got, k3.ID, k2.ID, k1.ID)
	}
	if _, err := m.PublicKey(ctx, k1.ID); err != nil {
		t.Fatalf("k1 within retain refused: %v", err)
	}
	c.add(30 * time.Minute) // now k1 and k2 were superseded > Retain ago; k2 is still the previous
	pub, _ = m.Published(ctx)
	if got := kids(pub); len(got) != 2 || got[0] != k3.ID || got[1] != k2.ID {
		t.Fatalf("published %v, want current %s and previous %s only", got, k3.ID, k2.ID)
	}
	if _, err := m.PublicKey(ctx, k1.ID); err == nil {
		t.Fatal("a key superseded longer than Retain ago is still accepted")
	}
}

func TestScheduledRotation(t *testing.T) {
	db := testDB(t)
	ctx, cancel := context.WithCancel(testenv.Context(t, 30*time.Second))
	defer cancel()
	c := newClock()
	m := keys.NewManager(db, keys.Options{KEK: kek(t), Retain: time.Hour, RotationInterval: 24 * time.Hour, Now: c.now})
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	k1, _ := m.Current()
	c.add(25 * time.Hour)
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	testenv.Eventually(t, 10*time.Second, func() bool { k, _ := m.Current(); return k.ID != k1.ID }, "no scheduled rotation")
	cancel()
	<-done
}

// Replicas whose schedules fire one after the other (each finding the
// current key too old) make one new key, not one each.
func TestScheduledRotationByReplicasMakesOneKey(t *testing.T) {
	db := testDB(t)
	ctx, cancel := context.WithCancel(testenv.Context(t, 30*time.Second))
	defer cancel()
	c := newClock()
	const replicas = 4
	ms := make([]*keys.Manager, replicas)
	for i := range ms {
		ms[i] = keys.NewManager(db, keys.Options{KEK: kek(t), Retain: time.Hour, RotationInterval: 24 * time.Hour, Now: c.now})
		if err := ms[i].Load(ctx); err != nil {
			t.Fatal(err)
		}
	}
	k1, _ := ms[0].Current()
	c.add(25 * time.Hour)
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); m.Run(ctx) }()
	}
	for i, m := range ms {
		testenv.Eventually(t, 10*time.Second, func() bool { k, _ := m.Current(); return k.ID != k1.ID }, "replica %d did not rotate", i)
	}
	cancel()
	wg.Wait()
	var n int
	if err := db.QueryRow(context.Background(), "select count(*) from signing_keys").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d keys after one scheduled rotation by %d replicas, want 2", n, replicas)
	}
	k2, _ := ms[0].Current()
	for i, m := range ms {
		if k, _ := m.Current(); k.ID != k2.ID || k.Seq != 2 {
			t.Fatalf("replica %d signs with %s (seq %d), replica 0 with %s", i, k.ID, k.Seq, k2.ID)
		}
	}
}

// Two replicas rotating at the same moment (the same seq) make one key:
// the unique seq lets one insert win and the other adopts its key.
func TestSimultaneousRotationsMakeOneKey(t *testing.T) {
	db := testDB(t)
	ctx := testenv.Context(t, 30*time.Second)
	a := keys.NewManager(db, keys.Options{KEK: kek(t), Retain: time.Hour})
	b := keys.NewManager(db, keys.Options{KEK: kek(t), Retain: time.Hour})
	if err := a.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	// Hold a transaction that has inserted seq 2 but not committed: b's
	// rotation must wait for it and then adopt that key, not make seq 3.
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, `insert into signing_keys (id, seq, seed, created_at) values ('held', 2, $1, now())`, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var got keys.Key
	var rerr error
	go func() { defer close(done); got, rerr = b.Rotate(ctx) }()
	time.Sleep(300 * time.Millisecond) // b's insert is now waiting on the held row
	select {
	case <-done:
		t.Fatalf("rotation did not wait for the concurrent insert: %+v %v", got, rerr)
	default:
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	if rerr != nil {
		t.Fatal(rerr)
	}
	if got.ID != "held" || got.Seq != 2 {
		t.Fatalf("rotation made its own key %s (seq %d); want the concurrent one adopted", got.ID, got.Seq)
	}
	var n int
	if err := db.QueryRow(ctx, "select count(*) from signing_keys").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d keys, want 2", n)
	}
}

// kek is the tests' key-encryption key: the same for every Manager of a
// test, as for the replicas of one deployment.
func kek(t *testing.T) *keys.KEK {
	t.Helper()
	k, err := keys.NewKEK([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// storedSeeds returns each key's stored columns: the plaintext seed (nil
// once sealed) and the sealed one.
func storedSeeds(t *testing.T, db *pgxpool.Pool) map[string][2][]byte {
	t.Helper()
	rows, err := db.Query(testenv.Context(t, 5*time.Second), `select id, seed, sealed_seed from signing_keys`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][2][]byte{}
	for rows.Next() {
		var id string
		var seed, sealed []byte
		if err := rows.Scan(&id, &seed, &sealed); err != nil {
			t.Fatal(err)
		}
		out[id] = [2][]byte{seed, sealed}
	}
	return out
}

// TestSeedsSealedAtRest: the database holds no private seed in the clear
// (before, a dump of signing_keys let anyone sign tokens): the first key,
// rotated ones and a plaintext seed from before are all sealed, and none
// of the stored bytes contain the seed.
func TestSeedsSealedAtRest(t *testing.T) {
	db := testDB(t)
	ctx := testenv.Context(t, 30*time.Second)
	// A key written in the clear, as before sealing (or by migrate-from-mongo).
	old := bytes.Repeat([]byte{7}, 32)
	if _, err := db.Exec(ctx, `insert into signing_keys (id, seq, seed, created_at) values ('old', 1, $1, now())`, old); err != nil {
		t.Fatal(err)
	}
	m := keys.NewManager(db, keys.Options{KEK: kek(t), Retain: time.Hour})
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	cur, err := m.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := storedSeeds(t, db)
	if len(stored) != 2 {
		t.Fatalf("%d keys stored, want 2", len(stored))
	}
	for id, want := range map[string][]byte{"old": old, cur.ID: cur.Seed} {
		s := stored[id]
		if s[0] != nil || len(s[1]) == 0 || bytes.Contains(s[1], want) {
			t.Fatalf("key %s stored as seed %x sealed %x: want only a sealed seed", id, s[0], s[1])
		}
	}
	// Another replica with the same KEK opens them; loading again changes nothing.
	n := keys.NewManager(db, keys.Options{KEK: kek(t), Retain: time.Hour})
	if err := n.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := n.Current(); got.ID != cur.ID || !bytes.Equal(got.Seed, cur.Seed) {
		t.Fatalf("replica's current key %s, want %s with the same seed", got.ID, cur.ID)
	}
	if again := storedSeeds(t, db); !bytes.Equal(again["old"][1], stored["old"][1]) {
		t.Fatal("a second load sealed the seed again")
	}
}

// TestWrongKEKRefused: a KEK that did not seal the keys stops Load with
// ErrWrongKEK and makes no key in their place; a moved sealed seed does
// not open either.
func TestWrongKEKRefused(t *testing.T) {
	db := testDB(t)
	ctx := testenv.Context(t, 30*time.Second)
	if err := keys.NewManager(db, keys.Options{KEK: kek(t), Retain: time.Hour}).Load(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := keys.ParseKEK(keys.GenerateKEK())
	if err != nil {
		t.Fatal(err)
	}
	err = keys.NewManager(db, keys.Options{KEK: other, Retain: time.Hour}).Load(ctx)
	if !errors.Is(err, keys.ErrWrongKEK) {
		t.Fatalf("load with another KEK: %v, want ErrWrongKEK", err)
	}
	if n := len(storedSeeds(t, db)); n != 1 {
		t.Fatalf("%d keys after a refused load, want 1 (none made)", n)
	}
	sealed := kek(t).Seal("a", bytes.Repeat([]byte{1}, 32))
	if _, err := kek(t).Open("b", sealed); !errors.Is(err, keys.ErrWrongKEK) {
		t.Fatalf("seed of key a opened as key b: %v", err)
	}
	if err := keys.NewManager(db, keys.Options{Retain: time.Hour}).Load(ctx); err == nil {
		t.Fatal("load without a KEK succeeded")
	}
}

func TestParseKEK(t *testing.T) {
	raw := "0123456789abcdef0123456789abcdef"
	for name, text := range map[string]string{
		"Hex":       hex.EncodeToString([]byte(raw)),
		"Base64":    base64.StdEncoding.EncodeToString([]byte(raw)) + "\n",
		"Base64URL": base64.RawURLEncoding.EncodeToString([]byte(raw)),
	} {
		t.Run(name, func(t *testing.T) {
			k, err := keys.ParseKEK(text)
			if err != nil || k.Fingerprint() != kek(t).Fingerprint() {
				t.Fatalf("%v", err)
			}
		})
	}
	for name, text := range map[string]string{
		"ErrEmpty": "", "ErrShort": base64.StdEncoding.EncodeToString([]byte("short")),
		"ErrLong": hex.EncodeToString(make([]byte, 33)), "ErrText": "not a key at all, just words",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := keys.ParseKEK(text); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
