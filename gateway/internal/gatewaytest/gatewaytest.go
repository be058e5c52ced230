// Package gatewaytest runs the gateway for tests against the real thing:
// auth and filestorage built from this checkout and run as processes (with
// their own database and directory), and the gateway itself in-process on
// an ephemeral port, with the real PostgreSQL (a fresh database per
// gateway), Redis, RabbitMQ and Consul. Nothing a test starts is registered under a name
// another stack routes to.
//
// It follows the rule of every service's test harness: the package
// internal/<service>test of the service (see auth's internal/authtest).
package gatewaytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/gateway/internal/app"
	"github.com/audiomill/audiomill/platform/service"
	"github.com/audiomill/audiomill/platform/testenv"
)

// ClientSecret is the gateway's service-account secret in tests.
const ClientSecret = "gateway-test-secret-0123456789"

// ConverterSecret is a second service account ("converter"), which tests
// use to store MP3s as the converter does.
const ConverterSecret = "converter-test-secret-0123456789"

// Binaries builds auth and filestorage once into dir.
type Binaries struct {
	once sync.Once
	Dir  string
	err  error
}

// Build builds the binaries (once).
func (b *Binaries) Build() error {
	b.once.Do(func() {
		for _, svc := range []string{"auth", "filestorage"} {
			if _, b.err = testenv.BuildService(b.Dir, svc); b.err != nil {
				return
			}
		}
	})
	return b.err
}

// Deps are a running auth and filestorage, and a RabbitMQ virtual host of
// the test's own.
type Deps struct {
	AuthURL, FilesURL string
	// AuthDatabaseURL is auth's database (SignUp verifies addresses there).
	AuthDatabaseURL string
	Auth, Files     *testenv.Process
	ID              string
	// AMQPURL is the broker in the test's own virtual host (VHost).
	AMQPURL string
}

func uniqueID() string { return strconv.FormatInt(time.Now().UnixNano(), 36) }

// StartDeps runs auth and filestorage (disk backend in a temp dir) as
// processes. Their Consul address is unreachable on purpose: they must not
// register as "auth" or "filestorage", which other stacks route to.
func StartDeps(tb testing.TB, bins *Binaries) *Deps {
	tb.Helper()
	return StartDepsWith(tb, bins)
}

// StartDepsWith is StartDeps with more of auth's environment ("NAME=value",
// overriding the harness's, e.g. LOGIN_MAX_FAILURES).
func StartDepsWith(tb testing.TB, bins *Binaries, authEnv ...string) *Deps {
	tb.Helper()
	if err := bins.Build(); err != nil {
		tb.Fatal(err)
	}
	d := &Deps{ID: uniqueID(), AMQPURL: VHost(tb)}
	mongoURI, redisAddr := testenv.MongoURI(tb), testenv.RedisAddr(tb)
	authDB, filesDB := "audiomill_gwtest_auth_"+d.ID, "audiomill_gwtest_files_"+d.ID
	common := []string{"PORT=0", "CONSUL_HTTP_ADDR=127.0.0.1:1", "LOG_LEVEL=info", "SHUTDOWN_DELAY=0s",
		"MONGO_URI=" + mongoURI, "REDIS_ADDR=" + redisAddr}
	auth := exec.Command(filepath.Join(bins.Dir, "auth"))
	// auth keeps its records in PostgreSQL (or, before its move, MongoDB):
	// a database of its own either way.
	d.AuthDatabaseURL = testenv.NewDatabase(tb)
	// Its account emails go to the test's virtual host, where no notifier
	// reads them; SIGNUP_MAX_PER_CLIENT: every test user signs up from 127.0.0.1.
	auth.Env = append(append(os.Environ(), common...), "MONGO_DATABASE="+authDB, "DATABASE_URL="+d.AuthDatabaseURL, "BCRYPT_COST=10",
		"REDIS_KEY_PREFIX=gwtest:"+d.ID+":", "LOGIN_MAX_FAILURES=1000", "AMQP_URL="+d.AMQPURL, "SIGNUP_MAX_PER_CLIENT=100000",
		"AUTH_KEK="+testenv.AuthKEK(tb),
		"SERVICE_CLIENTS=gateway:"+ClientSecret+":"+testenv.ServiceAccountScope(tb, "gateway")+
			",converter:"+ConverterSecret+":"+testenv.ServiceAccountScope(tb, "converter"))
	auth.Env = append(auth.Env, authEnv...)
	d.Auth = testenv.StartProcess(tb, auth)
	d.AuthURL = "http://" + d.Auth.Addr
	d.Auth.WaitReady(tb, 20*time.Second)

	files := exec.Command(filepath.Join(bins.Dir, "filestorage"))
	files.Env = append(append(os.Environ(), common...), "MONGO_DATABASE="+filesDB, "FILESTORAGE_BACKEND=disk",
		"FILESTORAGE_DIR="+tb.TempDir(), "AUTH_JWKS_URL="+d.AuthURL+"/.well-known/jwks.json")
	d.Files = testenv.StartProcess(tb, files)
	d.FilesURL = "http://" + d.Files.Addr
	d.Files.WaitReady(tb, 20*time.Second)
	tb.Cleanup(func() { testenv.DropMongoDatabases(mongoURI, authDB, filesDB) })
	return d
}

// Gateway is the gateway running in-process.
type Gateway struct {
	URL string
	// DatabaseURL is its PostgreSQL database (DATABASE_URL).
	DatabaseURL string
	StatusQueue string
	Main        *service.Main
	Logs        *testenv.LogBuffer
	Env         map[string]string
}

// StartGateway runs the gateway in-process against deps; extra overrides
// its environment. Its status queue and database (a fresh one, unless
// extra names DATABASE_URL) are its own and removed at cleanup.
func StartGateway(tb testing.TB, deps *Deps, extra map[string]string) *Gateway {
	tb.Helper()
	g := StartGatewayUnready(tb, deps, extra)
	testenv.Eventually(tb, 20*time.Second, func() bool {
		resp, err := http.Get(g.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "gateway not ready:\n%s", g.Logs.String())
	return g
}

// StartGatewayUnready is StartGateway without waiting for /readyz (for a
// gateway whose dependencies are down on purpose).
func StartGatewayUnready(tb testing.TB, deps *Deps, extra map[string]string) *Gateway {
	tb.Helper()
	id := uniqueID()
	g := &Gateway{StatusQueue: "gatewaytest-" + id + ".job-status", Logs: &testenv.LogBuffer{}}
	g.Env = map[string]string{
		"PORT": "0", "CONSUL_HTTP_ADDR": testenv.ConsulAddr(tb), "CONSUL_HTTP_TOKEN": testenv.ConsulToken(tb),
		"LOG_LEVEL": "debug", "SHUTDOWN_DELAY": "0s",
		"REDIS_ADDR": testenv.RedisAddr(tb),
		"AMQP_URL":   deps.AMQPURL, "AUTH_URL": deps.AuthURL, "FILESTORAGE_URL": deps.FilesURL,
		"AUTH_JWKS_URL":         deps.AuthURL + "/.well-known/jwks.json",
		"SERVICE_CLIENT_SECRET": ClientSecret, "GATEWAY_STATUS_QUEUE": g.StatusQueue,
		"GATEWAY_RELAY_INTERVAL": "500ms", "GATEWAY_RELAY_AFTER": "2s",
	}
	for k, v := range extra {
		g.Env[k] = v
	}
	if g.Env["DATABASE_URL"] == "" {
		g.Env["DATABASE_URL"] = testenv.NewDatabase(tb)
	}
	g.DatabaseURL = g.Env["DATABASE_URL"]
	spec := app.Spec("test")
	spec.Name = "gateway-test-" + id // never routed to as "gateway"
	g.Main = service.NewMain(spec, func(k string) string { return g.Env[k] }, g.Logs)
	if err := g.Main.Open(testenv.Context(tb, 30*time.Second)); err != nil {
		tb.Fatalf("open gateway: %v\n%s", err, g.Logs.String())
	}
	tb.Cleanup(func() { _ = g.Main.Close() })
	g.URL = "http://" + g.Main.Addr()
	return g
}

// VHost is testenv.VHost: a RabbitMQ virtual host of the test's own,
// deleted with everything in it when tb ends. Events published there reach
// only the test's queues: the broker is shared with other stacks (a
// converter consuming converter.video-uploaded would answer a test's
// video.uploaded with audio.failed).
func VHost(tb testing.TB) string {
	tb.Helper()
	return testenv.VHost(tb)
}

// User is a signed-up user with an access token.
type User struct {
	ID, Email, Password, Token string
}

// SignUp creates a user through the gateway's account routes, verifies
// the address in auth's database (as its link would) and logs in.
func (d *Deps) SignUp(tb testing.TB, base string) User {
	tb.Helper()
	u := d.SignUpUnverified(tb, base)
	ctx := testenv.Context(tb, 10*time.Second)
	pool, err := pgxpool.New(ctx, d.AuthDatabaseURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `update users set email_verified = true where id = $1`, u.ID); err != nil {
		tb.Fatalf("verify %s: %v", u.Email, err)
	}
	u.Token = login(tb, base, u)
	return u
}

// SignUpUnverified creates a user through the gateway's account routes and
// logs in, without verifying the address: its token carries
// email_verified false.
func (d *Deps) SignUpUnverified(tb testing.TB, base string) User {
	tb.Helper()
	u := User{Email: "u" + uniqueID() + "@example.com", Password: "correct horse battery staple"}
	body, _ := json.Marshal(map[string]string{"email": u.Email, "password": u.Password})
	resp := testenv.Do(tb, testenv.NewRequest(tb, http.MethodPost, base+"/api/v1/users", bytes.NewReader(body), "application/json", ""))
	if resp.Status != http.StatusAccepted {
		tb.Fatalf("signup: %d %s", resp.Status, resp.Body)
	}
	u.Token = login(tb, base, u)
	claims, err := testenv.UnverifiedClaims(u.Token)
	if err != nil {
		tb.Fatal(err)
	}
	u.ID = claims.Subject
	return u
}

func login(tb testing.TB, base string, u User) string {
	tb.Helper()
	body, _ := json.Marshal(map[string]string{"email": u.Email, "password": u.Password})
	resp := testenv.Do(tb, testenv.NewRequest(tb, http.MethodPost, base+"/api/v1/token", bytes.NewReader(body), "application/json", ""))
	if resp.Status != http.StatusOK {
		tb.Fatalf("token: %d %s", resp.Status, resp.Body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	resp.JSON(tb, &tok)
	return tok.AccessToken
}

// Multipart returns a multipart body with the given files (field → name,
// content) and its content type.
func Multipart(files ...[3]string) (io.Reader, string) {
	var buf bytes.Buffer
	boundary := "gatewaytestboundary" + uniqueID()
	for _, f := range files {
		fmt.Fprintf(&buf, "--%s\r\nContent-Disposition: form-data; name=%q; filename=%q\r\nContent-Type: video/mp4\r\n\r\n%s\r\n",
			boundary, f[0], f[1], f[2])
	}
	fmt.Fprintf(&buf, "--%s--\r\n", boundary)
	return &buf, "multipart/form-data; boundary=" + boundary
}
