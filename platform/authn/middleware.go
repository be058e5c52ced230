package authn

import (
	"net/http"
	"strings"

	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header value. The scheme is case-insensitive; the token must be one
// non-empty word.
func BearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// Middleware verifies the request's bearer token with v and puts its
// Principal in the request context (FromContext). A missing, malformed,
// invalid, expired or revoked token is answered 401 with the JSON error
// body and a WWW-Authenticate challenge; the handler is not called.
func Middleware(v *Verifier) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, ok := BearerToken(r.Header.Get("Authorization"))
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="audiomill"`)
				httpapi.WriteError(w, r, v.logger, errs.E(errs.Unauthorized, "a bearer token is required"))
				return
			}
			p, err := v.Verify(r.Context(), raw)
			if err != nil {
				if errs.CodeOf(err) == errs.Unauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="audiomill", error="invalid_token"`)
				}
				httpapi.WriteError(w, r, v.logger, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
		})
	}
}

// RequireScope lets through requests whose principal (set by Middleware)
// has scope; others get 403 (401 when there is no principal at all).
func RequireScope(v *Verifier, scope string) func(http.Handler) http.Handler {
	return require(v, func(p Principal) bool { return p.HasScope(scope) }, "the token lacks scope "+scope)
}

// RequireRole is RequireScope for a role.
func RequireRole(v *Verifier, role string) func(http.Handler) http.Handler {
	return require(v, func(p Principal) bool { return p.HasRole(role) }, "the token lacks role "+role)
}

func require(v *Verifier, ok func(Principal) bool, msg string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, found := FromContext(r.Context())
			switch {
			case !found:
				httpapi.WriteError(w, r, v.logger, errs.E(errs.Unauthorized, "a bearer token is required"))
			case !ok(p):
				httpapi.WriteError(w, r, v.logger, errs.E(errs.Forbidden, "%s", msg))
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
}
