package authn_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/consul"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/logging"
	"github.com/audiomill/audiomill/platform/testenv"
)

const (
	tsClientID     = "tokensource"
	tsClientSecret = "tokensource-secret-0123456789"
)

// startAuthProcess builds and runs the real auth program with its own
// database and a service account, on an ephemeral port. It does not register
// in Consul as "auth" (its Consul address is unreachable), so no other test
// or stack routes to it; it returns its base URL.
func startAuthProcess(tb testing.TB, serviceTTL string) string {
	tb.Helper()
	bin, err := testenv.BuildService(tb.TempDir(), "auth")
	if err != nil {
		tb.Fatal(err)
	}
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT=0", "CONSUL_HTTP_ADDR=127.0.0.1:1", "LOG_LEVEL=info",
		"DATABASE_URL="+testenv.NewDatabase(tb), "REDIS_ADDR="+testenv.RedisAddr(tb),
		"REDIS_KEY_PREFIX=authnts:"+id+":", "BCRYPT_COST=10", "SHUTDOWN_DELAY=0s",
		"SERVICE_TOKEN_TTL="+serviceTTL, "AUTH_KEK="+testenv.AuthKEK(tb),
		"SERVICE_CLIENTS="+tsClientID+":"+tsClientSecret+":storage:admin storage:read")
	p := testenv.StartProcess(tb, cmd)
	p.WaitReady(tb, 20*time.Second)
	base := "http://" + p.Addr
	return base
}

// countingTransport counts the token requests that reach auth.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

func TestTokenSource(t *testing.T) {
	base := startAuthProcess(t, "4s")
	ctx := testenv.Context(t, 60*time.Second)

	t.Run("CachesAndSharesOneRequest", func(t *testing.T) {
		ct := &countingTransport{}
		ts, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: tsClientID, ClientSecret: tsClientSecret,
			BaseURL: base, HTTPClient: &http.Client{Transport: ct}})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		toks := make([]string, 16)
		errList := make([]error, 16)
		for i := range toks {
			wg.Go(func() { toks[i], errList[i] = ts.Token(ctx) })
		}
		wg.Wait()
		for i := range toks {
			if errList[i] != nil || toks[i] == "" || toks[i] != toks[0] {
				t.Fatalf("caller %d: %q, %v (first %q)", i, toks[i], errList[i], toks[0])
			}
		}
		if n := ct.n.Load(); n != 1 {
			t.Fatalf("%d token requests for 16 concurrent callers; want 1", n)
		}
		again, err := ts.Token(ctx)
		if err != nil || again != toks[0] || ct.n.Load() != 1 {
			t.Fatalf("cached token: %v, same=%v, requests=%d", err, again == toks[0], ct.n.Load())
		}
		// The token is a real service token: the JWKS of the same auth verifies it.
		keys, err := authn.JWKSFromURL(ctx, base+"/.well-known/jwks.json", authn.JWKSOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v, err := authn.New(authn.Options{Issuer: authn.DefaultIssuer, Audience: authn.DefaultAudience, Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		p, err := v.Verify(ctx, again)
		if err != nil {
			t.Fatal(err)
		}
		if p.ServiceName() != tsClientID || !p.HasScope("storage:admin") {
			t.Fatalf("principal %+v", p)
		}
	})

	t.Run("RefreshesBeforeExpiry", func(t *testing.T) {
		ct := &countingTransport{}
		ts, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: tsClientID, ClientSecret: tsClientSecret,
			BaseURL: base, RefreshBefore: 3 * time.Second, HTTPClient: &http.Client{Transport: ct}})
		if err != nil {
			t.Fatal(err)
		}
		first, err := ts.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// TTL 4s, refresh at most half the lifetime before: after 2s.
		time.Sleep(2500 * time.Millisecond)
		second, err := ts.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if second == first || ct.n.Load() != 2 {
			t.Fatalf("token not renewed before expiry (same=%v, requests=%d)", second == first, ct.n.Load())
		}
	})

	t.Run("ThroughConsul", func(t *testing.T) {
		client, err := consul.NewClient(testenv.ConsulAddr(t), testenv.ConsulToken(t))
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(base[len("http://"):])
		portNum, _ := strconv.Atoi(port)
		name := fmt.Sprintf("auth-ts-test-%d", time.Now().UnixNano())
		if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: name, Name: name, Address: host, Port: portNum}); err != nil {
			t.Fatalf("consul register: %v", err)
		}
		t.Cleanup(func() { _ = client.Agent().ServiceDeregister(name) })
		logger, _ := logging.New(os.Stderr, "warn", "test")
		resolver := consul.NewResolver(client, logger)
		t.Cleanup(func() { _ = resolver.Close() })
		ts, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: tsClientID, ClientSecret: tsClientSecret,
			Resolver: resolver, Service: name})
		if err != nil {
			t.Fatal(err)
		}
		if tok, err := ts.Token(ctx); err != nil || tok == "" {
			t.Fatalf("token through consul: %q, %v", tok, err)
		}
	})

	t.Run("ErrWrongSecret", func(t *testing.T) {
		ts, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: tsClientID, ClientSecret: "wrong-secret-0123456789", BaseURL: base})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ts.Token(ctx); errs.CodeOf(err) != errs.Unauthorized {
			t.Fatalf("wrong secret: %v; want unauthorized", err)
		}
	})

	t.Run("ErrAuthDown", func(t *testing.T) {
		ts, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: tsClientID, ClientSecret: tsClientSecret,
			BaseURL: "http://127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ts.Token(ctx); errs.CodeOf(err) != errs.Unavailable {
			t.Fatalf("auth down: %v; want unavailable", err)
		}
	})

	t.Run("ErrMissingOptions", func(t *testing.T) {
		if _, err := authn.NewTokenSource(authn.TokenSourceOptions{BaseURL: base}); err == nil {
			t.Fatal("no credentials accepted")
		}
		if _, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: "a", ClientSecret: "b"}); err == nil {
			t.Fatal("no base URL nor resolver accepted")
		}
	})
}
