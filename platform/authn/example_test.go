package authn_test

import (
	"context"
	"net/http"

	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/service"
)

// A service's Wire verifies tokens with auth's JWKS, found through Consul,
// and protects its routes with the middleware.
func Example() {
	wire := func(ctx context.Context, app *service.App) error {
		cfg := authn.ReadConfig(app.Env) // AUTH_ISSUER, AUTH_AUDIENCE, AUTH_JWKS_URL, AUTH_PUBLIC_KEY, …
		// auth's keys (its JWKS, found through app.Resolver) and the deny list in app.Redis.
		v, err := app.Verifier(ctx, cfg)
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
