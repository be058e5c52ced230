package stack

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/audiomill/audiomill/platform/testenv"
)

// Edge is nginx plus consul-template, started by scripts/edge.sh in a
// directory of the test's own, routing only to the stack's tagged instances.
type Edge struct {
	tb   testing.TB
	Port int
	dir  string // the stack's directory
}

// StartEdge starts the edge on a free port (scripts/edge.sh waits until it
// answers) and stops it at cleanup. env adds settings (EDGE_BODY_TIMEOUT=1s, …).
func (s *Stack) StartEdge(env ...string) *Edge {
	s.tb.Helper()
	e := &Edge{tb: s.tb, Port: testenv.FreePort(s.tb), dir: s.dir}
	env = append([]string{"EDGE_PORT=" + strconv.Itoa(e.Port), "EDGE_SERVICE_TAG=" + s.Tag}, env...)
	s.script(env, "edge.sh", "start")
	s.tb.Cleanup(func() { s.script(env, "edge.sh", "stop") })
	return e
}

// URL returns the edge's URL for path.
func (e *Edge) URL(path string) string { return "http://127.0.0.1:" + strconv.Itoa(e.Port) + path }

// Config returns the nginx config in use.
func (e *Edge) Config() string { return e.read("var/nginx/nginx.conf") }

// TemplateLog returns consul-template's log (renders and reloads).
func (e *Edge) TemplateLog() string { return e.read("var/log/consul-template.log") }

func (e *Edge) read(rel string) string {
	b, err := os.ReadFile(filepath.Join(e.dir, rel))
	if err != nil && !os.IsNotExist(err) {
		e.tb.Fatal(err)
	}
	return string(b)
}

// AccessEntry is one line of the edge's JSON access log.
type AccessEntry struct {
	RequestID    string `json:"request_id"`
	Method       string `json:"method"`
	URI          string `json:"uri"`
	Status       int    `json:"status"`
	UpstreamAddr string `json:"upstream_addr"`
}

// AccessLog returns the access log's entries so far.
func (e *Edge) AccessLog() []AccessEntry {
	var out []AccessEntry
	sc := bufio.NewScanner(strings.NewReader(e.read("var/log/nginx-access.log")))
	for sc.Scan() {
		var a AccessEntry
		if json.Unmarshal(sc.Bytes(), &a) == nil {
			out = append(out, a)
		}
	}
	return out
}
