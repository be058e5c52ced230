package e2e_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// nomadBin is the Nomad that scripts/install.sh nomad builds (make test
// runs it first).
func nomadBin(t *testing.T) string {
	t.Helper()
	p := strings.TrimSpace(bashLib(t, repoRoot(t), "nomad_bin"))
	if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("no nomad at %s: `scripts/install.sh nomad` builds it (make test runs it)", p)
	}
	return p
}

// nomad runs the nomad command in deploy/nomad with no agent to talk to
// (what it checks, it checks locally).
func nomad(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(nomadBin(t), args...)
	cmd.Dir = filepath.Join(repoRoot(t), "deploy", "nomad")
	cmd.Env = append(os.Environ(), "NOMAD_ADDR=http://127.0.0.1:1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// nomadJob is what `nomad job run -output` renders, the parts checked here.
type nomadJob struct {
	Job struct {
		ID     string
		Meta   map[string]string
		Update *struct {
			MaxParallel     int
			Canary          int
			AutoRevert      bool
			AutoPromote     bool
			HealthCheck     string
			MinHealthyTime  int64
			HealthyDeadline int64
		}
		TaskGroups []struct {
			Name     string
			Count    int
			Services []struct {
				Provider string
				Checks   []struct {
					Type, Path string
				}
			}
			Tasks []struct {
				Driver      string
				Config      map[string]any
				Env         map[string]string
				KillTimeout int64
				Templates   []struct {
					EmbeddedTmpl string
					DestPath     string
					Envvars      bool
				}
			}
		}
	}
}

// Every job file of deploy/nomad validates with each driver, and renders
// what the cluster relies on: a rolling update that waits for /readyz
// (health_check "checks", Nomad's own catalog entry with the check) and
// goes back on failure, a canary for the gateway, the counts of the issue's
// cluster (gateway ×3, auth ×2, filestorage ×2, converter ×2, the notifier and
// the edge ×1), no secret in the job (the settings come from the Nomad
// variable nomad/jobs/<job> through a template), a kill timeout longer than
// SHUTDOWN_DELAY, and the edge's config rendered from nginx/nginx.conf.ctmpl
// itself. The files are as `nomad fmt` writes them. A driver the files do
// not know is refused, naming the variable.
func TestNomadJobsValidate(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "nomad", "*.nomad.hcl"))
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".nomad.hcl"))
	}
	want := []string{"auth", "converter", "edge", "filestorage", "gateway", "notifier"}
	if !slices.Equal(names, want) {
		t.Fatalf("deploy/nomad holds %v, want one job file for each of %v", names, want)
	}
	ctmpl, err := os.ReadFile(filepath.Join(repoRoot(t), "nginx", "nginx.conf.ctmpl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		file := name + ".nomad.hcl"
		for _, driver := range []string{"raw_exec", "exec", "docker"} {
			if out, err := nomad(t, "job", "validate", "-var", "driver="+driver, file); err != nil || !strings.Contains(out, "Job validation successful") {
				t.Errorf("nomad job validate -var driver=%s %s: %v\n%s", driver, file, err, out)
			}
		}
		// nomad validates no driver's config: the keys each driver reads.
		if cfg := render(t, file, "driver=docker").Job.TaskGroups[0].Tasks[0].Config; cfg["image"] != "audiomill/"+name+":v9" ||
			cfg["network_mode"] != "host" || cfg["command"] != nil {
			t.Errorf("%s with docker: config %v", file, cfg)
		}
		j := render(t, file, "driver=raw_exec")
		if cfg := j.Job.TaskGroups[0].Tasks[0].Config; cfg["command"] == nil || cfg["image"] != nil {
			t.Errorf("%s with raw_exec: config %v", file, cfg)
		}
		u := j.Job.Update
		if j.Job.ID != name || j.Job.Meta["version"] != "v9" || u == nil || u.MaxParallel != 1 || u.HealthCheck != "checks" || !u.AutoRevert ||
			u.MinHealthyTime < int64(5*time.Second) || (name == "gateway") != (u.Canary == 1 && u.AutoPromote) {
			t.Errorf("%s: job %q meta %v update %+v", file, j.Job.ID, j.Job.Meta, u)
		}
		g := j.Job.TaskGroups[0]
		if counts := map[string]int{"gateway": 3, "auth": 2, "filestorage": 2, "converter": 2, "notifier": 1, "edge": 1}; g.Count != counts[name] {
			t.Errorf("%s: count %d, want %d", file, g.Count, counts[name])
		}
		if len(g.Services) != 1 || g.Services[0].Provider != "nomad" || len(g.Services[0].Checks) != 1 || g.Services[0].Checks[0].Type != "http" {
			t.Errorf("%s: services %+v: want Nomad's own entry with an HTTP check", file, g.Services)
		} else if path := g.Services[0].Checks[0].Path; path != map[bool]string{true: "/healthz", false: "/readyz"}[name == "edge"] {
			t.Errorf("%s: the check asks %s", file, path)
		}
		task := g.Tasks[0]
		if task.Driver != "raw_exec" || task.KillTimeout < int64(30*time.Second) {
			t.Errorf("%s: driver %s, kill_timeout %v", file, task.Driver, time.Duration(task.KillTimeout))
		}
		for k, v := range task.Env {
			if strings.Contains(k, "SECRET") || strings.Contains(k, "PASSWORD") || strings.Contains(k, "KEK") ||
				strings.Contains(v, "://") && strings.Contains(v, "@") {
				t.Errorf("%s: the job file carries a secret: %s=%s", file, k, v)
			}
		}
		if len(task.Templates) != 1 {
			t.Fatalf("%s: templates %+v", file, task.Templates)
		}
		tmpl := task.Templates[0]
		if name == "edge" {
			if tmpl.EmbeddedTmpl != string(ctmpl) {
				t.Errorf("%s: the template is not nginx/nginx.conf.ctmpl", file)
			}
			continue
		}
		if !tmpl.Envvars || !strings.Contains(tmpl.EmbeddedTmpl, `nomadVar "nomad/jobs/`+name+`"`) {
			t.Errorf("%s: the settings do not come from the Nomad variable nomad/jobs/%s: %+v", file, name, tmpl)
		}
	}
	if out, err := nomad(t, "fmt", "-check", "."); err != nil {
		t.Errorf("nomad fmt -check: %v: the files it would rewrite:\n%s", err, out)
	}
	out, err := nomad(t, "job", "validate", "-var", "driver=podman", "gateway.nomad.hcl")
	if err == nil || !strings.Contains(out, "The driver must be raw_exec, exec or docker") {
		t.Errorf("driver=podman: %v\n%s", err, out)
	}
}

// render is the job file as `nomad job run -output` renders it, at version
// v9 and with vars (NAME=VALUE).
func render(t *testing.T, file string, vars ...string) nomadJob {
	t.Helper()
	args := []string{"job", "run", "-output", "-var", "version=v9"}
	for _, v := range vars {
		args = append(args, "-var", v)
	}
	out, err := nomad(t, append(args, file)...)
	if err != nil {
		t.Fatalf("nomad job run -output %s: %v\n%s", file, err, out)
	}
	var j nomadJob
	if err := json.Unmarshal([]byte(out), &j); err != nil || len(j.Job.TaskGroups) != 1 || len(j.Job.TaskGroups[0].Tasks) != 1 {
		t.Fatalf("%s renders no job of one group of one task: %v", file, err)
	}
	return j
}
