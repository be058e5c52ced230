package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/audiomill/audiomill/platform/consul"
	"github.com/audiomill/audiomill/platform/testenv"
)

// aclAgent is a throwaway Consul agent started the way scripts/deps.sh
// starts the stack's (consul/dev.hcl plus the var/data/consul-acl.hcl that
// scripts/lib.sh writes, then consul/acl-bootstrap.sh), on ports of its own,
// so that the stack's agent is never touched.
type aclAgent struct {
	t          *testing.T
	root       string
	varDir     string
	addr       string
	args       []string
	cmd        *exec.Cmd
	tokensFile string // consul/acl-bootstrap.sh's TOKENS_FILE
	tokens     map[string]string
}

// startACLAgent generates the tokens with scripts/lib.sh, starts the agent
// and runs the bootstrap.
func startACLAgent(t *testing.T) *aclAgent {
	t.Helper()
	root := repoRoot(t)
	a := &aclAgent{t: t, root: root, varDir: filepath.Join(t.TempDir(), "var")}
	a.lib("ensure_consul_tokens")
	a.run([]string{filepath.Join(root, "consul/dev.hcl"), filepath.Join(a.varDir, "data/consul-acl.hcl")},
		filepath.Join(a.varDir, "data/consul-tokens.env"))
	return a
}

// startACLAgentWith starts an agent with the config files (on ports of its
// own) and runs consul/acl-bootstrap.sh with tokensFile.
func startACLAgentWith(t *testing.T, configFiles []string, tokensFile string) *aclAgent {
	t.Helper()
	a := &aclAgent{t: t, root: repoRoot(t), varDir: filepath.Join(t.TempDir(), "var")}
	a.run(configFiles, tokensFile)
	return a
}

func (a *aclAgent) run(configFiles []string, tokensFile string) {
	t := a.t
	t.Helper()
	bin := strings.TrimSpace(a.lib("consul_bin"))
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("consul is not installed (%v); run `make deps` (scripts/install.sh)", err)
	}
	port := testenv.FreePort(t)
	a.addr = "127.0.0.1:" + strconv.Itoa(port)
	a.args = []string{"agent", "-dev"}
	for _, f := range configFiles {
		a.args = append(a.args, "-config-file", f)
	}
	a.args = append(a.args, "-node", fmt.Sprintf("acltest-%d", port), "-http-port", strconv.Itoa(port),
		"-server-port", strconv.Itoa(testenv.FreePort(t)), "-serf-lan-port", strconv.Itoa(testenv.FreePort(t)),
		"-serf-wan-port", strconv.Itoa(testenv.FreePort(t)))
	a.tokensFile = tokensFile
	a.tokens = readTokens(t, tokensFile)
	a.start(bin)
}

// start runs the agent, waits for its leader and bootstraps the ACLs.
func (a *aclAgent) start(bin string) {
	a.t.Helper()
	var logs testenv.LogBuffer
	a.cmd = exec.Command(bin, a.args...)
	a.cmd.Stdout, a.cmd.Stderr = &logs, &logs
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	cmd := a.cmd
	a.t.Cleanup(func() { a.kill(cmd) })
	testenv.Eventually(a.t, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + a.addr + "/v1/status/leader")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && len(b) > 2 && string(b) != `""`
	}, "the test's Consul agent has no leader:\n%s", &logs)
	boot := exec.Command(filepath.Join(a.root, "consul/acl-bootstrap.sh"), a.tokensFile)
	boot.Env = append(os.Environ(), "CONSUL_HTTP_ADDR="+a.addr)
	if out, err := boot.CombinedOutput(); err != nil {
		a.t.Fatalf("consul/acl-bootstrap.sh: %v\n%s", err, out)
	}
}

func (a *aclAgent) kill(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
}

// lib runs a function of scripts/lib.sh with the test's var/.
func (a *aclAgent) lib(script string) string {
	a.t.Helper()
	return runLib(a.t, a.root, script, "AUDIOMILL_VAR_DIR="+a.varDir)
}

// runLib runs script after sourcing root's scripts/lib.sh, with env added to
// the test's environment, and returns its output.
func runLib(t *testing.T, root, script string, env ...string) string {
	t.Helper()
	cmd := exec.Command("bash", "-c", "set -eu; source scripts/lib.sh; "+script)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash (scripts/lib.sh) %q with %v: %v", script, env, err)
	}
	return string(out)
}

// client returns a Consul client with the token name ("" for none).
func (a *aclAgent) client(name string) *api.Client {
	a.t.Helper()
	token := ""
	if name != "" {
		token = a.tokens[name]
		if token == "" {
			a.t.Fatalf("no token %q in consul-tokens.env", name)
		}
	}
	c, err := consul.NewClient(a.addr, token)
	if err != nil {
		a.t.Fatal(err)
	}
	return c
}

func readTokens(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tokens := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			tokens[k] = v
		}
	}
	return tokens
}

// register registers an instance of service at 127.0.0.1:port with the
// client's token.
func register(c *api.Client, service, id string, port int) error {
	return c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: service, Address: "127.0.0.1", Port: port})
}

func isForbidden(err error) bool {
	var se api.StatusError
	if e, ok := err.(api.StatusError); ok {
		se = e
	}
	return se.Code == http.StatusForbidden || (err != nil && strings.Contains(err.Error(), "403"))
}

// TestConsulACLs: with the stack's agent configuration nobody without a
// token registers anything, and a service's token registers only its own
// name; so an impostor cannot put a fake auth into the catalog that the
// other services would fetch their JWKS from and send their client
// secrets to (docs/security.md).
func TestConsulACLs(t *testing.T) {
	a := startACLAgent(t)

	t.Run("FilesPrivate", func(t *testing.T) {
		for _, name := range []string{"consul-tokens.env", "consul-operator.token", "consul-acl.hcl"} {
			fi, err := os.Stat(filepath.Join(a.varDir, "data", name))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("var/data/%s: %v, %v; want mode 600", name, fi.Mode(), err)
			}
		}
		op, _ := os.ReadFile(filepath.Join(a.varDir, "data", "consul-operator.token"))
		if strings.TrimSpace(string(op)) != a.tokens["management"] {
			t.Errorf("consul-operator.token is not the management token")
		}
	})

	t.Run("AnonymousRegisterForbidden", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, "http://"+a.addr+"/v1/agent/service/register",
			strings.NewReader(`{"Name":"auth","ID":"impostor","Address":"127.0.0.1","Port":1}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("anonymous register of auth: %d, want 403", resp.StatusCode)
		}
		_, err = a.client("").Catalog().Register(&api.CatalogRegistration{Node: "impostor", Address: "127.0.0.1",
			Service: &api.AgentService{ID: "impostor", Service: "auth", Port: 1}}, nil)
		if !isForbidden(err) {
			t.Errorf("anonymous catalog register of auth: %v, want 403", err)
		}
	})

	t.Run("EachServiceRegistersOnlyItself", func(t *testing.T) {
		services := []string{"auth", "filestorage", "gateway", "converter", "notifier"}
		for _, who := range append(services, "edge") {
			c := a.client(who)
			for _, svc := range services {
				err := register(c, svc, who+"-as-"+svc, 1)
				switch {
				case who == svc && err != nil:
					t.Errorf("%s's token cannot register %s: %v", who, svc, err)
				case who != svc && !isForbidden(err):
					t.Errorf("%s's token registering %s: %v, want 403", who, svc, err)
				}
				if err == nil {
					_ = c.Agent().ServiceDeregister(who + "-as-" + svc)
				}
			}
		}
	})

	t.Run("ImpostorAuthNeverResolved", func(t *testing.T) {
		if err := register(a.client("auth"), "auth", "auth-genuine", 4101); err != nil {
			t.Fatalf("auth's token: %v", err)
		}
		if err := register(a.client("gateway"), "auth", "auth-impostor", 4666); !isForbidden(err) {
			t.Fatalf("the gateway's token registering auth: %v, want 403", err)
		}
		r := consul.NewResolver(a.client("gateway"), slog.New(slog.DiscardHandler))
		defer r.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		inst, err := r.Instances(ctx, "auth")
		if err != nil || len(inst) != 1 || inst[0].Port != 4101 {
			t.Errorf("the gateway resolves auth as %+v, %v; want only the genuine instance on 4101", inst, err)
		}
		// Anonymous reads see nothing.
		entries, _, err := a.client("").Health().Service("auth", "", false, nil)
		if err != nil || len(entries) != 0 {
			t.Errorf("anonymous read of auth: %d entries, %v; want none", len(entries), err)
		}
	})

	t.Run("EdgeTemplateRenders", func(t *testing.T) {
		ct := strings.TrimSpace(a.lib("consul_template_bin"))
		dir := t.TempDir()
		tmpl := filepath.Join(dir, "in.ctmpl")
		if err := os.WriteFile(tmpl, []byte(`{{range service "auth"}}{{.Address}}:{{.Port}} {{end}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		render := func(token string) string {
			out := filepath.Join(dir, "out-"+strconv.Itoa(len(token)))
			cmd := exec.Command(ct, "-consul-addr", a.addr, "-once", "-template", tmpl+":"+out)
			cmd.Env = append(os.Environ(), "CONSUL_HTTP_TOKEN="+token)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("consul-template -once: %v\n%s", err, b)
			}
			b, _ := os.ReadFile(out)
			return strings.TrimSpace(string(b))
		}
		if got := render(a.tokens["edge"]); got != "127.0.0.1:4101" {
			t.Errorf("consul-template with the edge's token rendered %q, want 127.0.0.1:4101", got)
		}
		if got := render(""); got != "" {
			t.Errorf("consul-template without a token rendered %q, want nothing", got)
		}
	})

	t.Run("TokensSurviveRestart", func(t *testing.T) {
		bin := strings.TrimSpace(a.lib("consul_bin"))
		a.kill(a.cmd)
		a.start(bin)
		if err := register(a.client("auth"), "auth", "auth-again", 4102); err != nil {
			t.Errorf("auth's token after the agent restarted: %v", err)
		}
		if err := register(a.client(""), "auth", "impostor-again", 1); !isForbidden(err) {
			t.Errorf("anonymous register after the restart: %v, want 403", err)
		}
	})
}
