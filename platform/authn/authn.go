// Package authn verifies the access tokens that auth issues, for every
// audiomill service.
//
// An access token is a JWT signed with Ed25519 (alg EdDSA) and carrying a
// kid. A Verifier checks, in this order: the token's size and shape, the
// algorithm (pinned to EdDSA, so "none" and HS256 signed with the public key
// are refused), the signature with the key named by kid (from a KeySource: the
// JWKS auth publishes, found through Consul, or a static public key), iss,
// aud, exp (required), nbf and iat (with a small leeway), sub and jti
// (required), and finally the deny list in Redis.
//
// Every token problem is an errs.Unauthorized with the same generic message;
// the reason is logged at debug level, never the token itself. A deny list
// that cannot be reached is an errs.Unavailable: the verifier fails closed.
//
// # Deny list
//
// auth revokes an access token before it expires by writing the Redis key
// DenyKey(jti) = "auth:deny:<jti>" with a TTL equal to the token's
// remaining lifetime, and a whole session (logout, "log out everywhere")
// by writing SessionDenyKey(sid) = "auth:deny:sid:<sid>" for the longest
// lifetime of an access token. The verifier refuses any token whose jti or
// sid has such a key; both are read in the same MGET, so a session costs
// no extra round trip.
//
// # HTTP
//
//	v, err := authn.New(authn.Options{Issuer: cfg.Issuer, Audience: cfg.Audience, Keys: keys, DenyList: rdb, Logger: logger})
//	r.Handle("/v1/files", authn.Middleware(v)(authn.RequireScope("storage:write")(h)))
//	// in h: p, _ := authn.FromContext(r.Context())
package authn

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithm is the only JWT signing algorithm audiomill accepts.
const Algorithm = "EdDSA"

// DenyKeyPrefix prefixes the Redis keys of the deny list: DenyKeyPrefix+jti.
const DenyKeyPrefix = "auth:deny:"

// ServiceSubjectPrefix prefixes the subject of service-account tokens
// ("service:gateway"); user tokens have the user's id as subject.
const ServiceSubjectPrefix = "service:"

// The scopes of the file-storage API (filestorage): every request to it
// needs one. A token with StorageScope touches the files of its subject;
// one with StorageAdminScope every file, and may act for an owner. auth
// gives service accounts the scopes configured for them, and a user the
// scope StorageScope when an admin granted the user the role of that name.
const (
	StorageScope      = "storage"
	StorageAdminScope = "storage:admin"
)

// The operations a bucket scope grants (StorageBucketScope): a service
// that acts for users gets only these, on only the buckets it works in,
// instead of StorageAdminScope.
const (
	// StorageRead reads (GET, HEAD, list) every owner's files in the bucket.
	StorageRead = "read"
	// StorageWrite stores files into the bucket for the owner the request
	// names (X-Owner), replacing only that owner's files.
	StorageWrite = "write"
	// StorageDelete deletes every owner's files in the bucket.
	StorageDelete = "delete"
)

// StorageBucketScope returns the scope granting op (StorageRead,
// StorageWrite or StorageDelete) on bucket: "storage:<op>:<bucket>".
func StorageBucketScope(op, bucket string) string { return "storage:" + op + ":" + bucket }

// StorageBuckets returns the buckets on which the token grants op through
// a bucket scope (StorageBucketScope), in the order of its scopes.
func (p Principal) StorageBuckets(op string) []string {
	prefix := StorageBucketScope(op, "")
	var out []string
	for _, s := range p.Scopes {
		if b, ok := strings.CutPrefix(s, prefix); ok && b != "" {
			out = append(out, b)
		}
	}
	return out
}

// DenyKey returns the Redis key that revokes the token with id jti.
func DenyKey(jti string) string { return DenyKeyPrefix + jti }

// SessionDenyKey returns the Redis key that revokes every access token of
// the session sid (the sid claim). A jti never contains ':', so the two
// kinds of key cannot collide.
func SessionDenyKey(sid string) string { return DenyKeyPrefix + "sid:" + sid }

// Claims are the claims of an audiomill access token. auth signs them; the
// Verifier reads them.
type Claims struct {
	// Email is the user's normalised email; empty for service accounts.
	Email string `json:"email,omitempty"`
	// Roles are the subject's roles ("user", "admin", "service").
	Roles []string `json:"roles,omitempty"`
	// Scope is the space-separated list of scopes (RFC 9068), e.g. "storage:admin".
	Scope string `json:"scope,omitempty"`
	// SessionID names the refresh-token family the token was issued from
	// (empty for service accounts); logout revokes it.
	SessionID string `json:"sid,omitempty"`
	// EmailVerified says whether the user has verified Email (auth sets it
	// on every user token; absent, as on service tokens, means not verified).
	EmailVerified *bool `json:"email_verified,omitempty"`
	jwt.RegisteredClaims
}

// Principal is who a verified token speaks for. Its slices may be shared
// between requests presenting the same token: read them, do not modify them.
type Principal struct {
	// Subject is the user id, or ServiceSubjectPrefix + client id.
	Subject   string
	Email     string
	Roles     []string
	Scopes    []string
	TokenID   string // jti
	SessionID string // sid: the refresh-token family, for logout
	// EmailVerified: the token says the user verified Email (claim
	// email_verified true). False when the claim is false or absent.
	EmailVerified bool
	ExpiresAt     time.Time
}

// HasScope reports whether the token grants scope.
func (p Principal) HasScope(scope string) bool { return slices.Contains(p.Scopes, scope) }

// HasRole reports whether the subject has role.
func (p Principal) HasRole(role string) bool { return slices.Contains(p.Roles, role) }

// IsService reports whether the token belongs to a service account
// (client credentials) rather than a user.
func (p Principal) IsService() bool { return strings.HasPrefix(p.Subject, ServiceSubjectPrefix) }

// ServiceName returns the client id of a service account, or "" for a user.
func (p Principal) ServiceName() string {
	if !p.IsService() {
		return ""
	}
	return strings.TrimPrefix(p.Subject, ServiceSubjectPrefix)
}

func principalOf(c *Claims) Principal {
	p := Principal{
		Subject:   c.Subject,
		Email:     c.Email,
		Roles:     c.Roles,
		Scopes:    strings.Fields(c.Scope),
		TokenID:   c.ID,
		SessionID: c.SessionID,
	}
	p.EmailVerified = c.EmailVerified != nil && *c.EmailVerified
	if c.ExpiresAt != nil {
		p.ExpiresAt = c.ExpiresAt.Time
	}
	return p
}

type principalKey struct{}

// WithPrincipal returns a copy of ctx carrying p (the middleware does this).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal the middleware put in ctx.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
