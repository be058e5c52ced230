package e2e_test

// Checks of docker-compose.yml, its Dockerfiles and the edge's container
// entrypoint, without a Docker engine: the file loads (compose-go and
// Debian's docker-compose), every container has a healthcheck, every build
// exists and builds through scripts/build.sh, every service gets the
// variables it needs pointing at the compose services it depends on, the
// secrets are generated and handed over as files, Consul denies by default
// and each container gets only its own token, and the edge template
// rendered with the edge container's settings passes `nginx -t`.
//
// The lists they check against come from the local stack and the docs
// (scripts/lib.sh SERVICES, SERVICE_PORT and SERVICE_ACCOUNTS; the dependency
// table of docs/configuration.md), so a new service, account or dependency
// shows up here.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	consul "github.com/hashicorp/consul/api"

	"github.com/audiomill/audiomill/e2e/stack"
	"github.com/audiomill/audiomill/platform/testenv"
)

const (
	composeFile = "docker-compose.yml"
	// tlsOverride turns TLS on at the edge (docs/operations.md).
	tlsOverride = "docker-compose.tls.yml"
	// edgeService is the compose service of the nginx edge.
	edgeService = "edge"
	// secretsDir holds the compose secrets' files (docker/secrets.sh writes them).
	secretsDir = "docker/secrets"
	// runSecrets is where containers see their compose secrets.
	runSecrets = "/run/secrets/"
	// serviceBuildScript is the one build command of the services.
	serviceBuildScript = "scripts/build.sh"
)

// composeDependencies are the compose services the audiomill services may
// depend on, besides each other (they do not: they meet through Consul).
var composeDependencies = []string{"consul", "postgres", "mongo", "rabbitmq", "redis", "maildev"}

// consulACLService is the one-shot that creates Consul's ACL tokens
// (consul/acl-bootstrap.sh); the services and the edge start after it
// completed. composeOneShots are the compose services that run once and
// exit, so they have no healthcheck.
const consulACLService = "consul-acl"

var composeOneShots = []string{consulACLService}

// localStack is what scripts/lib.sh says about the services.
type localStack struct {
	services []string       // SERVICES
	ports    map[string]int // SERVICE_PORT
	accounts []string       // SERVICE_ACCOUNTS: services that call others with a service token
}

func readLocalStack(t *testing.T, root string) localStack {
	t.Helper()
	out := bashLib(t, root, `echo "${SERVICES[*]}"; for s in "${SERVICES[@]}"; do printf '%s=%s ' "$s" "${SERVICE_PORT[$s]}"; done; echo; echo "${SERVICE_ACCOUNTS[*]}"`)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("scripts/lib.sh: unexpected output %q", out)
	}
	ls := localStack{services: strings.Fields(lines[0]), ports: map[string]int{}, accounts: strings.Fields(lines[2])}
	for _, kv := range strings.Fields(lines[1]) {
		name, port, _ := strings.Cut(kv, "=")
		p, err := strconv.Atoi(port)
		if err != nil {
			t.Fatalf("scripts/lib.sh: SERVICE_PORT[%s]=%q", name, port)
		}
		ls.ports[name] = p
	}
	if len(ls.services) == 0 || len(ls.accounts) == 0 {
		t.Fatalf("scripts/lib.sh: no SERVICES or SERVICE_ACCOUNTS in %q", out)
	}
	return ls
}

// bashLib runs script after sourcing scripts/lib.sh and returns its stdout.
func bashLib(t *testing.T, root, script string) string {
	t.Helper()
	cmd := exec.Command("bash", "-c", "set -eu; source scripts/lib.sh; "+script)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash (scripts/lib.sh) %q: %v\n%s", script, err, stderr.String())
	}
	return string(out)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// loadCompose loads docker-compose.yml (and overrides on top of it, such as
// tlsOverride) as `docker compose` would, with no variable from the test's
// environment.
func loadCompose(t *testing.T, root string, overrides ...string) *types.Project {
	t.Helper()
	files := []string{filepath.Join(root, composeFile)}
	for _, o := range overrides {
		files = append(files, filepath.Join(root, o))
	}
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(root), cli.WithName("audiomill"), cli.WithEnv([]string{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("compose-go cannot load %s: %v", strings.Join(files, " + "), err)
	}
	return p
}

func env(svc types.ServiceConfig, name string) (string, bool) {
	v, ok := svc.Environment[name]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

func TestComposeServices(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	ls := readLocalStack(t, root)

	want := slices.Concat(composeDependencies, composeOneShots, ls.services, []string{edgeService})
	slices.Sort(want)
	got := p.ServiceNames()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("compose services = %v, want %v", got, want)
	}

	for _, name := range got {
		svc := p.Services[name]
		t.Run(name, func(t *testing.T) {
			if svc.Image == "" {
				t.Error("no image name")
			}
			if slices.Contains(composeOneShots, name) {
				// Runs once: restarted, it would never complete.
				if svc.Restart != types.RestartPolicyNo {
					t.Errorf("one-shot with restart policy %q, want %q", svc.Restart, types.RestartPolicyNo)
				}
				return
			}
			hc := svc.HealthCheck
			if hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Test[0] == "NONE" {
				t.Errorf("no healthcheck (%+v)", hc)
			}
			if svc.Restart == "" {
				t.Error("no restart policy")
			}
		})
	}

	// Scale-out: no fixed container name and no published port on a service,
	// so `--scale <service>=N` starts N containers side by side.
	for _, name := range ls.services {
		svc := p.Services[name]
		if svc.ContainerName != "" {
			t.Errorf("%s: container_name %q prevents --scale", name, svc.ContainerName)
		}
		if len(svc.Ports) > 0 {
			t.Errorf("%s: publishes ports %v; only the edge and the operators' UIs do (and --scale needs none)", name, svc.Ports)
		}
		if svc.StopGracePeriod == nil || time.Duration(*svc.StopGracePeriod) < 20*time.Second {
			t.Errorf("%s: stop_grace_period %v shorter than SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT (20s)", name, svc.StopGracePeriod)
		}
	}
	if len(p.Services[edgeService].Ports) == 0 {
		t.Errorf("%s publishes no port", edgeService)
	}
}

func TestComposeBuilds(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	ls := readLocalStack(t, root)

	for _, name := range append(slices.Clone(ls.services), edgeService) {
		svc := p.Services[name]
		t.Run(name, func(t *testing.T) {
			b := svc.Build
			if b == nil {
				t.Fatal("no build")
			}
			if fi, err := os.Stat(b.Context); err != nil || !fi.IsDir() {
				t.Fatalf("build context %s: not a directory (%v)", b.Context, err)
			}
			dockerfile := b.Dockerfile
			if !filepath.IsAbs(dockerfile) {
				dockerfile = filepath.Join(b.Context, dockerfile)
			}
			src, err := os.ReadFile(dockerfile)
			if err != nil {
				t.Fatalf("Dockerfile: %v", err)
			}
			ignore, err := os.ReadFile(filepath.Join(b.Context, ".dockerignore"))
			if err != nil {
				t.Fatalf(".dockerignore: %v", err)
			}
			for _, pattern := range []string{".git", "var", secretsDir} {
				if !slices.Contains(strings.Fields(string(ignore)), pattern) {
					t.Errorf(".dockerignore does not exclude %s", pattern)
				}
			}
			stages := dockerStages(string(src))
			if name == edgeService {
				checkEdgeDockerfile(t, stages)
				return
			}
			if arg := b.Args["SERVICE"]; arg == nil || *arg != name {
				t.Errorf("build arg SERVICE = %v, want %s", arg, name)
			}
			checkServiceDockerfile(t, stages, name)
		})
	}
}

// dockerStage is one FROM … of a Dockerfile: its base, name and instructions
// (continuation lines joined).
type dockerStage struct {
	from, name string
	lines      []string
}

func dockerStages(src string) []dockerStage {
	var stages []dockerStage
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		if f := strings.Fields(line); strings.EqualFold(f[0], "FROM") {
			st := dockerStage{}
			args := slices.DeleteFunc(f[1:], func(s string) bool { return strings.HasPrefix(s, "--") })
			if len(args) > 0 {
				st.from = args[0]
			}
			if len(args) == 3 && strings.EqualFold(args[1], "AS") {
				st.name = args[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
		}
	}
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if rest, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return stages
}

// checkServiceDockerfile: the build stage builds with scripts/build.sh (and
// with no go build of its own), the image's stage copies what it built, runs
// as a non-root user with curl for the healthcheck, and the converter's has ffmpeg.
func checkServiceDockerfile(t *testing.T, stages []dockerStage, service string) {
	t.Helper()
	var build *dockerStage
	for i, st := range stages {
		for _, l := range st.lines {
			if strings.HasPrefix(l, "RUN") && strings.Contains(l, serviceBuildScript) {
				build = &stages[i]
			}
			if strings.HasPrefix(l, "RUN") && strings.Contains(l, "go build") {
				t.Errorf("stage %q runs its own go build (%s); build through %s", st.name, l, serviceBuildScript)
			}
		}
	}
	if build == nil {
		t.Fatalf("no stage runs %s", serviceBuildScript)
	}
	if !strings.HasPrefix(build.from, "golang:") {
		t.Errorf("build stage %q is FROM %s, want golang:…", build.name, build.from)
	}
	runLine := ""
	for _, l := range build.lines {
		if strings.Contains(l, serviceBuildScript) {
			runLine = l
		}
	}
	m := regexp.MustCompile(`AUDIOMILL_VAR_DIR=(\S+)`).FindStringSubmatch(runLine)
	if m == nil || !strings.Contains(runLine, serviceBuildScript+` "$SERVICE"`) {
		t.Fatalf("build stage: %q does not run AUDIOMILL_VAR_DIR=<dir> %s \"$SERVICE\"", runLine, serviceBuildScript)
	}
	binary := m[1] + "/bin/${SERVICE}"

	final := stages[len(stages)-1]
	var copied, user, entrypoint bool
	for _, l := range final.lines {
		copied = copied || strings.HasPrefix(l, "COPY --from="+build.name+" "+binary+" ")
		if rest, ok := strings.CutPrefix(l, "USER "); ok && rest != "root" && rest != "0" {
			user = true
		}
		entrypoint = entrypoint || strings.HasPrefix(l, "ENTRYPOINT")
	}
	if !copied {
		t.Errorf("the image's stage does not COPY --from=%s %s", build.name, binary)
	}
	if !user {
		t.Error("the image's stage runs as root (no USER)")
	}
	if !entrypoint {
		t.Error("the image's stage has no ENTRYPOINT")
	}

	// The runtime stages the image can be built FROM: runtime-<service> and its bases.
	packages := ""
	for name := "runtime-" + service; name != ""; {
		var st *dockerStage
		for i := range stages {
			if stages[i].name == name {
				st = &stages[i]
			}
		}
		if st == nil {
			break
		}
		for _, l := range st.lines {
			if strings.HasPrefix(l, "RUN") && strings.Contains(l, "apt-get install") {
				packages += " " + l
			}
		}
		name = st.from
	}
	if !strings.Contains(final.from, "${SERVICE}") {
		t.Errorf("the image's stage is FROM %s, want runtime-${SERVICE}", final.from)
	}
	if !regexp.MustCompile(`\bcurl\b`).MatchString(packages) {
		t.Errorf("runtime-%s installs no curl (the healthcheck's GET /readyz)", service)
	}
	if hasFFmpeg := regexp.MustCompile(`\bffmpeg\b`).MatchString(packages); hasFFmpeg != (service == "converter") {
		t.Errorf("runtime-%s: ffmpeg installed = %v, want %v", service, hasFFmpeg, service == "converter")
	}
}

// checkEdgeDockerfile: consul-template built from tools/go.mod the way
// scripts/install.sh builds it, on the official nginx image, running
// nginx/docker-entrypoint.sh as a non-root user.
func checkEdgeDockerfile(t *testing.T, stages []dockerStage) {
	t.Helper()
	all := ""
	for _, st := range stages {
		all += strings.Join(st.lines, "\n") + "\n"
	}
	for _, want := range []string{
		"COPY tools/go.mod tools/go.sum",
		"GOWORK=off",
		"go build -trimpath -o /out/consul-template github.com/hashicorp/consul-template",
		"COPY nginx/ nginx/",
		"COPY consul/acl-bootstrap.sh consul/", // for the one-shot consul-acl
		`ENTRYPOINT ["/bin/bash", "nginx/docker-entrypoint.sh"]`,
		"USER nginx",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("docker/edge.Dockerfile: no %q", want)
		}
	}
	if from := stages[len(stages)-1].from; !strings.Contains(from, "NGINX_IMAGE") && !strings.HasPrefix(from, "nginx") {
		t.Errorf("the edge image is FROM %s, want the official nginx image", from)
	}
}

// configurationDependencies parses the table "Dependencies (read by the
// services that use them)" of docs/configuration.md: variable → the services
// that use it, for the variables whose default is a loopback address (which
// in a container is the container itself, so compose must set them).
func configurationDependencies(t *testing.T, root string) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, configurationDoc))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	deps := map[string][]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			in = strings.HasPrefix(line, "## Dependencies")
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if !strings.Contains(cells[2], "127.0.0.1") {
			continue
		}
		for _, s := range strings.Split(cells[3], ",") {
			// "filestorage (auth and gateway: `migrate-from-mongo` only)": filestorage.
			s, _, _ = strings.Cut(strings.TrimSpace(s), " (")
			deps[name] = append(deps[name], s)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"MONGO_URI", "REDIS_ADDR", "AMQP_URL", "SMTP_ADDR"} {
		if len(deps[v]) == 0 {
			t.Fatalf("%s: the Dependencies table has no row for %s with a 127.0.0.1 default (parsed %v)", configurationDoc, v, deps)
		}
	}
	return deps
}

// configurationNames: every `UPPER_CASE` name in docs/configuration.md.
func configurationNames(t *testing.T, root string) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, configurationDoc))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile("`([A-Z][A-Z0-9_]+)`").FindAllStringSubmatch(string(src), -1) {
		vars[m[1]] = true
	}
	return vars
}

// hostOf: the host of a URL (scheme://host:port/…) or host:port.
func hostOf(value string) (string, error) {
	if strings.Contains(value, "://") {
		u, err := url.Parse(value)
		if err != nil {
			return "", err
		}
		return u.Hostname(), nil
	}
	host, _, err := net.SplitHostPort(value)
	return host, err
}

// entrypointFileVars: the NAME of every NAME_FILE docker/entrypoint.sh reads.
func entrypointFileVars(t *testing.T, root string) []string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, "docker/entrypoint.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^for name in ([A-Z0-9_ ]+); do$`).FindStringSubmatch(string(src))
	if m == nil {
		t.Fatal("docker/entrypoint.sh: no `for name in …; do` list of secret variables")
	}
	return strings.Fields(m[1])
}

func TestComposeServiceEnvironment(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	ls := readLocalStack(t, root)
	secrets := composeSecrets(t, root)
	deps := configurationDependencies(t, root)
	known := configurationNames(t, root)
	fileVars := entrypointFileVars(t, root)
	subnet := ""
	if n, ok := p.Networks["default"]; ok && len(n.Ipam.Config) > 0 {
		subnet = n.Ipam.Config[0].Subnet
	}
	if subnet == "" {
		t.Error("the default network has no fixed subnet: TRUSTED_PROXIES cannot name the edge's network")
	}

	for _, name := range ls.services {
		svc := p.Services[name]
		t.Run(name, func(t *testing.T) {
			for variable, want := range map[string]string{
				"BIND_ADDR":      "0.0.0.0",
				"ADVERTISE_ADDR": "auto",
				"PORT":           strconv.Itoa(ls.ports[name]),
				// The edge container is a trusted proxy: its network's subnet.
				"TRUSTED_PROXIES": subnet,
			} {
				if got, _ := env(svc, variable); got != want {
					t.Errorf("%s = %q, want %q", variable, got, want)
				}
			}

			// Every address: a compose dependency this service waits for.
			needs := map[string]string{"CONSUL_HTTP_ADDR": ""}
			for variable, users := range deps {
				if slices.Contains(users, name) {
					needs[variable] = ""
				}
			}
			for variable := range needs {
				// The value, or the content of the secret NAME_FILE names.
				value, ok := secretEnv(t, p, svc, secrets, variable)
				if !ok {
					t.Errorf("%s (or %s_FILE) is not set (the default is loopback, the container itself)", variable, variable)
					continue
				}
				host, err := hostOf(value)
				if err != nil {
					t.Errorf("%s = %q: %v", variable, value, err)
					continue
				}
				if !slices.Contains(composeDependencies, host) {
					t.Errorf("%s = %q: %q is not one of the compose dependencies %v", variable, value, host, composeDependencies)
					continue
				}
				dep, ok := svc.DependsOn[host]
				if !ok || dep.Condition != types.ServiceConditionHealthy {
					t.Errorf("%s uses %s but depends_on[%s] = %+v, want condition %s", variable, host, host, dep, types.ServiceConditionHealthy)
				}
			}
			for dep, cfg := range svc.DependsOn {
				if dep == consulACLService {
					continue // TestComposeConsulACLs
				}
				if cfg.Condition != types.ServiceConditionHealthy {
					t.Errorf("depends_on %s: condition %q, want %s", dep, cfg.Condition, types.ServiceConditionHealthy)
				}
				if slices.Contains(ls.services, dep) {
					t.Errorf("depends_on %s: services meet through Consul, not by start order", dep)
				}
			}

			// No typo: every variable is one docs/configuration.md documents, or NAME_FILE
			// of one that docker/entrypoint.sh (or auth, SERVICE_CLIENTS_FILE) reads.
			for variable, value := range svc.Environment {
				if known[variable] {
					continue
				}
				base, isFile := strings.CutSuffix(variable, "_FILE")
				if !isFile || !known[base] || !slices.Contains(fileVars, base) {
					t.Errorf("%s is neither in %s nor NAME_FILE of a secret docker/entrypoint.sh reads", variable, configurationDoc)
					continue
				}
				if value == nil || !strings.HasPrefix(*value, runSecrets) {
					t.Errorf("%s = %v, want a file in %s", variable, value, runSecrets)
				}
			}

			// Secrets are files, never values in the compose file.
			for _, variable := range []string{"SERVICE_CLIENT_SECRET", "SERVICE_CLIENTS", "SMTP_PASSWORD", "ADMIN_PASSWORD",
				"AMQP_URL", "REDIS_PASSWORD", "MONGO_URI"} {
				if _, ok := env(svc, variable); ok {
					t.Errorf("%s is set in %s; hand it over as a secret file (%s_FILE)", variable, composeFile, variable)
				}
			}
			checkSecretFiles(t, p, svc)

			// Service accounts: the ones the local stack gives an account
			// get theirs; auth gets the list of all.
			if slices.Contains(ls.accounts, name) {
				if got, _ := env(svc, "SERVICE_CLIENT_ID"); got != name {
					t.Errorf("SERVICE_CLIENT_ID = %q, want %q", got, name)
				}
				if _, ok := env(svc, "SERVICE_CLIENT_SECRET_FILE"); !ok {
					t.Error("SERVICE_CLIENT_SECRET_FILE is not set (SERVICE_CLIENT_SECRET is required)")
				}
			}
			if name == "auth" {
				if _, ok := env(svc, "SERVICE_CLIENTS_FILE"); !ok {
					t.Error("SERVICE_CLIENTS_FILE is not set: the service accounts cannot log in")
				}
			}
		})
	}
}

// checkSecretFiles: each NAME_FILE=/run/secrets/<s> of svc names a secret the
// service mounts, whose file is under docker/secrets/ (gitignored).
func checkSecretFiles(t *testing.T, p *types.Project, svc types.ServiceConfig) {
	t.Helper()
	for variable, value := range svc.Environment {
		if !strings.HasSuffix(variable, "_FILE") || value == nil {
			continue
		}
		target := strings.TrimPrefix(*value, runSecrets)
		i := slices.IndexFunc(svc.Secrets, func(s types.ServiceSecretConfig) bool {
			return s.Target == target || (s.Target == "" && s.Source == target) || s.Target == *value
		})
		if i < 0 {
			t.Errorf("%s = %s, but the service mounts no secret %q", variable, *value, target)
			continue
		}
		secret, ok := p.Secrets[svc.Secrets[i].Source]
		if !ok {
			t.Errorf("secret %q is not defined", svc.Secrets[i].Source)
			continue
		}
		if rel, err := filepath.Rel(p.WorkingDir, secret.File); err != nil || filepath.Dir(rel) != secretsDir {
			t.Errorf("secret %q: file %s is not in %s", svc.Secrets[i].Source, secret.File, secretsDir)
		}
	}
}

func TestComposeSecretsScript(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	ls := readLocalStack(t, root)
	dir := filepath.Join(t.TempDir(), "secrets")

	run := func() string {
		cmd := exec.Command("sh", "docker/secrets.sh", dir)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docker/secrets.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	run()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("docker/secrets.sh did not write %s: %v", name, err)
		}
		return string(b)
	}

	// Every secret of the compose file is generated, readable by the
	// containers' non-root users (compose bind-mounts the file as it is).
	for name, s := range p.Secrets {
		base := filepath.Base(s.File)
		fi, err := os.Stat(filepath.Join(dir, base))
		if err != nil {
			t.Errorf("secret %s: docker/secrets.sh does not write %s: %v", name, base, err)
			continue
		}
		if fi.Mode().Perm()&0o004 == 0 {
			t.Errorf("secret %s: mode %v, not readable by the container's user", name, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(dir); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("secrets directory: mode %v, want 0700 (only its owner reads the secrets)", fi.Mode().Perm())
	}

	// auth's list holds every account with the secret that account gets.
	secrets := map[string]string{}
	for _, account := range ls.accounts {
		s := read(account + "_client_secret")
		if len(s) < 16 {
			t.Errorf("%s: secret of %d characters, auth wants at least 16", account, len(s))
		}
		secrets[account] = s
	}
	clients := map[string]string{}
	for _, line := range strings.Split(read("service_clients"), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[2] == "" {
			t.Errorf("service_clients: %q is not id:secret:scope", line)
			continue
		}
		clients[f[0]] = f[1]
	}
	for account, s := range secrets {
		if clients[account] != s {
			t.Errorf("service_clients: %s's secret differs from %s_client_secret", account, account)
		}
	}
	if read("smtp_password") != "" {
		t.Error("smtp_password is not empty (MailDev takes no AUTH)")
	}

	// A second run keeps every secret, and rewrites what it derives from
	// them (the RabbitMQ definitions with their salted hashes too) as it was.
	before := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		before[e.Name()] = read(e.Name())
	}
	run()
	for account, s := range secrets {
		if read(account+"_client_secret") != s {
			t.Errorf("a second run changed %s's secret", account)
		}
	}
	entries, err = os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if old, ok := before[e.Name()]; !ok {
			t.Errorf("a second run wrote %s, which the first did not (a leftover?)", e.Name())
		} else if read(e.Name()) != old {
			t.Errorf("a second run changed %s", e.Name())
		}
		// As the existing secrets: 0644 files in the 0700 directory.
		if fi, err := e.Info(); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v (%v), want a file of mode 0644", e.Name(), fi.Mode(), err)
		}
	}

	// The directory the compose file uses is ignored by git and by docker builds.
	cmd := exec.Command("git", "check-ignore", "-q", secretsDir+"/x")
	cmd.Dir = root
	if err := cmd.Run(); err != nil {
		t.Errorf("git does not ignore %s/: %v", secretsDir, err)
	}
}

// TestComposeEntrypointSecrets runs docker/entrypoint.sh with a stand-in
// service: NAME_FILE becomes NAME, SERVICE_CLIENTS_FILE passes as it is.
func TestComposeEntrypointSecrets(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret-s3cret-s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The entrypoint runs /usr/local/bin/$AUDIOMILL_SERVICE; point it at a
	// copy whose path is ours.
	src, err := os.ReadFile(filepath.Join(root, "docker/entrypoint.sh"))
	if err != nil {
		t.Fatal(err)
	}
	entry := filepath.Join(dir, "entrypoint.sh")
	src = bytes.ReplaceAll(src, []byte(`"/usr/local/bin/$service"`), []byte(`"`+dir+`/$service"`))
	if err := os.WriteFile(entry, src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fake"), []byte("#!/bin/sh\necho \"args=$*\"\nenv | sort\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	run := func(env ...string) (string, error) {
		cmd := exec.Command("sh", entry, "rotate-keys")
		cmd.Env = append([]string{"PATH=/usr/bin:/bin", "AUDIOMILL_SERVICE=fake"}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("SERVICE_CLIENT_SECRET_FILE="+secret, "SMTP_PASSWORD_FILE="+secret, "SERVICE_CLIENTS_FILE="+secret,
		"CONSUL_HTTP_TOKEN_FILE="+secret)
	if err != nil {
		t.Fatalf("entrypoint: %v\n%s", err, out)
	}
	for _, want := range []string{"args=rotate-keys", "SERVICE_CLIENT_SECRET=s3cret-s3cret-s3cret\n",
		"SMTP_PASSWORD=s3cret-s3cret-s3cret\n", "SERVICE_CLIENTS_FILE=" + secret + "\n",
		"CONSUL_HTTP_TOKEN=s3cret-s3cret-s3cret\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("entrypoint output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SERVICE_CLIENT_SECRET_FILE=") {
		t.Errorf("SERVICE_CLIENT_SECRET_FILE is passed on:\n%s", out)
	}

	for name, env := range map[string][]string{
		"BothSet":     {"SMTP_PASSWORD=x", "SMTP_PASSWORD_FILE=" + secret},
		"Unreadable":  {"SMTP_PASSWORD_FILE=" + filepath.Join(dir, "missing")},
		"NoServiceID": {"AUDIOMILL_SERVICE="},
	} {
		t.Run(name, func(t *testing.T) {
			if out, err := run(env...); err == nil {
				t.Errorf("entrypoint succeeded:\n%s", out)
			}
		})
	}
}

// edgeEnv: the edge container's environment from the compose file.
func edgeEnv(t *testing.T, p *types.Project) map[string]string {
	t.Helper()
	svc, ok := p.Services[edgeService]
	if !ok {
		t.Fatalf("no %s service", edgeService)
	}
	m := map[string]string{}
	for k, v := range svc.Environment {
		if v != nil {
			m[k] = *v
		}
	}
	if m["EDGE_HOST"] != "0.0.0.0" {
		t.Errorf("edge: EDGE_HOST = %q, want 0.0.0.0 (reachable through the published port)", m["EDGE_HOST"])
	}
	host, err := hostOf(m["CONSUL_HTTP_ADDR"])
	if err != nil || host != "consul" {
		t.Errorf("edge: CONSUL_HTTP_ADDR = %q, want consul:8500", m["CONSUL_HTTP_ADDR"])
	}
	if dep := svc.DependsOn["consul"]; dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("edge: depends_on consul = %+v, want %s", dep, types.ServiceConditionHealthy)
	}
	return m
}

// consulTokenFile: a file holding the test's Consul token, in the place of
// the edge container's CONSUL_HTTP_TOKEN_FILE (docker/secrets/consul_edge_token).
func consulTokenFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "consul_token")
	if err := os.WriteFile(f, []byte(testenv.ConsulToken(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// edgeDir: a directory holding nginx/ (the repository's) and var/nginx/, as
// the edge image's working directory does.
func edgeDir(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(root, "nginx"), filepath.Join(dir, "nginx")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "var/nginx"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// toolPath: a PATH with consul-template (built by `make deps`) and nginx in
// front, and consul-template's own path.
func toolPath(t *testing.T, root string) (path, consulTemplate string) {
	t.Helper()
	ct := strings.TrimSpace(bashLib(t, root, "consul_template_bin"))
	if _, err := os.Stat(ct); err != nil {
		t.Fatalf("consul-template is not installed (%v); run `make deps` (scripts/install.sh)", err)
	}
	return filepath.Dir(ct) + ":" + filepath.Dir(nginxBin(t)) + ":" + os.Getenv("PATH"), ct
}

// nginxBin: nginx, from PATH or Debian's /usr/sbin.
func nginxBin(t *testing.T) string {
	t.Helper()
	if nginx, err := exec.LookPath("nginx"); err == nil {
		return nginx
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
		t.Fatal("nginx is not installed; run scripts/install.sh")
	}
	return "/usr/sbin/nginx"
}

func environ(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// TestComposeEdgeTemplate renders nginx/nginx.conf.ctmpl with the edge
// container's settings, as nginx/docker-entrypoint.sh does (consul-template
// -once with nginx/consul-template.hcl, whose command is nginx/reload.sh),
// without and with passing instances, and checks the result with `nginx -t`.
// Only Consul's address and the paths under the prefix are the test's own;
// EDGE_SERVICE_TAG keeps the instances of a running local stack out.
func TestComposeEdgeTemplate(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	settings := edgeEnv(t, p)
	path, ct := toolPath(t, root)
	consulAddr := testenv.ConsulAddr(t)
	client, err := consul.NewClient(&consul.Config{Address: consulAddr, Token: testenv.ConsulToken(t)})
	if err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("compose%d", time.Now().UnixNano())

	render := func(t *testing.T, settings map[string]string) string {
		t.Helper()
		dir := edgeDir(t, root)
		prefix := filepath.Join(dir, "var/nginx")
		e := map[string]string{}
		for k, v := range settings {
			e[k] = v
		}
		e["PATH"] = path
		e["EDGE_SERVICE_TAG"] = tag
		e["CONSUL_HTTP_TOKEN_FILE"] = consulTokenFile(t)
		e["EDGE_PREFIX"] = prefix
		e["EDGE_RENDERED"] = filepath.Join(prefix, "nginx.conf.rendered")
		e["EDGE_CONF"] = filepath.Join(prefix, "nginx.conf")
		e["EDGE_PID"] = filepath.Join(prefix, "nginx.pid")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, ct, "-config", "nginx/consul-template.hcl",
			"-consul-addr", consulAddr, "-once")
		cmd.Dir = dir
		cmd.Env = environ(e)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("consul-template -once: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "nginx -t rejected") {
			t.Fatalf("nginx/reload.sh: the rendered config fails nginx -t:\n%s", out)
		}
		rendered := e["EDGE_RENDERED"]
		test := exec.Command(nginxBin(t), "-t", "-p", prefix, "-c", rendered)
		test.Env = cmd.Env
		if out, err := test.CombinedOutput(); err != nil {
			t.Fatalf("nginx -t -p %s -c %s: %v\n%s", prefix, rendered, err, out)
		}
		conf, err := os.ReadFile(rendered)
		if err != nil {
			t.Fatal(err)
		}
		listen := settings["EDGE_PORT"] + ";"
		if settings["EDGE_TLS_CERT"] != "" {
			listen = settings["EDGE_TLS_PORT"] + " ssl http2;"
		}
		for _, want := range []string{
			"listen " + settings["EDGE_HOST"] + ":" + listen,
			"error_log " + settings["EDGE_ERROR_LOG"] + " ",
			"access_log " + settings["EDGE_ACCESS_LOG"] + " ",
			"client_max_body_size " + settings["EDGE_MAX_BODY"] + ";",
		} {
			if !strings.Contains(string(conf), want) {
				t.Errorf("rendered config lacks %q", want)
			}
		}
		return string(conf)
	}

	t.Run("NoInstances", func(t *testing.T) {
		conf := render(t, settings)
		if !strings.Contains(conf, "no healthy instance of gateway") || strings.Contains(conf, "upstream gateway") {
			t.Errorf("with no instance the gateway's routes are not the 503 fallback:\n%s", conf)
		}
	})

	t.Run("Instances", func(t *testing.T) {
		// Container-like addresses, as ADVERTISE_ADDR=auto registers them.
		ls := readLocalStack(t, root)
		for i, svc := range []string{"auth", "filestorage", "gateway"} {
			id := fmt.Sprintf("%s-%s-%d", svc, tag, i)
			reg := &consul.AgentServiceRegistration{ID: id, Name: svc, Tags: []string{tag},
				Address: fmt.Sprintf("172.18.0.%d", 10+i), Port: ls.ports[svc]}
			if err := client.Agent().ServiceRegister(reg); err != nil {
				t.Fatalf("register %s in Consul: %v", id, err)
			}
			t.Cleanup(func() { _ = client.Agent().ServiceDeregister(id) })
		}
		conf := render(t, settings)
		for i, svc := range []string{"auth", "filestorage", "gateway"} {
			want := fmt.Sprintf("server 172.18.0.%d:%d", 10+i, ls.ports[svc])
			if !strings.Contains(conf, "upstream "+svc) || !strings.Contains(conf, want) {
				t.Errorf("rendered config lacks upstream %s with %q", svc, want)
			}
		}
	})

	// docker-compose.tls.yml: the certificate and key are the edge's secrets;
	// rendered with a certificate in their place, the config passes nginx -t,
	// serves HTTPS on EDGE_TLS_PORT, which is published, and plain HTTP
	// redirects.
	t.Run("TLS", func(t *testing.T) {
		p := loadCompose(t, root, tlsOverride)
		tlsSettings := edgeEnv(t, p)
		edge := p.Services[edgeService]
		certFile, keyFile, _ := testenv.SelfSignedCert(t, t.TempDir())
		for variable, file := range map[string]string{"EDGE_TLS_CERT": certFile, "EDGE_TLS_KEY": keyFile} {
			secret := strings.TrimPrefix(tlsSettings[variable], runSecrets)
			if !strings.HasPrefix(tlsSettings[variable], runSecrets) || !slices.ContainsFunc(edge.Secrets, func(s types.ServiceSecretConfig) bool { return s.Source == secret }) {
				t.Errorf("%s = %q, want a secret the edge mounts under %s", variable, tlsSettings[variable], runSecrets)
			}
			tlsSettings[variable] = file
		}
		if !slices.ContainsFunc(edge.Ports, func(p types.ServicePortConfig) bool {
			return strconv.Itoa(int(p.Target)) == tlsSettings["EDGE_TLS_PORT"]
		}) {
			t.Errorf("EDGE_TLS_PORT %s is not published (ports %v)", tlsSettings["EDGE_TLS_PORT"], edge.Ports)
		}
		conf := render(t, tlsSettings)
		if !strings.Contains(conf, "return 308 https://") {
			t.Errorf("with TLS, plain HTTP does not redirect:\n%s", conf)
		}
	})
}

// TestComposeEdgeEntrypoint runs nginx/docker-entrypoint.sh, the edge
// container's command, on this machine with the compose settings (a free
// port instead of 8080, the test's Consul): it serves /healthz and stops
// cleanly on SIGTERM.
func TestComposeEdgeEntrypoint(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	settings := edgeEnv(t, p)
	dir := edgeDir(t, root)
	port := testenv.FreePort(t)
	settings["PATH"], _ = toolPath(t, root)
	settings["CONSUL_HTTP_ADDR"] = testenv.ConsulAddr(t)
	settings["CONSUL_HTTP_TOKEN_FILE"] = consulTokenFile(t)
	settings["EDGE_PORT"] = strconv.Itoa(port)
	settings["EDGE_SERVICE_TAG"] = fmt.Sprintf("compose%d", time.Now().UnixNano())

	var out testenv.LogBuffer
	cmd := exec.Command("bash", "nginx/docker-entrypoint.sh")
	cmd.Dir = dir
	cmd.Env = environ(settings)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})

	healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
	ok := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !ok; {
		select {
		case err := <-done:
			t.Fatalf("nginx/docker-entrypoint.sh exited: %v\n%s", err, out.String())
		case <-time.After(200 * time.Millisecond):
		}
		resp, err := http.Get(healthz)
		if err == nil {
			resp.Body.Close()
			ok = resp.StatusCode == http.StatusOK
		}
	}
	if !ok {
		t.Fatalf("the edge never answered %s:\n%s", healthz, out.String())
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("nginx/docker-entrypoint.sh still runs 15s after SIGTERM:\n%s", out.String())
	}
	if _, err := http.Get(healthz); err == nil {
		t.Error("the edge still answers after its entrypoint exited")
	}
}

// TestComposeEdgeEntrypointTokenFile: an unreadable CONSUL_HTTP_TOKEN_FILE
// stops the edge's entrypoint before consul-template, naming it.
func TestComposeEdgeEntrypointTokenFile(t *testing.T) {
	root := repoRoot(t)
	dir := edgeDir(t, root)
	missing := filepath.Join(t.TempDir(), "consul_edge_token")
	cmd := exec.Command("bash", "nginx/docker-entrypoint.sh")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CONSUL_HTTP_ADDR=127.0.0.1:1", "CONSUL_HTTP_TOKEN_FILE=" + missing}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "CONSUL_HTTP_TOKEN_FILE="+missing) {
		t.Errorf("nginx/docker-entrypoint.sh with a missing token file: %v\n%s", err, out)
	}
}

// TestDockerComposeConfig: Debian's docker-compose (v1) accepts the file too.
func TestDockerComposeConfig(t *testing.T) {
	root := repoRoot(t)
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatal("docker-compose is not installed: `apt-get install docker-compose` (Debian's v1, used here only for `docker-compose config`)")
	}
	for _, files := range [][]string{{"-f", composeFile}, {"-f", composeFile, "-f", tlsOverride}} {
		cmd := exec.Command(bin, append(files, "config", "-q")...)
		cmd.Dir = root
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker-compose %v config: %v\n%s", files, err, out)
		}
	}
}

// mountedSecret: the secret svc sees at path (/run/secrets/<target>), or "".
func mountedSecret(svc types.ServiceConfig, path string) string {
	for _, s := range svc.Secrets {
		target := s.Target
		if target == "" {
			target = s.Source
		}
		if !strings.HasPrefix(target, "/") {
			target = runSecrets + target
		}
		if target == path {
			return s.Source
		}
	}
	return ""
}

// consulTokenSecret: the secret holding the Consul token of name (a
// service, or edge).
func consulTokenSecret(name string) string { return "consul_" + name + "_token" }

// TestComposeConsulACLs: compose's Consul runs consul/dev.hcl's default-deny
// ACLs with the agent tokens of a generated secret and a healthcheck that
// needs no token; the one-shot consul-acl runs consul/acl-bootstrap.sh
// with the generated token list once Consul is healthy, and every service
// and the edge start only after it completed; each gets only its own
// token. Then, without Docker: an agent started with the files the consul
// container reads and bootstrapped with the list consul-acl reads (both
// from docker/secrets.sh) takes each service's token for its own name
// only, and consul-template reads through the edge's token file.
func TestComposeConsulACLs(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	ls := readLocalStack(t, root)
	secrets := filepath.Join(t.TempDir(), "secrets")
	if out, err := exec.Command("sh", filepath.Join(root, "docker/secrets.sh"), secrets).CombinedOutput(); err != nil {
		t.Fatalf("docker/secrets.sh: %v\n%s", err, out)
	}
	// hostFile: the file docker/secrets.sh wrote for the secret name.
	hostFile := func(name string) string {
		t.Helper()
		s, ok := p.Secrets[name]
		if !ok {
			t.Fatalf("secret %q is not defined", name)
		}
		return filepath.Join(secrets, filepath.Base(s.File))
	}
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	// The consul container: its -config-file flags, as files on this machine.
	agent := p.Services["consul"]
	var configFiles []string
	for _, arg := range agent.Command {
		path, ok := strings.CutPrefix(arg, "-config-file=")
		if !ok {
			continue
		}
		if strings.HasPrefix(path, runSecrets) {
			secret := mountedSecret(agent, path)
			if secret == "" {
				t.Fatalf("consul: -config-file=%s is no secret it mounts", path)
			}
			configFiles = append(configFiles, hostFile(secret))
			continue
		}
		i := slices.IndexFunc(agent.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == path })
		if i < 0 || agent.Volumes[i].Type != types.VolumeTypeBind {
			t.Fatalf("consul: -config-file=%s is not a file bind-mounted from the repository", path)
		}
		configFiles = append(configFiles, agent.Volumes[i].Source)
	}
	config := ""
	for _, f := range configFiles {
		config += read(f) + "\n"
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?s)\bacl\s*\{[^}]*\benabled\s*=\s*true`),
		regexp.MustCompile(`(?s)\bacl\s*\{[^}]*\bdefault_policy\s*=\s*"deny"`),
		regexp.MustCompile(`\binitial_management\s*=\s*"[0-9a-f-]{36}"`),
		regexp.MustCompile(`\bagent\s*=\s*"[0-9a-f-]{36}"`),
	} {
		if !want.MatchString(config) {
			t.Errorf("consul's configuration (%v) does not match %s (command %v)", configFiles, want, agent.Command)
		}
	}
	if hc := agent.HealthCheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "/v1/status/leader") {
		t.Errorf("consul's healthcheck %v does not ask /v1/status/leader (the one question default deny answers without a token)", hc)
	}

	// The one-shot: consul/acl-bootstrap.sh with the token list, once Consul is healthy.
	boot, ok := p.Services[consulACLService]
	if !ok {
		t.Fatalf("no %s service", consulACLService)
	}
	argv := slices.Concat([]string(boot.Entrypoint), []string(boot.Command))
	i := slices.IndexFunc(argv, func(a string) bool { return strings.HasSuffix(a, "consul/acl-bootstrap.sh") })
	if i < 0 || i+1 >= len(argv) {
		t.Fatalf("%s runs %v, not consul/acl-bootstrap.sh TOKENS_FILE", consulACLService, argv)
	}
	tokensSecret := mountedSecret(boot, argv[i+1])
	if tokensSecret == "" {
		t.Fatalf("%s: TOKENS_FILE %s is no secret it mounts", consulACLService, argv[i+1])
	}
	if host, err := hostOf(*boot.Environment["CONSUL_HTTP_ADDR"]); err != nil || host != "consul" {
		t.Errorf("%s: CONSUL_HTTP_ADDR = %v, want consul:8500", consulACLService, boot.Environment["CONSUL_HTTP_ADDR"])
	}
	if dep := boot.DependsOn["consul"]; dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("%s: depends_on consul = %+v, want %s", consulACLService, dep, types.ServiceConditionHealthy)
	}
	if boot.Build == nil || p.Services[edgeService].Build == nil || boot.Build.Dockerfile != p.Services[edgeService].Build.Dockerfile || boot.Image != p.Services[edgeService].Image {
		t.Errorf("%s: not the edge's image (bash, curl and consul/acl-bootstrap.sh)", consulACLService)
	}
	tokens := readTokens(t, hostFile(tokensSecret))

	// Each service and the edge: after the one-shot, with its own token only.
	holders := append(slices.Clone(ls.services), edgeService)
	for _, name := range holders {
		svc := p.Services[name]
		t.Run(name, func(t *testing.T) {
			if dep, ok := svc.DependsOn[consulACLService]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
				t.Errorf("depends_on %s = %+v, want condition %s", consulACLService, dep, types.ServiceConditionCompletedSuccessfully)
			}
			if _, ok := env(svc, "CONSUL_HTTP_TOKEN"); ok {
				t.Error("CONSUL_HTTP_TOKEN is set in the compose file; hand it over as a secret file (CONSUL_HTTP_TOKEN_FILE)")
			}
			file, _ := env(svc, "CONSUL_HTTP_TOKEN_FILE")
			if got := mountedSecret(svc, file); got != consulTokenSecret(name) {
				t.Fatalf("CONSUL_HTTP_TOKEN_FILE = %q is secret %q, want %s", file, got, consulTokenSecret(name))
			}
			for _, s := range svc.Secrets {
				if strings.HasPrefix(s.Source, "consul_") && s.Source != consulTokenSecret(name) {
					t.Errorf("mounts %s, another's Consul secret", s.Source)
				}
			}
			if got := strings.TrimSpace(read(hostFile(consulTokenSecret(name)))); got == "" || got != tokens[name] {
				t.Errorf("%s holds another token than %s's line in %s", consulTokenSecret(name), name, tokensSecret)
			}
		})
	}
	// The token list and the agent's tokens: only the one-shot and Consul.
	for name, svc := range p.Services {
		for _, s := range svc.Secrets {
			if (s.Source == tokensSecret && name != consulACLService) || (strings.HasPrefix(s.Source, "consul_") && !strings.HasSuffix(s.Source, "_token") && s.Source != tokensSecret && name != "consul") {
				t.Errorf("%s mounts %s", name, s.Source)
			}
		}
	}
	if t.Failed() {
		return
	}

	// The same files on a real agent.
	a := startACLAgentWith(t, configFiles, hostFile(tokensSecret))
	if _, _, err := a.client("management").ACL().TokenReadSelf(nil); err != nil {
		t.Fatalf("the management token of %s: %v", configFiles, err)
	}
	if err := register(a.client(""), "auth", "anonymous-auth", 1); !isForbidden(err) {
		t.Errorf("anonymous register: %v, want 403", err)
	}
	for _, who := range ls.services {
		c := a.client(who)
		for _, svc := range ls.services {
			err := register(c, svc, who+"-as-"+svc, 1)
			switch {
			case who == svc && err != nil:
				t.Errorf("%s's token (%s) cannot register %s: %v", who, consulTokenSecret(who), svc, err)
			case who != svc && !isForbidden(err):
				t.Errorf("%s's token registering %s: %v, want 403", who, svc, err)
			}
		}
	}
	// consul-template, as in the edge container: the token from CONSUL_HTTP_TOKEN_FILE.
	_, ct := toolPath(t, root)
	dir := t.TempDir()
	tmpl, out := filepath.Join(dir, "in.ctmpl"), filepath.Join(dir, "out")
	if err := os.WriteFile(tmpl, []byte(`{{range service "auth"}}{{.ID}}{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ct, "-consul-addr", a.addr, "-once", "-template", tmpl+":"+out)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "CONSUL_HTTP_TOKEN_FILE=" + hostFile(consulTokenSecret(edgeService))}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("consul-template -once: %v\n%s", err, b)
	}
	if got := read(out); got != "auth-as-auth" {
		t.Errorf("consul-template with the edge's token file rendered %q, want auth-as-auth", got)
	}
}

// composeSecrets runs docker/secrets.sh into a directory of the test's own
// and returns it.
func composeSecrets(t *testing.T, root string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "secrets")
	cmd := exec.Command("sh", filepath.Join(root, "docker/secrets.sh"), dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker/secrets.sh: %v\n%s", err, out)
	}
	return dir
}

// secretFile: the file docker/secrets.sh wrote into dir for the compose
// secret name.
func secretFile(t *testing.T, p *types.Project, dir, name string) string {
	t.Helper()
	s, ok := p.Secrets[name]
	if !ok {
		t.Fatalf("secret %q is not defined", name)
	}
	return filepath.Join(dir, filepath.Base(s.File))
}

// readSecret: the content of the compose secret name as docker/secrets.sh
// wrote it into dir, trailing newlines removed (as docker/entrypoint.sh does).
func readSecret(t *testing.T, p *types.Project, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(secretFile(t, p, dir, name))
	if err != nil {
		t.Fatalf("secret %s: %v", name, err)
	}
	return strings.TrimRight(string(b), "\n")
}

// secretEnv: what svc sees as variable: its value in the compose file, or
// the content of the secret its variable_FILE names (docker/entrypoint.sh).
func secretEnv(t *testing.T, p *types.Project, svc types.ServiceConfig, dir, variable string) (string, bool) {
	t.Helper()
	if v, ok := env(svc, variable); ok {
		return v, true
	}
	file, ok := env(svc, variable+"_FILE")
	if !ok {
		return "", false
	}
	secret := mountedSecret(svc, file)
	if secret == "" {
		t.Errorf("%s: %s_FILE = %s is no secret it mounts", svc.Name, variable, file)
		return "", false
	}
	return readSecret(t, p, dir, secret), true
}

// fileSecret: the secret svc's variable_FILE names, failing the test when
// the variable is set in the compose file or its file is no mounted secret.
func fileSecret(t *testing.T, svc types.ServiceConfig, variable string) string {
	t.Helper()
	if _, ok := env(svc, variable); ok {
		t.Errorf("%s: %s is set in %s; hand it over as a secret file (%s_FILE)", svc.Name, variable, composeFile, variable)
	}
	file, ok := env(svc, variable+"_FILE")
	if !ok {
		t.Errorf("%s: %s_FILE is not set", svc.Name, variable)
		return ""
	}
	secret := mountedSecret(svc, file)
	if secret == "" {
		t.Errorf("%s: %s_FILE = %s is no secret it mounts", svc.Name, variable, file)
	}
	return secret
}

// rabbitDefinitions is what RabbitMQ's definitions file holds of ours.
type rabbitDefinitions struct {
	Users []struct {
		Name             string   `json:"name"`
		PasswordHash     string   `json:"password_hash"`
		HashingAlgorithm string   `json:"hashing_algorithm"`
		Tags             []string `json:"tags"`
	}
	Vhosts      []struct{ Name string }
	Permissions []struct{ User, Vhost, Configure, Write, Read string }
}

// checkRabbitHash: hash is base64(salt + SHA-256(salt + password)) with a
// 4-byte salt, RabbitMQ's rabbit_password_hashing_sha256.
func checkRabbitHash(hash, password string) error {
	raw, err := base64.StdEncoding.DecodeString(hash)
	if err != nil {
		return fmt.Errorf("password_hash is not base64: %v", err)
	}
	if len(raw) != 4+sha256.Size {
		return fmt.Errorf("password_hash of %d bytes, want %d (4-byte salt + SHA-256)", len(raw), 4+sha256.Size)
	}
	sum := sha256.Sum256(append(slices.Clone(raw[:4]), password...))
	if !bytes.Equal(raw[4:], sum[:]) {
		return errors.New("password_hash does not match the password")
	}
	return nil
}

// TestComposeRabbitMQUsers: compose's RabbitMQ has no guest; it loads
// definitions (docker/secrets.sh, from scripts/rabbitmq-users) through a
// mounted configuration file, with a user per AMQP-speaking service whose
// permissions are the list's and whose password hash matches that
// service's own AMQP URL secret, which no other service mounts.
func TestComposeRabbitMQUsers(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	ls := readLocalStack(t, root)
	secrets := composeSecrets(t, root)
	users := strings.Fields(bashLib(t, root, `echo "${RABBITMQ_USERS[*]}"`))
	if len(users) == 0 {
		t.Fatal("scripts/rabbitmq-users lists no user")
	}

	// No guest: not in the file, not in any container's settings.
	src, err := os.ReadFile(filepath.Join(root, composeFile))
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.Index(bytes.ToLower(src), []byte("guest")); i >= 0 {
		line := bytes.Count(src[:i], []byte("\n")) + 1
		t.Errorf("%s:%d mentions guest, RabbitMQ's default user", composeFile, line)
	}

	// The broker: a configuration file of the repository that loads the
	// definitions from a secret it mounts.
	rabbit := p.Services["rabbitmq"]
	definitionsPath := ""
	for _, v := range rabbit.Volumes {
		if v.Type != types.VolumeTypeBind || !strings.HasPrefix(v.Target, "/etc/rabbitmq/") || !strings.HasSuffix(v.Target, ".conf") {
			continue
		}
		conf, err := os.ReadFile(v.Source)
		if err != nil {
			t.Fatalf("rabbitmq: %s: %v", v.Source, err)
		}
		if m := regexp.MustCompile(`(?m)^\s*load_definitions\s*=\s*(\S+)\s*$`).FindSubmatch(conf); m != nil {
			definitionsPath = string(m[1])
		}
	}
	if definitionsPath == "" {
		t.Fatalf("rabbitmq mounts no configuration file with load_definitions (volumes %+v)", rabbit.Volumes)
	}
	definitionsSecret := mountedSecret(rabbit, definitionsPath)
	if definitionsSecret == "" {
		t.Fatalf("rabbitmq: load_definitions = %s is no secret it mounts", definitionsPath)
	}
	for _, v := range []string{"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"} {
		if _, ok := env(rabbit, v); ok {
			t.Errorf("rabbitmq: %s is set; the definitions hold every user", v)
		}
	}
	var defs rabbitDefinitions
	if err := json.Unmarshal([]byte(readSecret(t, p, secrets, definitionsSecret)), &defs); err != nil {
		t.Fatalf("%s: %v", definitionsSecret, err)
	}
	if !slices.ContainsFunc(defs.Vhosts, func(v struct{ Name string }) bool { return v.Name == "/" }) {
		t.Errorf("%s: no vhost / (a node that loads definitions creates none)", definitionsSecret)
	}
	hashes := map[string]string{}
	admins := 0
	for _, u := range defs.Users {
		if strings.EqualFold(u.Name, "guest") {
			t.Errorf("%s has a user guest", definitionsSecret)
		}
		if u.HashingAlgorithm != "rabbit_password_hashing_sha256" {
			t.Errorf("%s: user %s: hashing_algorithm %q, want rabbit_password_hashing_sha256", definitionsSecret, u.Name, u.HashingAlgorithm)
		}
		if slices.Contains(u.Tags, "administrator") {
			admins++
			if slices.Contains(users, u.Name) {
				t.Errorf("%s: the service user %s is an administrator", definitionsSecret, u.Name)
			}
		}
		hashes[u.Name] = u.PasswordHash
	}
	if admins != 1 {
		t.Errorf("%s: %d administrators, want the operator's one", definitionsSecret, admins)
	}
	perms := map[string]testenv.RabbitMQPermissions{}
	for _, pm := range defs.Permissions {
		if pm.Vhost == "/" {
			perms[pm.User] = testenv.RabbitMQPermissions{Configure: pm.Configure, Write: pm.Write, Read: pm.Read}
		}
	}

	// Each service of the list: its own URL, its own user, the list's permissions.
	for _, user := range users {
		t.Run(user, func(t *testing.T) {
			svc, ok := p.Services[user]
			if !ok || !slices.Contains(ls.services, user) {
				t.Fatalf("scripts/rabbitmq-users names %s, which is no service of %s", user, composeFile)
			}
			if got, want := perms[user], testenv.RabbitMQUser(t, user); got != want {
				t.Errorf("permissions on / = %+v, want scripts/rabbitmq-users' %+v", got, want)
			}
			secret := fileSecret(t, svc, "AMQP_URL")
			if secret == "" {
				return
			}
			u, err := url.Parse(readSecret(t, p, secrets, secret))
			if err != nil {
				t.Fatalf("%s: %v", secret, err)
			}
			password, _ := u.User.Password()
			if u.Scheme != "amqp" || u.Hostname() != "rabbitmq" || u.User.Username() != user || len(password) < 32 {
				t.Errorf("%s = amqp://%s:(%d characters)@%s, want amqp://%s:<secret of 32+ characters>@rabbitmq:5672/",
					secret, u.User.Username(), len(password), u.Host, user)
			}
			if err := checkRabbitHash(hashes[user], password); err != nil {
				t.Errorf("user %s in %s: %v", user, definitionsSecret, err)
			}
			if dep := svc.DependsOn["rabbitmq"]; dep.Condition != types.ServiceConditionHealthy {
				t.Errorf("depends_on rabbitmq = %+v, want %s", dep, types.ServiceConditionHealthy)
			}
		})
	}
	// No one else's URL, and no URL for those without a user.
	for name, svc := range p.Services {
		for _, s := range svc.Secrets {
			if content := readSecret(t, p, secrets, s.Source); strings.HasPrefix(content, "amqp") && s.Source != name+"_amqp_url" {
				t.Errorf("%s mounts %s, an AMQP URL not its own", name, s.Source)
			}
			if s.Source == definitionsSecret && name != "rabbitmq" {
				t.Errorf("%s mounts %s, the broker's definitions", name, s.Source)
			}
		}
		if _, ok := secretEnv(t, p, svc, secrets, "AMQP_URL"); ok && !slices.Contains(users, name) {
			t.Errorf("%s has AMQP_URL but no user in scripts/rabbitmq-users", name)
		}
	}
}

// TestComposeRedisPassword: Redis requires a password from a secret, its
// healthcheck authenticates, and every service that uses Redis gets the
// password as REDIS_PASSWORD_FILE.
func TestComposeRedisPassword(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	ls := readLocalStack(t, root)
	deps := configurationDependencies(t, root)
	secrets := composeSecrets(t, root)

	redis := p.Services["redis"]
	password := ""
	for _, arg := range redis.Command {
		if !strings.HasPrefix(arg, runSecrets) {
			continue
		}
		secret := mountedSecret(redis, arg)
		if secret == "" {
			t.Fatalf("redis: %s is no secret it mounts", arg)
		}
		if m := regexp.MustCompile(`(?m)^requirepass (\S+)$`).FindStringSubmatch(readSecret(t, p, secrets, secret)); m != nil {
			password = m[1]
		}
	}
	if len(password) < 32 {
		t.Fatalf("redis runs %v: no configuration file from a secret with requirepass (of 32+ characters)", redis.Command)
	}
	if slices.ContainsFunc(redis.Command, func(a string) bool { return strings.Contains(a, password) || a == "--requirepass" }) {
		t.Errorf("redis: the password is in its command line %v", redis.Command)
	}
	if hc := redis.HealthCheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "REDISCLI_AUTH") {
		t.Errorf("redis: healthcheck %v does not authenticate (REDISCLI_AUTH)", hc)
	}

	users := deps["REDIS_ADDR"]
	for _, name := range ls.services {
		svc := p.Services[name]
		_, hasRedis := env(svc, "REDIS_ADDR")
		if !slices.Contains(users, name) && !hasRedis {
			continue
		}
		secret := fileSecret(t, svc, "REDIS_PASSWORD")
		if secret != "" && readSecret(t, p, secrets, secret) != password {
			t.Errorf("%s: REDIS_PASSWORD_FILE (%s) is not the password Redis requires", name, secret)
		}
	}
}

// TestComposeMongoCredentials: MongoDB gets root credentials (the password
// from a secret), its healthcheck authenticates, and filestorage's
// MONGO_URI, from a secret, carries them.
func TestComposeMongoCredentials(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	secrets := composeSecrets(t, root)

	mongo := p.Services["mongo"]
	user, _ := env(mongo, "MONGO_INITDB_ROOT_USERNAME")
	if user == "" {
		t.Error("mongo: MONGO_INITDB_ROOT_USERNAME is not set")
	}
	if _, ok := env(mongo, "MONGO_INITDB_ROOT_PASSWORD"); ok {
		t.Error("mongo: MONGO_INITDB_ROOT_PASSWORD is set in the compose file; use MONGO_INITDB_ROOT_PASSWORD_FILE")
	}
	file, _ := env(mongo, "MONGO_INITDB_ROOT_PASSWORD_FILE")
	secret := mountedSecret(mongo, file)
	if secret == "" {
		t.Fatalf("mongo: MONGO_INITDB_ROOT_PASSWORD_FILE = %q is no secret it mounts", file)
	}
	password := readSecret(t, p, secrets, secret)
	if len(password) < 32 {
		t.Errorf("mongo: root password of %d characters", len(password))
	}
	if mongo.HealthCheck == nil {
		t.Fatal("mongo: no healthcheck")
	}
	if hc := strings.Join(mongo.HealthCheck.Test, " "); !strings.Contains(hc, "MONGO_INITDB_ROOT_PASSWORD_FILE") || !strings.Contains(hc, "-u ") {
		t.Errorf("mongo: healthcheck %q does not authenticate as the root user", hc)
	}

	fs := p.Services["filestorage"]
	uriSecret := fileSecret(t, fs, "MONGO_URI")
	if uriSecret == "" {
		return
	}
	u, err := url.Parse(readSecret(t, p, secrets, uriSecret))
	if err != nil {
		t.Fatalf("%s: %v", uriSecret, err)
	}
	got, _ := u.User.Password()
	if u.Scheme != "mongodb" || u.Hostname() != "mongo" || u.User.Username() != user || got != password || u.Query().Get("authSource") != "admin" {
		t.Errorf("%s = mongodb://%s:(%d characters, root's: %v)@%s/?%s, want mongodb://%s:<root's password>@mongo:27017/?authSource=admin",
			uriSecret, u.User.Username(), len(got), got == password, u.Host, u.RawQuery, user)
	}
}
