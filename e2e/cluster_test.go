//go:build cluster

package e2e_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/audiomill/audiomill/platform/testenv"
)

// The platform as Nomad jobs (make cluster-up), tested against the real
// agent. They build only with the tag cluster: `make cluster-test` brings the
// cluster up and runs them (they take minutes, replace the stack's own
// instances and change the cluster's jobs, so they are not part of make
// test); without the cluster they fail, naming `make cluster-up`.

// clusterTag is the tag of the cluster's instances (scripts/cluster.sh).
const clusterTag = "nomad"

type cluster struct {
	edge   string
	nomad  string
	consul *api.Client
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address, cfg.Token = testenv.ConsulAddr(t), testenv.ConsulToken(t)
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{edge: edgeURL(t), nomad: cmp.Or(os.Getenv("NOMAD_ADDR"), "http://127.0.0.1:4646"), consul: client}
	if resp, err := http.Get(c.nomad + "/v1/status/leader"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("no Nomad agent answers at %s (NOMAD_ADDR): `make cluster-up` starts the cluster (%v)", c.nomad, err)
	} else {
		resp.Body.Close()
	}
	if n := len(c.passing(t, "gateway")); n != 3 {
		t.Fatalf("%d gateway instances of the cluster pass, want 3: `make cluster-up`", n)
	}
	return c
}

// passing returns the cluster's passing instances of service.
func (c *cluster) passing(t *testing.T, service string) []*api.ServiceEntry {
	t.Helper()
	entries, _, err := c.consul.Health().Service(service, clusterTag, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// nomadCall sends a request to the Nomad agent's HTTP API and decodes its answer into out.
func (c *cluster) nomadCall(t *testing.T, method, path string, body any, out any) {
	t.Helper()
	var r *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	} else {
		r = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, c.nomad+path, r)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("nomad %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("nomad %s %s = %d %s", method, path, resp.StatusCode, buf.String())
	}
	if out != nil {
		if err := json.Unmarshal(buf.Bytes(), out); err != nil {
			t.Fatalf("nomad %s %s: %v", method, path, err)
		}
	}
}

// pidOf finds the process that runs the instance id (its SERVICE_ID).
func pidOf(t *testing.T, id string) int {
	t.Helper()
	want := []byte("SERVICE_ID=" + id + "\x00")
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err == nil && bytes.Contains(env, want) {
			return pid
		}
	}
	t.Fatalf("no process runs instance %s", id)
	return 0
}

// clusterLoad is GETs and uploads through the edge: the uploads as a client
// of the API sends them, each with an Idempotency-Key and sent again with
// it when the connection broke or the edge answered 502/503 (a body already
// sent is never replayed by the edge), at most 3 times. A failure is a GET
// answered 5xx or not at all, or an upload that failed 3 times.
type clusterLoad struct {
	*load
	uploads, retried atomic.Int64
	stopc            chan struct{}
	wg               sync.WaitGroup
}

func startClusterLoad(t *testing.T, edge string, u user, clip []byte) *clusterLoad {
	t.Helper()
	cl := &clusterLoad{load: startLoad(4, newClient(), get(edge+"/api/v1/jobs?limit=1")), stopc: make(chan struct{})}
	client := newClient()
	// One upload every 1.1 s: within the user's 60 a minute.
	for w := range 1 {
		cl.wg.Add(1)
		go func() {
			defer cl.wg.Done()
			for i := range 200 { // bounded
				select {
				case <-cl.stopc:
					return
				case <-time.After(1100 * time.Millisecond):
				}
				key := fmt.Sprintf("cluster-%d-%d-%d", time.Now().UnixNano(), w, i)
				var err error
				for attempt := range 3 {
					if attempt > 0 {
						cl.retried.Add(1)
						time.Sleep(300 * time.Millisecond)
					}
					body, ct := multipartBody(t, "clip.mp4", clip)
					req, _ := http.NewRequest(http.MethodPost, edge+"/api/v1/videos", body)
					req.Header.Set("Authorization", "Bearer "+u.token)
					req.Header.Set("Content-Type", ct)
					req.Header.Set("Idempotency-Key", key)
					var resp *http.Response
					if resp, err = client.Do(req); err == nil {
						resp.Body.Close()
						if resp.StatusCode == http.StatusAccepted {
							break
						}
						err = fmt.Errorf("status %d", resp.StatusCode)
						if resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable {
							break
						}
					}
				}
				if err != nil {
					cl.failed.Add(1)
					cl.mu.Lock()
					cl.failures = append(cl.failures, "POST /api/v1/videos: "+err.Error())
					cl.mu.Unlock()
					continue
				}
				cl.uploads.Add(1)
			}
		}()
	}
	return cl
}

func (cl *clusterLoad) stop() {
	close(cl.stopc)
	cl.wg.Wait()
	cl.load.stop()
}

func (cl *clusterLoad) check(t *testing.T) {
	t.Helper()
	t.Logf("%d uploads accepted (%d sent again with their key)", cl.uploads.Load(), cl.retried.Load())
	if cl.uploads.Load() == 0 {
		t.Error("no upload was accepted")
	}
	cl.load.check(t)
}

// clusterUser signs up a verified user through the cluster's edge, with
// the uploads limit of the stack (60 a minute) in mind.
func clusterUser(t *testing.T, c *cluster) (user, []byte) {
	t.Helper()
	return signUpUser(t, c.edge), video(t, 1, true)
}

// (a) kill -9 of a gateway allocation's process under load: Nomad restarts
// it, no request fails, and 3 instances pass again within 5 s.
func TestClusterGatewayKill9(t *testing.T) {
	c := startCluster(t)
	u, clip := clusterUser(t, c)
	l := startClusterLoad(t, c.edge, u, clip)
	time.Sleep(2 * time.Second)

	victim := c.passing(t, "gateway")[0].Service.ID
	pid := pidOf(t, victim)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var back time.Duration
	testenv.Eventually(t, 5*time.Second, func() bool {
		ids := map[string]bool{}
		for _, e := range c.passing(t, "gateway") {
			ids[e.Service.ID] = true
		}
		if len(ids) == 3 && ids[victim] && restarted(victim, pid) {
			back = time.Since(killed)
			return true
		}
		return false
	}, "3 gateway instances did not pass again within 5 s of the kill")
	time.Sleep(2 * time.Second)
	l.stop()
	t.Logf("the killed instance passed again %v after kill -9", back.Round(10*time.Millisecond))
	l.check(t)
}

// restarted: a process other than old now runs instance id.
func restarted(id string, old int) bool {
	want := []byte("SERVICE_ID=" + id + "\x00")
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == old {
			continue
		}
		if env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ")); err == nil && bytes.Contains(env, want) {
			return true
		}
	}
	return false
}

// (b) `nomad job scale gateway 5`: the new instances take traffic through
// the edge within 5 s (each one's own request counter moves).
func TestClusterScaleGateway(t *testing.T) {
	c := startCluster(t)
	before := map[string]bool{}
	for _, e := range c.passing(t, "gateway") {
		before[e.Service.ID] = true
	}
	scale := func(n int) {
		c.nomadCall(t, http.MethodPost, "/v1/job/gateway/scale", map[string]any{
			"Count": n, "Target": map[string]string{"Group": "gateway"}, "Message": "e2e"}, nil)
	}
	t.Cleanup(func() {
		// A job's count changes only once its deployment ended.
		c.awaitDeployment(t, "gateway")
		scale(3)
		c.awaitDeployment(t, "gateway")
		testenv.Eventually(t, time.Minute, func() bool { return len(c.passing(t, "gateway")) == 3 },
			"the gateway is not back to 3 instances a minute after scaling down")
	})
	scale(5)
	start := time.Now()
	l := startLoad(4, newClient(), get(c.edge+probePath))
	served := map[string]bool{}
	testenv.Eventually(t, 5*time.Second, func() bool {
		for _, e := range c.passing(t, "gateway") {
			if before[e.Service.ID] || served[e.Service.ID] {
				continue
			}
			addr := "http://" + e.Service.Address + ":" + strconv.Itoa(e.Service.Port)
			if requestsServed(addr) > 0 {
				served[e.Service.ID] = true
			}
		}
		return len(served) == 2
	}, "the 2 new gateway instances did not serve requests through the edge within 5 s")
	took := time.Since(start)
	l.stop()
	t.Logf("scaled to 5: both new instances served through the edge %v after the scale", took.Round(10*time.Millisecond))
	l.check(t)
}

// awaitDeployment waits until job's latest deployment is no longer running.
func (c *cluster) awaitDeployment(t *testing.T, job string) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, func() bool {
		var d struct{ Status string }
		c.nomadCall(t, http.MethodGet, "/v1/job/"+job+"/deployment", nil, &d)
		return d.Status != "running"
	}, "the deployment of %s did not end within 2 minutes", job)
}

// requestsServed: the requests the instance at base served, its own health
// checks and metrics aside, from its /metrics.
func requestsServed(base string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	var n float64
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(line, "http_requests_total{") && !strings.Contains(line, `route="/readyz"`) &&
			!strings.Contains(line, `route="/healthz"`) && !strings.Contains(line, `route="/metrics"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += v
		}
	}
	return n
}

// (c) A rolling update of the gateway to a new build under load: no request
// fails, and every instance ends on the new version (Consul meta.version).
func TestClusterRollingUpdate(t *testing.T) {
	c := startCluster(t)
	root := repoRoot(t)
	version := fmt.Sprintf("e2e-rolling-%d", time.Now().Unix())
	// The artifacts outlive the test: Nomad restarts instances from them.
	dir := filepath.Join(root, "var", "cluster-artifacts", version)
	build := exec.Command(filepath.Join(root, "scripts", "build.sh"), "gateway")
	build.Env = append(os.Environ(), "AUDIOMILL_VAR_DIR="+dir, "VERSION="+version)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	u, clip := clusterUser(t, c)
	l := startClusterLoad(t, c.edge, u, clip)
	time.Sleep(2 * time.Second)

	start := time.Now()
	run := exec.Command(nomadBin(t), "job", "run", "-var", "artifacts="+filepath.Join(dir, "bin"), "-var", "version="+version,
		"-var", "tags="+clusterTag, filepath.Join(root, "deploy", "nomad", "gateway.nomad.hcl"))
	run.Env = append(os.Environ(), "NOMAD_ADDR="+c.nomad)
	out, err := run.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "successfully") {
		l.stop()
		t.Fatalf("nomad job run (the new version): %v\n%s", err, out)
	}
	took := time.Since(start)
	time.Sleep(2 * time.Second)
	l.stop()
	l.check(t)
	entries := c.passing(t, "gateway")
	for _, e := range entries {
		if e.Service.Meta["version"] != version {
			t.Errorf("instance %s is on %q, want %q", e.Service.ID, e.Service.Meta["version"], version)
		}
	}
	if len(entries) != 3 {
		t.Errorf("%d instances pass after the update, want 3", len(entries))
	}
	t.Logf("rolled 3 gateways to %s in %v", version, took.Round(time.Second))
}

// (d) A converter allocation killed in the middle of a job: the job still
// completes once, with one MP3 and one email.
func TestClusterConverterKilledMidJob(t *testing.T) {
	c := startCluster(t)
	u := signUpUser(t, c.edge)
	id := upload(t, c.edge, u, "long.mp4", longAudioClip(t, 600))

	var j jobState
	deadline := time.Now().Add(60 * time.Second)
	for j.Status != "converting" {
		if time.Now().After(deadline) {
			t.Fatalf("job never started converting: %+v", j)
		}
		_, b, _ := call(t, http.MethodGet, c.edge+"/api/v1/jobs/"+id, u.token, nil)
		_ = json.Unmarshal(b, &j)
		if j.Status == "done" || j.Status == "failed" {
			t.Fatalf("job finished before the converter could be killed: %+v", j)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The converter whose ffmpeg converts it (the only job in flight).
	converter := 0
	testenv.Eventually(t, 10*time.Second, func() bool {
		out, _ := exec.Command("pgrep", "-x", "ffmpeg").Output()
		for _, f := range strings.Fields(string(out)) {
			stat, err := os.ReadFile("/proc/" + f + "/stat")
			if err != nil {
				continue
			}
			ppid, _ := strconv.Atoi(strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))[1])
			env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", ppid))
			if bytes.Contains(env, []byte("SERVICE_ID=converter-")) && bytes.Contains(env, []byte("SERVICE_TAGS="+clusterTag)) {
				converter = ppid
				return true
			}
		}
		return false
	}, "no converter of the cluster runs ffmpeg for job %s", id)
	if err := syscall.Kill(converter, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	done, _ := awaitJob(t, c.edge, u, id)
	if done.Status != "done" || done.Audio == nil || done.Audio.DurationSeconds < 599 {
		t.Fatalf("job after the kill = %+v", done)
	}
	if mp3s := storedFiles(t, u, "audio"); len(mp3s) != 1 || mp3s[0].ID != done.Audio.ID {
		t.Fatalf("the user's MP3s = %+v, want exactly the job's", mp3s)
	}
	exactlyOneEmailEach(t, u, 1)
}
