package app_test

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/e2e/stack"
	"github.com/audiomill/audiomill/gateway/internal/gatewaytest"
	"github.com/audiomill/audiomill/platform/testenv"
)

// benchClients is the number of clients sending at once.
const benchClients = 32

// BenchmarkGetJob measures GET /api/v1/jobs/{id} (token verification, one
// PostgreSQL read by primary key) at 32 concurrent clients, straight to a gateway process and
// through the nginx edge, in one run: requests/s and p50/p99 latency.
func BenchmarkGetJob(b *testing.B) {
	deps := gatewaytest.StartDeps(b, &bins)
	s := stack.New(b)
	queue := "gatewaybench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ".job-status"
	// stack.Start gives the gateway a fresh database of its own.
	g := s.Start("gateway", "AUTH_URL="+deps.AuthURL, "FILESTORAGE_URL="+deps.FilesURL,
		"AUTH_JWKS_URL="+deps.AuthURL+"/.well-known/jwks.json", "SERVICE_CLIENT_SECRET="+gatewaytest.ClientSecret,
		"GATEWAY_STATUS_QUEUE="+queue, "AMQP_URL="+deps.AMQPURL)
	e := s.StartEdge()
	direct := "http://" + g.Addr

	u := deps.SignUp(b, direct)
	body, ct := gatewaytest.Multipart([3]string{"file", "bench.mp4", "bench video"})
	resp := testenv.Do(b, testenv.NewRequest(b, http.MethodPost, direct+"/api/v1/videos", body, ct, u.Token))
	if resp.Status != http.StatusAccepted {
		b.Fatalf("upload: %d %s", resp.Status, resp.Body)
	}
	var j jobJSON
	resp.JSON(b, &j)
	path := "/api/v1/jobs/" + j.ID
	testenv.Eventually(b, 15*time.Second, func() bool {
		r, err := http.NewRequest(http.MethodGet, e.URL(path), nil)
		if err != nil {
			return false
		}
		r.Header.Set("Authorization", "Bearer "+u.Token)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "the edge never routed to the gateway")

	for _, tc := range []struct{ name, url string }{
		{"direct", direct + path},
		{"via-edge", e.URL(path)},
	} {
		b.Run(tc.name, func(b *testing.B) { testenv.BenchGET(b, tc.url, u.Token, benchClients) })
	}
}

// uploadSize is the video of BenchmarkUpload: 512 MiB, generated while it
// is sent (the benchmark holds none of it in memory).
const uploadSize = 512 << 20

// BenchmarkUpload streams a 512 MiB video through a gateway process into
// filestorage (disk backend) and reports the throughput and how much the
// gateway's resident memory grew above its idle level (target: < 64 MiB).
func BenchmarkUpload(b *testing.B) {
	deps := gatewaytest.StartDeps(b, &bins)
	bin, err := testenv.BuildService(b.TempDir(), "gateway")
	if err != nil {
		b.Fatal(err)
	}
	queue := "gatewaybench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ".job-status"
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT=0", "CONSUL_HTTP_ADDR=127.0.0.1:1", "LOG_LEVEL=info", "SHUTDOWN_DELAY=0s",
		"DATABASE_URL="+testenv.NewDatabase(b), "REDIS_ADDR="+testenv.RedisAddr(b),
		"AMQP_URL="+deps.AMQPURL, "AUTH_URL="+deps.AuthURL, "FILESTORAGE_URL="+deps.FilesURL,
		"AUTH_JWKS_URL="+deps.AuthURL+"/.well-known/jwks.json", "SERVICE_CLIENT_SECRET="+gatewaytest.ClientSecret,
		"GATEWAY_STATUS_QUEUE="+queue)
	p := testenv.StartProcess(b, cmd)
	base := "http://" + p.Addr
	u := deps.SignUp(b, base)

	raw := func(size int64) *http.Request {
		req := testenv.NewRequest(b, http.MethodPost, base+"/api/v1/videos", io.LimitReader(pattern{}, size), "video/mp4", u.Token)
		req.ContentLength = size
		req.Header.Set("X-Filename", "big.mp4")
		return req
	}
	multi := func(size int64) *http.Request {
		const boundary = "benchboundary"
		head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\nContent-Type: video/mp4\r\n\r\n"
		tail := "\r\n--" + boundary + "--\r\n"
		body := io.MultiReader(strings.NewReader(head), io.LimitReader(pattern{}, size), strings.NewReader(tail))
		req := testenv.NewRequest(b, http.MethodPost, base+"/api/v1/videos", body, "multipart/form-data; boundary="+boundary, u.Token)
		req.ContentLength = int64(len(head)) + size + int64(len(tail))
		return req
	}
	if resp := testenv.Do(b, raw(1<<20)); resp.Status != http.StatusAccepted { // warm-up: connections, token, buffers
		b.Fatalf("warm-up upload: %d %s", resp.Status, resp.Body)
	}
	idle := rss(b, p.Cmd.Process.Pid)

	for _, tc := range []struct {
		name string
		req  func(int64) *http.Request
	}{{"raw", raw}, {"multipart", multi}} {
		b.Run(tc.name, func(b *testing.B) {
			var total time.Duration
			var peak int64
			for range b.N {
				stop := make(chan struct{})
				peakc := make(chan int64, 1)
				go func() {
					var top int64
					t := time.NewTicker(20 * time.Millisecond)
					defer t.Stop()
					for {
						select {
						case <-stop:
							peakc <- top
							return
						case <-t.C:
							top = max(top, rss(b, p.Cmd.Process.Pid))
						}
					}
				}()
				t0 := time.Now()
				resp := testenv.Do(b, tc.req(uploadSize))
				d := time.Since(t0)
				close(stop)
				peak = max(peak, <-peakc)
				if resp.Status != http.StatusAccepted {
					b.Fatalf("upload: %d %s after %v\ngateway:\n%s\nfilestorage:\n%s", resp.Status, resp.Body, d,
						tail(p.Output()), tail(deps.Files.Output()))
				}
				total += d
			}
			b.SetBytes(uploadSize)
			b.ReportMetric(float64(uploadSize)*float64(b.N)/(1<<20)/total.Seconds(), "MiB/s")
			b.ReportMetric(float64(idle)/(1<<20), "idle-rss-MiB")
			b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MiB")
			b.ReportMetric(float64(peak-idle)/(1<<20), "rss-growth-MiB")
			if peak-idle > 64<<20 {
				b.Errorf("the gateway's RSS grew by %d MiB during a %d MiB upload; target < 64 MiB", (peak-idle)>>20, uploadSize>>20)
			}
		})
	}
}

// pattern is an endless reader of video-ish bytes.
type pattern struct{}

func (pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	return len(p), nil
}

// rss returns the resident set size of process pid, in bytes.
func rss(tb testing.TB, pid int) int64 {
	m, err := testenv.ProcessMemory(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return m.RSS
}

// tail is the end of a process's output.
func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}
