// Package keys keeps auth's Ed25519 signing keys in MongoDB, so every auth
// replica signs with the same key, and rotates them.
//
// Keys are numbered (seq, unique): the key with the highest seq is current
// and signs new tokens. Rotation inserts seq+1; when two replicas rotate at
// once, the unique index lets one win and the other adopts its key. A key
// that has been superseded stays published (JWKS) and accepted for Retain
// after it was superseded — at least the access-token lifetime — so
// rotation never invalidates a token before it expires; the previous key
// is always published.
package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
)

// Collection is the MongoDB collection of signing keys.
const Collection = "signing_keys"

// Timings of a Manager.
const (
	// ReloadInterval is how often a replica reads the keys again, to pick
	// up a rotation made by another replica.
	ReloadInterval = 30 * time.Second
	// publishStaleAfter: Published reloads first when its copy is older,
	// so a verifier refetching after a rotation sees the new key.
	publishStaleAfter = 2 * time.Second
	// unknownReloadEvery limits the reloads caused by unknown kids.
	unknownReloadEvery = time.Second
	// keepSuperseded is how many superseded keys stay in the database
	// even after they are no longer published.
	keepSuperseded = 2
)

// Key is one signing key as stored.
type Key struct {
	ID        string    `bson:"_id"` // the kid
	Seq       int64     `bson:"seq"`
	Seed      []byte    `bson:"seed"` // the Ed25519 private key seed
	CreatedAt time.Time `bson:"created_at"`

	priv ed25519.PrivateKey // derived from Seed once, when read
}

// Private returns the private key.
func (k Key) Private() ed25519.PrivateKey {
	if k.priv != nil {
		return k.priv
	}
	return ed25519.NewKeyFromSeed(k.Seed)
}

// Public returns the public key.
func (k Key) Public() ed25519.PublicKey { return k.Private().Public().(ed25519.PublicKey) }

// Options configure a Manager.
type Options struct {
	// RotationInterval rotates the current key once it is this old; 0 never
	// rotates on a schedule.
	RotationInterval time.Duration
	// Retain is how long a superseded key stays published and accepted:
	// the access-token lifetime plus leeway.
	Retain time.Duration
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Manager holds the keys of the database in memory and rotates them.
type Manager struct {
	coll *mongo.Collection
	opts Options
	set  *authn.KeySet

	mu          sync.Mutex
	keys        []Key // by seq, newest first
	loadedAt    time.Time
	lastUnknown time.Time
}

var _ authn.KeySource = (*Manager)(nil)

// NewManager returns a Manager over db. Call Load before use.
func NewManager(db *mongo.Database, opts Options) *Manager {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{coll: db.Collection(Collection), opts: opts, set: authn.NewKeySet(nil)}
}

// Load creates the unique seq index when it is missing and reads the keys,
// creating the first one when there is none.
func (m *Manager) Load(ctx context.Context) error {
	_, err := m.coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: "seq", Value: 1}},
		Options: options.Index().SetUnique(true).SetName("seq_unique"),
	})
	if err != nil {
		return fmt.Errorf("keys: create seq index: %w", err)
	}
	keys, err := m.readAll(ctx)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		if _, err := m.insert(ctx, 1); err != nil && !errors.Is(err, errRaced) {
			return err
		}
		if keys, err = m.readAll(ctx); err != nil {
			return err
		}
		if len(keys) == 0 {
			return errors.New("keys: no key after creating one")
		}
	}
	m.install(keys)
	return nil
}

// Current returns the key that signs new tokens.
func (m *Manager) Current() (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.keys) == 0 {
		return Key{}, errs.E(errs.Unavailable, "signing keys are not loaded yet")
	}
	return m.keys[0], nil
}

// Published returns the public keys to publish, current first: the
// current key and every superseded key still within Retain (the previous
// one always). It reloads first when its copy is a few seconds old.
func (m *Manager) Published(ctx context.Context) ([]authn.NamedKey, error) {
	m.mu.Lock()
	stale := m.opts.Now().Sub(m.loadedAt) > publishStaleAfter
	m.mu.Unlock()
	if stale {
		if err := m.reload(ctx); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.publishedLocked(), nil
}

func (m *Manager) publishedLocked() []authn.NamedKey {
	now := m.opts.Now()
	var out []authn.NamedKey
	for i, k := range m.keys {
		// k was superseded when the next newer key was created.
		if i >= 2 && now.Sub(m.keys[i-1].CreatedAt) > m.opts.Retain {
			break
		}
		out = append(out, authn.NamedKey{KID: k.ID, Key: k.Public()})
	}
	return out
}

// PublicKey implements authn.KeySource over the published keys. An unknown
// kid reloads the keys (at most once a second), in case another replica
// has just rotated.
func (m *Manager) PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	k, err := m.set.PublicKey(ctx, kid)
	if err == nil {
		return k, nil
	}
	m.mu.Lock()
	now := m.opts.Now()
	mayReload := now.Sub(m.lastUnknown) >= unknownReloadEvery
	if mayReload {
		m.lastUnknown = now
	}
	m.mu.Unlock()
	if !mayReload {
		return nil, err
	}
	if rerr := m.reload(ctx); rerr != nil {
		return nil, errors.Join(err, rerr)
	}
	return m.set.PublicKey(ctx, kid)
}

// Rotate makes a new current key and returns it. When another replica
// rotated at the same moment, its key is returned instead of a second one.
func (m *Manager) Rotate(ctx context.Context) (Key, error) {
	keys, err := m.readAll(ctx)
	if err != nil {
		return Key{}, err
	}
	var next int64 = 1
	if len(keys) > 0 {
		next = keys[0].Seq + 1
	}
	k, err := m.insert(ctx, next)
	if err != nil && !errors.Is(err, errRaced) {
		return Key{}, err
	}
	if keys, err = m.readAll(ctx); err != nil {
		return Key{}, err
	}
	m.install(keys)
	m.prune(ctx, keys)
	cur := keys[0]
	if cur.ID == k.ID {
		m.opts.Logger.InfoContext(ctx, "signing key rotated", "kid", cur.ID, "seq", cur.Seq)
	}
	return cur, nil
}

// Run reloads the keys every ReloadInterval and rotates the current key
// once it is RotationInterval old, until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(ReloadInterval)
	defer t.Stop()
	for {
		m.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Manager) tick(ctx context.Context) {
	if err := m.reload(ctx); err != nil {
		m.opts.Logger.WarnContext(ctx, "signing keys reload failed", "err", err.Error())
		return
	}
	cur, err := m.Current()
	if err != nil || m.opts.RotationInterval <= 0 || m.opts.Now().Sub(cur.CreatedAt) < m.opts.RotationInterval {
		return
	}
	if _, err := m.Rotate(ctx); err != nil {
		m.opts.Logger.WarnContext(ctx, "scheduled key rotation failed", "err", err.Error())
	}
}

func (m *Manager) reload(ctx context.Context) error {
	keys, err := m.readAll(ctx)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return errors.New("keys: no signing key in the database")
	}
	m.install(keys)
	return nil
}

func (m *Manager) install(keys []Key) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = keys
	m.loadedAt = m.opts.Now()
	pub := map[string]ed25519.PublicKey{}
	for _, k := range m.publishedLocked() {
		pub[k.KID] = k.Key
	}
	m.set.Replace(pub)
}

// prune deletes keys no longer published, keeping a few for the record.
func (m *Manager) prune(ctx context.Context, keys []Key) {
	m.mu.Lock()
	published := len(m.publishedLocked())
	m.mu.Unlock()
	keep := published + keepSuperseded
	if len(keys) <= keep {
		return
	}
	_, err := m.coll.DeleteMany(ctx, bson.D{{Key: "seq", Value: bson.D{{Key: "$lt", Value: keys[keep-1].Seq}}}})
	if err != nil {
		m.opts.Logger.WarnContext(ctx, "pruning old signing keys failed", "err", err.Error())
	}
}

var errRaced = errors.New("another replica created this key first")

func (m *Manager) insert(ctx context.Context, seq int64) (Key, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return Key{}, fmt.Errorf("keys: random seed: %w", err)
	}
	idb := make([]byte, 9)
	_, _ = rand.Read(idb)
	k := Key{
		ID:        base64.RawURLEncoding.EncodeToString(idb),
		Seq:       seq,
		Seed:      seed,
		CreatedAt: m.opts.Now().UTC().Truncate(time.Millisecond),
	}
	if _, err := m.coll.InsertOne(ctx, k); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return Key{}, errRaced
		}
		return Key{}, fmt.Errorf("keys: insert: %w", err)
	}
	return k, nil
}

func (m *Manager) readAll(ctx context.Context) ([]Key, error) {
	cur, err := m.coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "seq", Value: -1}}))
	if err != nil {
		return nil, fmt.Errorf("keys: find: %w", err)
	}
	var keys []Key
	if err := cur.All(ctx, &keys); err != nil {
		return nil, fmt.Errorf("keys: read: %w", err)
	}
	for i, k := range keys {
		if len(k.Seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("keys: key %s has a %d-byte seed", k.ID, len(k.Seed))
		}
		keys[i].priv = ed25519.NewKeyFromSeed(k.Seed)
	}
	return keys, nil
}
