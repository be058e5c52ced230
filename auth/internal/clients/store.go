package clients

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/platform/pgdb"
)

// RefreshInterval is how often a Store reads the table again, to pick up
// the set another replica wrote.
const RefreshInterval = 15 * time.Second

// syncLock is the PostgreSQL advisory lock (transaction scope) that lets
// one replica at a time write the set, so two replicas starting at once
// with different configurations leave one of the two, not a mix.
const syncLock int64 = 0x61756d5f636c6e74 // "aum_clnt"

// Store is the table service_clients (auth/internal/schema) and an
// in-memory copy of it that authenticates clients.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	cur    atomic.Pointer[Registry]
}

// NewStore returns the store in pool's database, whose schema is migrated.
// Nothing authenticates until Load (or Sync) has read the table.
func NewStore(pool *pgxpool.Pool, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{pool: pool, logger: logger}
	s.cur.Store(&Registry{clients: map[string]Client{}})
	return s
}

// SyncResult says what Sync changed.
type SyncResult struct {
	Written int // clients inserted, or whose secret or scopes changed
	Removed int // clients no longer configured
}

// Sync makes the table hold exactly the clients of reg, in one
// transaction: it inserts or updates each (updated_at changes only when
// its secret or scopes did) and deletes the clients reg does not have.
// Then it loads the table.
func (s *Store) Sync(ctx context.Context, reg *Registry) (SyncResult, error) {
	var res SyncResult
	ids := make([]string, 0, len(reg.clients))
	for id := range reg.clients {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `select pg_advisory_xact_lock($1)`, syncLock); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		for _, id := range ids {
			c := reg.clients[id]
			scopes := c.Scopes
			if scopes == nil {
				scopes = []string{}
			}
			tag, err := tx.Exec(ctx, `
				insert into service_clients (id, secret_sha256, scopes, updated_at) values ($1, $2, $3, now())
				on conflict (id) do update
					set secret_sha256 = excluded.secret_sha256, scopes = excluded.scopes, updated_at = excluded.updated_at
					where (service_clients.secret_sha256, service_clients.scopes)
						is distinct from (excluded.secret_sha256, excluded.scopes)`,
				id, c.secret[:], scopes)
			if err != nil {
				return fmt.Errorf("upsert %s: %w", id, err)
			}
			res.Written += int(tag.RowsAffected())
		}
		tag, err := tx.Exec(ctx, `delete from service_clients where not (id = any($1))`, ids)
		if err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		res.Removed = int(tag.RowsAffected())
		return nil
	})
	if err != nil {
		return SyncResult{}, pgdb.Err(err, "auth", "service clients: sync")
	}
	return res, s.Load(ctx)
}

// Load reads the table into memory; Authenticate uses that copy.
func (s *Store) Load(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `select id, secret_sha256, scopes from service_clients`)
	if err != nil {
		return pgdb.Err(err, "auth", "service clients: read")
	}
	reg := &Registry{clients: map[string]Client{}}
	for rows.Next() {
		var c Client
		var sum []byte
		if err := rows.Scan(&c.ID, &sum, &c.Scopes); err != nil {
			rows.Close()
			return pgdb.Err(err, "auth", "service clients: read")
		}
		if len(sum) != sha256.Size { // the table's check forbids it
			rows.Close()
			return fmt.Errorf("service clients: %s has a %d-byte secret hash", c.ID, len(sum))
		}
		copy(c.secret[:], sum)
		reg.clients[c.ID] = c
	}
	if err := rows.Err(); err != nil {
		return pgdb.Err(err, "auth", "service clients: read")
	}
	s.cur.Store(reg)
	return nil
}

// Run reloads the table every RefreshInterval until ctx ends.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.Load(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "service clients reload failed; keeping the last copy", "err", err.Error())
		}
	}
}

// Len returns how many clients the last read of the table held.
func (s *Store) Len() int { return s.cur.Load().Len() }

// Authenticate returns the client with id when secret is its secret,
// against the last read of the table. It hashes and compares in constant
// time whether or not id exists.
func (s *Store) Authenticate(id, secret string) (Client, bool) {
	return s.cur.Load().Authenticate(id, secret)
}
