package app_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/gateway/internal/app"
	"github.com/audiomill/audiomill/gateway/internal/gatewaytest"
	"github.com/audiomill/audiomill/platform/service"
	"github.com/audiomill/audiomill/platform/testenv"
)

// loginFailures is auth's LOGIN_MAX_FAILURES in these tests.
const loginFailures = 3

// from is an HTTP client whose connections come from the loopback address
// local: 127.0.0.2 stands for a proxy in TRUSTED_PROXIES, 127.0.0.3 for a
// client reaching the gateway directly.
func from(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// seedLogin is POST /login (Basic) through c with the header hdr: value.
func seedLogin(t *testing.T, c *http.Client, base, email, password, hdr, value string) int {
	t.Helper()
	req := testenv.NewRequest(t, http.MethodPost, base+"/login", nil, "", "")
	req.SetBasicAuth(email, password)
	req.Header.Set(hdr, value)
	return testenv.DoWith(t, c, req).Status
}

// TestLoginLimitPerClientBehindTrustedProxy: behind a proxy the gateway
// trusts (TRUSTED_PROXIES, here 127.0.0.2 standing for an edge container
// on a compose network), each client named by X-Forwarded-For or X-Real-IP
// gets its own login limit: one client locked out by its bad logins does
// not lock out another behind the same proxy.
func TestLoginLimitPerClientBehindTrustedProxy(t *testing.T) {
	deps := gatewaytest.StartDepsWith(t, &bins, fmt.Sprintf("LOGIN_MAX_FAILURES=%d", loginFailures))
	gw := gatewaytest.StartGateway(t, deps, map[string]string{"TRUSTED_PROXIES": "127.0.0.2/32"})
	user := deps.SignUp(t, gw.URL)
	proxy := from("127.0.0.2")

	for i, hdr := range []string{"X-Forwarded-For", "X-Real-IP"} {
		t.Run(hdr, func(t *testing.T) {
			a, b := fmt.Sprintf("203.0.113.%d", 10+i), fmt.Sprintf("198.51.100.%d", 10+i)
			value := map[string]string{"X-Forwarded-For": "192.0.2.99, " + a, "X-Real-IP": a}[hdr]
			for n := range loginFailures {
				if st := seedLogin(t, proxy, gw.URL, fmt.Sprintf("nobody%d-%d@example.com", i, n), "wrong password", hdr, value); st != http.StatusUnauthorized {
					t.Fatalf("bad login %d of client A = %d, want 401", n+1, st)
				}
			}
			if st := seedLogin(t, proxy, gw.URL, user.Email, user.Password, hdr, value); st != http.StatusTooManyRequests {
				t.Fatalf("client A after %d bad logins = %d, want 429", loginFailures, st)
			}
			bValue := map[string]string{"X-Forwarded-For": a + ", " + b, "X-Real-IP": b}[hdr]
			if st := seedLogin(t, proxy, gw.URL, user.Email, user.Password, hdr, bValue); st != http.StatusOK {
				t.Fatalf("client B behind the same proxy = %d, want 200 (its own limit)", st)
			}
		})
	}
}

// TestSpoofedClientAddressIgnored: a peer outside TRUSTED_PROXIES (even a
// loopback one) is the client whatever X-Real-IP or X-Forwarded-For it
// sends: changing them does not escape its login limit.
func TestSpoofedClientAddressIgnored(t *testing.T) {
	deps := gatewaytest.StartDepsWith(t, &bins, fmt.Sprintf("LOGIN_MAX_FAILURES=%d", loginFailures))
	gw := gatewaytest.StartGateway(t, deps, map[string]string{"TRUSTED_PROXIES": "127.0.0.2/32"})
	user := deps.SignUp(t, gw.URL)
	direct := from("127.0.0.3")

	for n := range loginFailures {
		hdr := []string{"X-Real-IP", "X-Forwarded-For"}[n%2]
		if st := seedLogin(t, direct, gw.URL, fmt.Sprintf("nobody%d@example.com", n), "wrong password", hdr, fmt.Sprintf("203.0.113.%d", n+1)); st != http.StatusUnauthorized {
			t.Fatalf("bad login %d = %d, want 401", n+1, st)
		}
	}
	for _, hdr := range []string{"X-Real-IP", "X-Forwarded-For"} {
		if st := seedLogin(t, direct, gw.URL, user.Email, user.Password, hdr, "198.51.100.200"); st != http.StatusTooManyRequests {
			t.Errorf("login with a fresh spoofed %s = %d, want 429 (the peer's limit)", hdr, st)
		}
	}
}

// TestBadTrustedProxiesStopsStart: a TRUSTED_PROXIES entry that is not a
// CIDR prefix is a start-up error naming the variable.
func TestBadTrustedProxiesStopsStart(t *testing.T) {
	env := map[string]string{"PORT": "0", "CONSUL_HTTP_ADDR": "127.0.0.1:1", "TRUSTED_PROXIES": "10.0.0.0/8,edge"}
	m := service.NewMain(app.Spec("test"), func(k string) string { return env[k] }, io.Discard)
	err := m.Open(testenv.Context(t, 10*time.Second))
	if err == nil {
		_ = m.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "TRUSTED_PROXIES") || !strings.Contains(err.Error(), `"edge"`) {
		t.Fatalf("Open = %v, want an error naming TRUSTED_PROXIES and the bad entry", err)
	}
}
