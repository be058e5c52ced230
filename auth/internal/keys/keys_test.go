package keys_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/auth/internal/keys"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/testenv"
)

func testDB(t *testing.T) *mongo.Database {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)))
	if err != nil {
		t.Fatal(err)
	}
	db := client.Database(fmt.Sprintf("audiomill_keys_test_%d", time.Now().UnixNano()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = db.Drop(ctx)
		_ = client.Disconnect(ctx)
	})
	return db
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
		ms[i] = keys.NewManager(db, keys.Options{Retain: time.Hour})
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
	m := keys.NewManager(db, keys.Options{Retain: 20 * time.Minute, Now: c.now})
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
	m := keys.NewManager(db, keys.Options{Retain: time.Hour, RotationInterval: 24 * time.Hour, Now: c.now})
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
