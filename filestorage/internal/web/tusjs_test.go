package web_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/internal/filestoragetest"
	"github.com/audiomill/audiomill/filestorage/internal/store/storetest"
)

// tusJSVersion is the tus-js-client the resume test installs from npm.
const tusJSVersion = "4.3.1"

// tusJS returns the node_modules directory holding tus-js-client,
// installing it (outside the repository, in the user's cache) when missing.
func tusJS(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required for the tus-js-client test (Node 20 and npm; `make install` installs them): %v", tool, err)
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		cache = x
	}
	dir := filepath.Join(cache, "audiomill", "npm", "tus-js-client-"+tusJSVersion)
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "tus-js-client", "package.json")); err == nil {
		return modules
	}
	cmd := exec.Command("npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--no-save", "tus-js-client@"+tusJSVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install tus-js-client@%s into %s: %v\n%s", tusJSVersion, dir, err, out)
	}
	return modules
}

// cutProxy forwards TCP connections to target and cuts the first one once
// the client has sent more than cutAfter bytes through it.
type cutProxy struct {
	ln       net.Listener
	target   string
	cutAfter int64
	cut      atomic.Bool
	wg       sync.WaitGroup
}

func startCutProxy(t *testing.T, target string, cutAfter int64) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, cutAfter: cutAfter}
	go p.serve()
	t.Cleanup(func() { _ = ln.Close(); p.wg.Wait() })
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *cutProxy) handle(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(client, server)
		done <- struct{}{}
	}()
	go func() {
		buf := make([]byte, 64<<10)
		var sent int64
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if _, werr := server.Write(buf[:n]); werr != nil {
					break
				}
				sent += int64(n)
				if sent > p.cutAfter && p.cut.CompareAndSwap(false, true) {
					// The connection drops: both sides see it closed.
					if tc, ok := client.(*net.TCPConn); ok {
						_ = tc.SetLinger(0)
					}
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	<-done
}

// tus-js-client from npm uploads 50 MB; the connection is cut midway; the
// client resumes at the server's offset and the stored SHA-256 matches.
func TestTusJSClientResumesAfterCut(t *testing.T) {
	modules := tusJS(t)
	s := filestoragetest.Start(t, "gridfs", nil)
	const size = 50 << 20
	data := storetest.Data(size, 42)
	file := filepath.Join(t.TempDir(), "video.bin")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	proxy := startCutProxy(t, strings.TrimPrefix(s.URL, "http://"), 20<<20)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join("testdata", "tus_upload.js"))
	cmd.Env = append(os.Environ(),
		"NODE_PATH="+modules,
		"TUS_ENDPOINT=http://"+proxy.ln.Addr().String()+"/v1/buckets/videos/uploads/",
		"TUS_TOKEN="+s.Token(t, "alice", "storage"),
		"TUS_FILE="+file,
		"TUS_PATH=uploads/video.bin",
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\nstdout: %s\nstderr: %s", err, out, stderr.String())
	}
	var offsets []int64
	success := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var ev struct {
			Event  string
			Offset int64
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue
		}
		switch ev.Event {
		case "patch":
			offsets = append(offsets, ev.Offset)
		case "success":
			success = true
		}
	}
	if !success || !proxy.cut.Load() {
		t.Fatalf("success=%v cut=%v\n%s", success, proxy.cut.Load(), out)
	}
	if len(offsets) < 2 || offsets[0] != 0 || offsets[len(offsets)-1] <= 0 || offsets[len(offsets)-1] >= size {
		t.Fatalf("PATCH offsets %v: want a first PATCH at 0 and a resumed one inside the file", offsets)
	}
	a := api{t, s.URL, s.Token(t, "alice", "storage")}
	resp := a.do(http.MethodHead, "/v1/buckets/videos/files/uploads/video.bin", nil)
	expect(t, resp, http.StatusOK)
	if got := strings.Trim(resp.Header.Get("ETag"), `"`); got != hex.EncodeToString(sum[:]) || resp.Header.Get("Content-Length") != "52428800" {
		t.Fatalf("stored sha256 %s size %s, want %x", got, resp.Header.Get("Content-Length"), sum)
	}
	t.Logf("PATCH offsets: %v", offsets)
}
