package authn_test

import (
	"strings"
	"testing"

	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/config"
)

func TestReadServiceAccount(t *testing.T) {
	read := func(defaultID string, env map[string]string) (authn.ServiceAccount, error) {
		r := config.NewReader(func(k string) string { return env[k] })
		a := authn.ReadServiceAccount(r, defaultID)
		return a, r.Err()
	}
	secret := "0123456789abcdef"

	a, err := read("gateway", nil)
	if err != nil || a.ClientID != "gateway" || a.Configured() || a.AuthURL != "" || a.AuthService != authn.DefaultAuthService {
		t.Fatalf("optional, unset: %+v, %v", a, err)
	}
	a, err = read("", map[string]string{"SERVICE_CLIENT_ID": "converter", "SERVICE_CLIENT_SECRET": secret,
		"AUTH_URL": "http://127.0.0.1:8101", "AUTH_SERVICE": "auth-2"})
	if err != nil || a.ClientID != "converter" || !a.Configured() || a.AuthURL != "http://127.0.0.1:8101" || a.AuthService != "auth-2" {
		t.Fatalf("required, set: %+v, %v", a, err)
	}
	if _, err := a.TokenSource(nil); err != nil {
		t.Fatalf("token source: %v", err)
	}

	for _, tc := range []struct {
		name, defaultID, variable string
		env                       map[string]string
	}{
		{"ErrIDRequired", "", "SERVICE_CLIENT_ID", map[string]string{"SERVICE_CLIENT_SECRET": secret}},
		{"ErrSecretRequired", "", "SERVICE_CLIENT_SECRET", map[string]string{"SERVICE_CLIENT_ID": "converter"}},
		{"ErrSecretShort", "gateway", "SERVICE_CLIENT_SECRET", map[string]string{"SERVICE_CLIENT_SECRET": "short"}},
		{"ErrAuthURLRelative", "gateway", "AUTH_URL", map[string]string{"AUTH_URL": "auth:8101"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := read(tc.defaultID, tc.env); err == nil || !strings.Contains(err.Error(), tc.variable) {
				t.Fatalf("err = %v, want one naming %s", err, tc.variable)
			}
		})
	}
}
