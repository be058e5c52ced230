package service

import (
	"context"
	"fmt"
	"time"

	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/consul"
)

// Resolver returns the service's Consul resolver, which finds the passing
// instances of other services (watching Consul in the background); it is
// closed at shutdown. Every call returns the same resolver.
func (a *App) Resolver() *consul.Resolver {
	if a.resolver == nil {
		a.resolver = consul.NewResolver(a.Consul, a.Logger)
		resolver := a.resolver
		a.OnClose("resolver", func(context.Context) error { return resolver.Close() })
	}
	return a.resolver
}

// Verifier builds the token verifier cfg describes (read with
// authn.ReadConfig): auth's keys (a static key, a JWKS URL, or auth's JWKS
// found through Resolver) and the deny list in Redis.
func (a *App) Verifier(ctx context.Context, cfg authn.Config) (*authn.Verifier, error) {
	keys, err := cfg.Keys(ctx, a.Resolver(), a.Logger)
	if err != nil {
		return nil, fmt.Errorf("token keys: %w", err)
	}
	verifier, err := authn.New(authn.Options{Issuer: cfg.Issuer, Audience: cfg.Audience, Keys: keys,
		DenyList: a.Redis(), Logger: a.Logger})
	if err != nil {
		return nil, fmt.Errorf("token verifier: %w", err)
	}
	return verifier, nil
}

// closeMargin is what a background task with a grace period gets on top of
// it to hand back what it holds once stopped.
const closeMargin = 10 * time.Second

// Go runs task in a goroutine until the service stops: at shutdown the
// closer called name cancels task's context and waits for task to return,
// for the closers' usual bound. Call Go after building the clients task
// uses, so that it stops before they close.
func (a *App) Go(ctx context.Context, name string, task func(context.Context)) {
	a.start(ctx, name, nil, task)
}

// GoWithGrace is Go for a task that gives the work in hand grace after it
// is stopped: the closer waits for grace plus a margin for the task to hand
// back what it holds, instead of the closers' usual bound.
func (a *App) GoWithGrace(ctx context.Context, name string, grace time.Duration, task func(context.Context)) {
	a.start(ctx, name, &grace, task)
}

// start runs task and registers its closer (see Go and GoWithGrace).
func (a *App) start(ctx context.Context, name string, grace *time.Duration, task func(context.Context)) {
	taskCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		task(taskCtx)
	}()
	a.OnClose(name, func(closeCtx context.Context) error {
		cancel()
		if grace != nil {
			select {
			case <-done:
				return nil
			case <-time.After(*grace + closeMargin):
				return fmt.Errorf("%s still busy %s after the grace period", name, closeMargin)
			}
		}
		select {
		case <-done:
			return nil
		case <-closeCtx.Done():
			return fmt.Errorf("%s still busy: %w", name, closeCtx.Err())
		}
	})
}
