package client

import (
	"context"
	"errors"

	"github.com/audiomill/audiomill/platform/config"
)

// Config says where a service finds filestorage. ConfigFromEnv reads it.
type Config struct {
	// URL, when set, is filestorage's base URL (FILESTORAGE_URL); else it is
	// found through Consul.
	URL string
	// Service is filestorage's name in Consul (FILESTORAGE_SERVICE,
	// ServiceName by default).
	Service string
}

// ConfigFromEnv reads FILESTORAGE_URL and FILESTORAGE_SERVICE; problems are
// reported by r.Err.
func ConfigFromEnv(r *config.Reader) Config {
	c := Config{Service: r.String("FILESTORAGE_SERVICE", ServiceName)}
	if r.String("FILESTORAGE_URL", "") != "" {
		c.URL = r.URL("FILESTORAGE_URL", "", "http", "https")
	}
	return c
}

// TokenSource gives the bearer token of each request and drops it when the
// service refuses it, so that the next request gets a new one: a service
// account's token (*authn.TokenSource).
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	Invalidate()
}

// New returns the client c describes, authenticated by tokens: at c.URL
// when set, else at the base URLs picker gives, which finds c.Service
// (platform/consul's resolver.Picker(c.Service)).
func (c Config) New(picker Picker, tokens TokenSource) (*Client, error) {
	if tokens == nil {
		return nil, errors.New("filestorage client: a token source is required")
	}
	opts := Options{BaseURL: c.URL, Token: tokens.Token, OnUnauthorized: tokens.Invalidate}
	if c.URL == "" {
		opts.Picker = picker
	}
	return New(opts)
}
