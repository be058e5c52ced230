package e2e_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/audiomill/audiomill/platform/testenv"
)

// commitPattern: a git commit as Go stamps it, "-dirty" for a tree with
// changes (the tests build in a checkout: never "unknown").
var commitPattern = regexp.MustCompile(`^[0-9a-f]{40}(-dirty)?$`)

// What an operator sees of an instance in the Consul UI: its version,
// commit and start time in its meta, and a note on its readiness check that
// says what /readyz checks (here the gateway's: PostgreSQL, its schema,
// RabbitMQ as optional).
func TestConsulShowsInstanceMetaAndCheckNotes(t *testing.T) {
	st, _, g := twoGateways(t)
	s := st.Consul
	before := time.Now().Add(-time.Minute)
	svc, _, err := s.Agent().Service(g[0].ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Meta["version"] != "e2e" || !commitPattern.MatchString(svc.Meta["commit"]) {
		t.Errorf("meta %v: want version e2e and a commit", svc.Meta)
	}
	started, err := time.Parse(time.RFC3339, svc.Meta["started_at"])
	if err != nil || started.Before(before) || started.After(time.Now()) {
		t.Errorf("meta started_at %q: want the instance's start time (%v)", svc.Meta["started_at"], err)
	}
	checks, _, err := s.Health().Checks("gateway", &api.QueryOptions{Filter: `ServiceID == "` + g[0].ID + `"`})
	if err != nil || len(checks) != 1 {
		t.Fatalf("the instance's checks: %v %v", checks, err)
	}
	note := checks[0].Notes
	for _, want := range []string{"/readyz", "postgres", "schema", "rabbitmq", "503"} {
		if !strings.Contains(note, want) {
			t.Errorf("check note %q does not mention %s", note, want)
		}
	}
}

// `consul maint -service <id> -enable` (the agent's maintenance API) takes
// an instance out of the edge under load with no failed request, and
// disabling it brings the instance back.
func TestConsulMaintenanceDrainsAnInstance(t *testing.T) {
	st, e, g := twoGateways(t)
	s := st.Consul
	l := startLoad(4, newClient(), get(e.URL(probePath)))
	time.Sleep(time.Second)

	if err := s.Agent().EnableServiceMaintenance(g[1].ID, "e2e: drain"); err != nil {
		t.Fatal(err)
	}
	enabled := time.Now()
	testenv.Eventually(t, 5*time.Second, func() bool { return !inUpstream(e, g[1].Addr) },
		"the instance in maintenance is still in the edge's upstream 5s later")
	out := time.Since(enabled)
	time.Sleep(time.Second)
	if err := s.Agent().DisableServiceMaintenance(g[1].ID); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return inUpstream(e, g[1].Addr) },
		"the instance is not back in the edge's upstream 5s after its maintenance ended")
	time.Sleep(time.Second)
	l.stop()
	t.Logf("out of the upstream %v after maintenance was enabled", out.Round(10*time.Millisecond))
	l.check(t)
}
