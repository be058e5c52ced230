package authn

import (
	"github.com/audiomill/audiomill/platform/config"
)

// MinClientSecret is the shortest service-account secret auth accepts.
const MinClientSecret = 16

// ServiceAccount is what a service needs to call others as itself: its
// client credentials at auth and where auth is.
type ServiceAccount struct {
	ClientID     string // SERVICE_CLIENT_ID
	ClientSecret string // SERVICE_CLIENT_SECRET
	// AuthURL, when set, is auth's base URL; else auth is found through
	// Consul under AuthService (AUTH_URL).
	AuthURL     string
	AuthService string // AUTH_SERVICE
	// Scope, when set, is what the service asks auth for (space-separated):
	// the scopes its work needs, which the account must hold. The service
	// sets it from its own configuration; a broader account still yields
	// a token with no more than these.
	Scope string
}

// ReadServiceAccount reads SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET,
// AUTH_URL and AUTH_SERVICE; problems are recorded in r. A service that
// cannot work without its account passes defaultID "": both credentials
// are then required. One that runs without it (answering 503 where it would
// need it) passes its default client id: the secret may then be unset
// (Configured reports false). A secret that is set must have at least
// MinClientSecret characters.
func ReadServiceAccount(r *config.Reader, defaultID string) ServiceAccount {
	a := ServiceAccount{
		AuthURL:     r.OptionalURL("AUTH_URL", "http", "https"),
		AuthService: r.String("AUTH_SERVICE", DefaultAuthService),
	}
	if defaultID == "" {
		a.ClientID = r.Required("SERVICE_CLIENT_ID")
		a.ClientSecret = r.Required("SERVICE_CLIENT_SECRET")
	} else {
		a.ClientID = r.String("SERVICE_CLIENT_ID", defaultID)
		a.ClientSecret = r.String("SERVICE_CLIENT_SECRET", "")
	}
	if a.ClientSecret != "" && len(a.ClientSecret) < MinClientSecret {
		r.Fail("SERVICE_CLIENT_SECRET", "must be at least %d characters", MinClientSecret)
	}
	return a
}

// Configured reports whether the account has a secret to get tokens with.
func (a ServiceAccount) Configured() bool { return a.ClientSecret != "" }

// TokenSource returns a TokenSource for the account, which finds auth
// through resolver unless AuthURL is set.
func (a ServiceAccount) TokenSource(resolver Picker) (*TokenSource, error) {
	return NewTokenSource(TokenSourceOptions{ClientID: a.ClientID, ClientSecret: a.ClientSecret, Scope: a.Scope,
		BaseURL: a.AuthURL, Resolver: resolver, Service: a.AuthService})
}
