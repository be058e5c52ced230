// Package clients holds auth's service accounts: the internal services
// (gateway, converter, notifier) that obtain tokens with the OAuth 2.0
// client-credentials grant.
//
// A client is written "id:secret:scope scope…". Entries are separated by
// commas (SERVICE_CLIENTS) or lines (SERVICE_CLIENTS_FILE, where # starts a
// comment). The secret may be given as "sha256:<64 hex digits>" so the
// plaintext appears nowhere; only its SHA-256 is kept, in memory and in
// PostgreSQL, either way.
//
// The configuration is the source of truth an operator edits; at start
// each auth replica writes it into the table service_clients (Store.Sync),
// and every replica authenticates against that table (Store), so they all
// see one set, which an operator can inspect with psql.
// Ids and secrets may not contain ':' or ','; scopes may contain ':'.
//
//	gateway:s3cret:storage:admin,converter:sha256:9f86d0…:storage:read storage:write
package clients

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// Client is one service account.
type Client struct {
	ID     string
	Scopes []string
	secret [sha256.Size]byte
}

// Registry is the set of configured clients.
type Registry struct {
	clients map[string]Client
	dummy   [sha256.Size]byte
}

// Parse reads clients from spec (entries separated by commas or newlines).
func Parse(spec string) (*Registry, error) {
	r := &Registry{clients: map[string]Client{}}
	for line := range strings.Lines(strings.ReplaceAll(spec, ",", "\n")) {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		c, err := parseOne(line)
		if err != nil {
			return nil, err
		}
		if _, dup := r.clients[c.ID]; dup {
			return nil, fmt.Errorf("service client %q is configured twice", c.ID)
		}
		r.clients[c.ID] = c
	}
	return r, nil
}

func parseOne(entry string) (Client, error) {
	id, rest, ok := strings.Cut(entry, ":")
	if !ok || id == "" || strings.ContainsAny(id, " \t") {
		return Client{}, fmt.Errorf("service client entry %q: want id:secret:scopes", redact(entry))
	}
	var secret [sha256.Size]byte
	if h, ok := strings.CutPrefix(rest, "sha256:"); ok {
		hexSum, scopes, _ := strings.Cut(h, ":")
		b, err := hex.DecodeString(hexSum)
		if err != nil || len(b) != sha256.Size {
			return Client{}, fmt.Errorf("service client %q: sha256: secret must be 64 hex digits", id)
		}
		copy(secret[:], b)
		rest = scopes
	} else {
		plain, scopes, _ := strings.Cut(rest, ":")
		if len(plain) < 16 {
			return Client{}, fmt.Errorf("service client %q: secret must have at least 16 characters", id)
		}
		secret = sha256.Sum256([]byte(plain))
		rest = scopes
	}
	return Client{ID: id, Scopes: strings.Fields(rest), secret: secret}, nil
}

func redact(entry string) string {
	id, _, _ := strings.Cut(entry, ":")
	return id + ":…"
}

// Len returns how many clients are in r.
func (r *Registry) Len() int { return len(r.clients) }

// Authenticate returns the client with id when secret is its secret. It
// hashes and compares in constant time whether or not id exists.
func (r *Registry) Authenticate(id, secret string) (Client, bool) {
	c, known := r.clients[id]
	want := r.dummy
	if known {
		want = c.secret
	}
	got := sha256.Sum256([]byte(secret))
	match := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	if !known || !match {
		return Client{}, false
	}
	return c, true
}
