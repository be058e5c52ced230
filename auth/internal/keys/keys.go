// Package keys keeps auth's Ed25519 signing keys in PostgreSQL (table
// signing_keys, see auth/internal/schema), so every auth replica signs with
// the same key, and rotates them.
//
// Keys are numbered (seq, unique): the key with the highest seq is current
// and signs new tokens. Rotation inserts seq+1 with "on conflict (seq) do
// nothing": when two replicas rotate at once, one insert wins and the
// other adopts its key. A scheduled rotation inserts the successor of the
// key it found too old, so replicas whose schedules fire one after the
// other still make one key per period, not one each. A key
// that has been superseded stays published (JWKS) and accepted for Retain
// after it was superseded — at least the access-token lifetime — so
// rotation never invalidates a token before it expires; the previous key
// is always published.
//
// The private seeds are sealed at rest with a key-encryption key (KEK,
// AES-256-GCM, see kek.go) that is not in the database: a copy of the
// database (a dump, a backup, a read-only role) does not let anyone sign
// tokens. Every key is written sealed; a plaintext seed found when the
// keys are read (a key from before sealing, or one migrate-from-mongo
// copied) is sealed in place then. A seed the KEK does not open stops
// Load with ErrWrongKEK: no new key is ever made in its place.
package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/pgdb"
)

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
	ID        string // the kid
	Seq       int64
	Seed      []byte // the Ed25519 private key seed
	CreatedAt time.Time

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
	// KEK seals and opens the private seeds. Required.
	KEK *KEK
}

// Manager holds the keys of the database in memory and rotates them.
type Manager struct {
	pool *pgxpool.Pool
	opts Options
	set  *authn.KeySet

	mu          sync.Mutex
	keys        []Key // by seq, newest first
	loadedAt    time.Time
	lastUnknown time.Time
}

var _ authn.KeySource = (*Manager)(nil)

// NewManager returns a Manager over pool's database, whose schema is
// migrated (auth/internal/schema). Call Load before use.
func NewManager(pool *pgxpool.Pool, opts Options) *Manager {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{pool: pool, opts: opts, set: authn.NewKeySet(nil)}
}

// Load reads the keys, creating the first one when there is none (replicas
// starting at once make one).
func (m *Manager) Load(ctx context.Context) error {
	if m.opts.KEK == nil {
		return errors.New("keys: no key-encryption key")
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
	return m.rotate(ctx, successorOfCurrent)
}

// rotate inserts the key numbered seq (successorOfCurrent: the current
// key's seq + 1, read by the insert itself) and installs the keys. When
// that seq exists already (another replica made it), its key is adopted
// and no other is made.
func (m *Manager) rotate(ctx context.Context, seq int64) (Key, error) {
	k, err := m.insert(ctx, seq)
	if err != nil && !errors.Is(err, errRaced) {
		return Key{}, err
	}
	keys, err := m.readAll(ctx)
	if err != nil {
		return Key{}, err
	}
	if len(keys) == 0 { // deleted by hand between the insert and the read
		return Key{}, errors.New("keys: no signing key in the database")
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
	// The successor of this key, not of whatever is current by then: a
	// replica whose schedule fires after another's rotation adopts it.
	if _, err := m.rotate(ctx, cur.Seq+1); err != nil {
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
	_, err := m.pool.Exec(ctx, `delete from signing_keys where seq < $1`, keys[keep-1].Seq)
	if err != nil {
		m.opts.Logger.WarnContext(ctx, "pruning old signing keys failed", "err", err.Error())
	}
}

var errRaced = errors.New("another replica created this key first")

// successorOfCurrent as a seq makes insert number the key after the
// current one (1 when there is none) in the same statement.
const successorOfCurrent = math.MinInt64

// The inserts of a key: numbered $4, or after the current key.
const (
	insertSeq = `insert into signing_keys (id, sealed_seed, created_at, seq) values ($1, $2, $3, $4)
		on conflict (seq) do nothing returning seq`
	insertNext = `insert into signing_keys (id, sealed_seed, created_at, seq)
		select $1, $2, $3, coalesce(max(seq), 0) + 1 from signing_keys
		on conflict (seq) do nothing returning seq`
)

// insert makes a new key numbered seq. When the seq is taken (another
// replica inserted it, even at the same moment) nothing is written and the
// error is errRaced.
func (m *Manager) insert(ctx context.Context, seq int64) (Key, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return Key{}, fmt.Errorf("keys: random seed: %w", err)
	}
	idb := make([]byte, 9)
	_, _ = rand.Read(idb)
	k := Key{
		ID:        base64.RawURLEncoding.EncodeToString(idb),
		Seed:      seed,
		CreatedAt: m.opts.Now().UTC().Truncate(time.Millisecond),
	}
	// With successorOfCurrent one statement reads the seq and inserts: two
	// replicas running it at once compute the same seq, and the unique
	// constraint lets one win.
	if m.opts.KEK == nil {
		return Key{}, errors.New("keys: no key-encryption key")
	}
	query, args := insertNext, []any{k.ID, m.opts.KEK.Seal(k.ID, k.Seed), k.CreatedAt}
	if seq != successorOfCurrent {
		query, args = insertSeq, append(args, seq)
	}
	err := m.pool.QueryRow(ctx, query, args...).Scan(&k.Seq)
	if pgdb.IsNotFound(err) {
		return Key{}, errRaced
	}
	if err != nil {
		return Key{}, pgdb.Err(err, "auth", "keys: insert")
	}
	return k, nil
}

// readAll reads the keys, newest first, opening their sealed seeds; it
// seals the plaintext seeds it finds.
func (m *Manager) readAll(ctx context.Context) ([]Key, error) {
	if m.opts.KEK == nil {
		return nil, errors.New("keys: no key-encryption key")
	}
	rows, err := m.pool.Query(ctx, `select id, seq, seed, sealed_seed, created_at from signing_keys order by seq desc`)
	if err != nil {
		return nil, pgdb.Err(err, "auth", "keys: read")
	}
	var keys []Key
	var plain []Key
	for rows.Next() {
		var k Key
		var sealed []byte
		if err := rows.Scan(&k.ID, &k.Seq, &k.Seed, &sealed, &k.CreatedAt); err != nil {
			rows.Close()
			return nil, pgdb.Err(err, "auth", "keys: read")
		}
		if sealed != nil {
			if k.Seed, err = m.opts.KEK.Open(k.ID, sealed); err != nil {
				rows.Close()
				return nil, fmt.Errorf("keys: %w", err)
			}
		} else {
			plain = append(plain, k)
		}
		if len(k.Seed) != ed25519.SeedSize {
			rows.Close()
			return nil, fmt.Errorf("keys: key %s has a %d-byte seed", k.ID, len(k.Seed))
		}
		k.CreatedAt = k.CreatedAt.UTC()
		k.priv = ed25519.NewKeyFromSeed(k.Seed)
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, pgdb.Err(err, "auth", "keys: read")
	}
	if err := m.seal(ctx, plain); err != nil {
		return nil, err
	}
	return keys, nil
}

// seal replaces the plaintext seeds of keys with sealed ones (once: a
// replica doing it at the same time finds nothing left to seal).
func (m *Manager) seal(ctx context.Context, keys []Key) error {
	n := int64(0)
	for _, k := range keys {
		tag, err := m.pool.Exec(ctx, `update signing_keys set sealed_seed = $2, seed = null where id = $1 and seed is not null`,
			k.ID, m.opts.KEK.Seal(k.ID, k.Seed))
		if err != nil {
			return pgdb.Err(err, "auth", "keys: seal")
		}
		n += tag.RowsAffected()
	}
	if n > 0 {
		m.opts.Logger.Info("plaintext signing-key seeds encrypted at rest", "keys", n, "kek", m.opts.KEK.Fingerprint())
	}
	return nil
}
