package authn

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/audiomill/audiomill/platform/consul"
)

// JWKSPath is where auth publishes its public keys.
const JWKSPath = "/.well-known/jwks.json"

// Defaults for JWKSOptions.
const (
	DefaultJWKSRefreshInterval = 5 * time.Minute
	DefaultUnknownKIDInterval  = 10 * time.Second
	DefaultJWKSTimeout         = 5 * time.Second
	// unknownKIDWaitMax bounds how long a request with an unknown kid may
	// wait for the refetch rate limiter; a longer wait fails at once.
	unknownKIDWaitMax = time.Second
)

// JWKSOptions tune a JWKS key source. Zero values take the defaults.
type JWKSOptions struct {
	// RefreshInterval is how often the set is refetched in the background.
	RefreshInterval time.Duration
	// UnknownKIDInterval is the least time between two refetches caused by
	// a token whose kid is not in the set (a rotation, or garbage).
	UnknownKIDInterval time.Duration
	// Timeout bounds one fetch.
	Timeout time.Duration
	// Client makes the requests (http.DefaultClient's transport when nil).
	Client *http.Client
	Logger *slog.Logger
}

// JWKS is a KeySource over a remote JSON Web Key Set: fetched once at
// start (a failure there is logged, not fatal: auth may start later),
// refetched every RefreshInterval and, rate-limited, when a token names an
// unknown kid. It accepts only Ed25519 keys.
type JWKS struct {
	kf keyfunc.Keyfunc
	// lookups makes concurrent lookups of one kid a single keyfunc call,
	// so a burst of requests with a kid the set does not hold yet (a
	// service that started before auth, a rotation) waits for the one
	// refetch instead of failing on the refetch rate limit.
	lookups singleflight.Group
}

// Picker picks a passing instance of a service; *consul.Resolver is one.
type Picker interface {
	Pick(ctx context.Context, service string) (consul.Instance, error)
}

// JWKSFromURL returns a JWKS source fetching url. The background refresh
// stops when ctx ends.
func JWKSFromURL(ctx context.Context, url string, opts JWKSOptions) (*JWKS, error) {
	logger := cmp.Or(opts.Logger, slog.New(slog.DiscardHandler))
	noErrorFirst := true
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, keyfunc.Override{
		Client:                    opts.Client,
		HTTPTimeout:               cmp.Or(opts.Timeout, DefaultJWKSTimeout),
		NoErrorReturnFirstHTTPReq: &noErrorFirst,
		RateLimitWaitMax:          unknownKIDWaitMax,
		RefreshInterval:           cmp.Or(opts.RefreshInterval, DefaultJWKSRefreshInterval),
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(cmp.Or(opts.UnknownKIDInterval, DefaultUnknownKIDInterval)), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				logger.WarnContext(ctx, "jwks fetch failed", "url", u, "err", err.Error())
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", url, err)
	}
	return &JWKS{kf: kf}, nil
}

// JWKSFromConsul returns a JWKS source fetching JWKSPath from a passing
// instance of service (usually "auth"), picked through resolver on every
// fetch, so a fetch goes to whichever replica is up.
func JWKSFromConsul(ctx context.Context, resolver Picker, service string, opts JWKSOptions) (*JWKS, error) {
	base := http.DefaultTransport
	if opts.Client != nil && opts.Client.Transport != nil {
		base = opts.Client.Transport
	}
	opts.Client = &http.Client{Transport: &pickTransport{picker: resolver, service: service, base: base}}
	return JWKSFromURL(ctx, "http://"+service+JWKSPath, opts)
}

// PublicKey implements KeySource.
func (j *JWKS) PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	// The shared call does not end with the first caller's context; keyfunc
	// bounds it (the JWKS fetch timeout, the rate-limit wait).
	key, err, _ := j.lookups.Do(kid, func() (any, error) {
		return j.kf.KeyfuncCtx(context.WithoutCancel(ctx))(&jwt.Token{Header: map[string]any{"kid": kid, "alg": Algorithm}})
	})
	if err != nil {
		if errors.Is(err, jwkset.ErrKeyNotFound) {
			return nil, fmt.Errorf("kid %q: %w", kid, ErrUnknownKey)
		}
		return nil, fmt.Errorf("jwks key %q: %w", kid, err)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("jwks key %q is %T, not Ed25519", kid, key)
	}
	return pub, nil
}

// pickTransport sends each request to an instance of service picked by the
// resolver: the URL's host is the service name.
type pickTransport struct {
	picker  Picker
	service string
	base    http.RoundTripper
}

func (t *pickTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	inst, err := t.picker.Pick(req.Context(), t.service)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("find %s: %w", t.service, err)
	}
	out := req.Clone(req.Context())
	out.URL.Host = inst.HostPort()
	out.Host = ""
	return t.base.RoundTrip(out)
}

// NamedKey is a public key and its id.
type NamedKey struct {
	KID string
	Key ed25519.PublicKey
}

// jwk is one Ed25519 key in a JSON Web Key Set (RFC 8037).
type jwk struct {
	KTY string `json:"kty"`
	CRV string `json:"crv"`
	X   string `json:"x"`
	KID string `json:"kid"`
	ALG string `json:"alg"`
	USE string `json:"use"`
}

// MarshalJWKS returns the JSON Web Key Set of keys, in order: what auth
// serves at JWKSPath.
func MarshalJWKS(keys []NamedKey) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for _, k := range keys {
		if len(k.Key) != ed25519.PublicKeySize || k.KID == "" {
			return nil, fmt.Errorf("jwks: key %q is not a named Ed25519 public key", k.KID)
		}
		set.Keys = append(set.Keys, jwk{KTY: "OKP", CRV: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k.Key),
			KID: k.KID, ALG: Algorithm, USE: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return b, nil
}
