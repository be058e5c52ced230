package authn_test

import (
	"context"
	"net/http"

	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/consul"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/service"
)

// A service's Wire verifies tokens with auth's JWKS, found through Consul,
// and protects its routes with the middleware.
func Example() {
	wire := func(ctx context.Context, app *service.App) error {
		cfg := authn.ConfigFromEnv(app.Env) // AUTH_ISSUER, AUTH_AUDIENCE, AUTH_JWKS_URL, AUTH_PUBLIC_KEY, …
		resolver := consul.NewResolver(app.Consul, app.Logger)
		app.OnClose("resolver", func(context.Context) error { return resolver.Close() })
		keys, err := cfg.Keys(ctx, resolver, app.Logger)
		if err != nil {
			return err
		}
		v, err := authn.New(authn.Options{Issuer: cfg.Issuer, Audience: cfg.Audience, Keys: keys,
			DenyList: app.Redis(), Logger: app.Logger})
		if err != nil {
			return err
		}
		files := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := authn.FromContext(r.Context())
			httpapi.WriteJSON(w, http.StatusOK, map[string]string{"owner": p.Subject})
		})
		app.Server.Router().Handle("/v1/files", authn.Middleware(v)(authn.RequireScope(v, "storage:read")(files)))
		return nil
	}
	_ = service.Spec{Name: "filestorage", DefaultPort: 8102, Wire: wire}
}
