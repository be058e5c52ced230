package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/testenv"
)

// loadUsers is how many users upload at once in BenchmarkFiftyUsers.
const loadUsers = 50

// BenchmarkFiftyUsers: 50 users each upload a small video at once through
// the edge of the running stack (`make up`); every job must end done, with
// one email each. Per round it reports the wall time until the last job is
// done, jobs/s, and the p50/p99 latency of the uploads themselves.
func BenchmarkFiftyUsers(b *testing.B) {
	edge := edgeURL(b)
	clip := video(b, 2, true)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		users := signUpUsers(b, edge, loadUsers) // new each round: its emails are counted alone
		b.StartTimer()
		start := time.Now()
		jobs := make([]string, loadUsers)
		latency := make([]time.Duration, loadUsers)
		var wg sync.WaitGroup
		for i, u := range users {
			wg.Go(func() {
				t0 := time.Now()
				jobs[i] = upload(b, edge, u, fmt.Sprintf("load-%d.mp4", i), clip)
				latency[i] = time.Since(t0)
			})
		}
		wg.Wait()
		for i, u := range users {
			if j, _ := awaitJob(b, edge, u, jobs[i]); j.Status != "done" {
				b.Fatalf("job of user %d = %+v", i, j)
			}
		}
		wall := time.Since(start)
		b.StopTimer()
		for _, u := range users {
			if n := len(emailsTo(b, u.email, 1)); n != 1 {
				b.Fatalf("%d emails to %s, want one", n, u.email)
			}
		}
		slices.Sort(latency)
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(float64(loadUsers)/wall.Seconds(), "jobs/s")
		b.ReportMetric(float64(latency[len(latency)/2].Microseconds())/1000, "upload-p50-ms")
		b.ReportMetric(float64(latency[len(latency)*99/100].Microseconds())/1000, "upload-p99-ms")
		b.StartTimer()
	}
}

// pipelineUsers and pipelineClipSeconds: BenchmarkTwelveUsers' load.
const (
	pipelineUsers       = 12
	pipelineClipSeconds = 40
)

// BenchmarkTwelveUsers: twelve users each upload a 40 s H.264/AAC video at
// once through the edge of the running stack; every job must end done, with
// one email each. In the same round it times its bound: ffmpeg alone
// converting the same twelve files two at a time (the converter's own
// arguments), and reports the pipeline's wall time as a multiple of it
// (target ≤ 2×), and how far each service's RSS rose above its idle size
// (target ≤ 64 MiB).
func BenchmarkTwelveUsers(b *testing.B) {
	edge := edgeURL(b)
	clip := video(b, pipelineClipSeconds, true)
	dir := b.TempDir()
	in := filepath.Join(dir, "clip.mp4")
	if err := os.WriteFile(in, clip, 0o600); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		users := signUpUsers(b, edge, pipelineUsers) // new each round: its emails are counted alone
		bound := ffmpegAlone(b, in, dir, pipelineUsers, 2)
		rss := watchServiceRSS(b)
		b.StartTimer()

		start := time.Now()
		jobs := make([]string, pipelineUsers)
		var wg sync.WaitGroup
		for i, u := range users {
			wg.Go(func() { jobs[i] = upload(b, edge, u, fmt.Sprintf("talk-%d.mp4", i), clip) })
		}
		wg.Wait()
		for i, u := range users {
			if j, _ := awaitJob(b, edge, u, jobs[i]); j.Status != "done" {
				b.Fatalf("job of user %d = %+v", i, j)
			}
		}
		wall := time.Since(start)
		b.StopTimer()
		growth := rss()
		for _, u := range users {
			if n := len(emailsTo(b, u.email, 1)); n != 1 {
				b.Fatalf("%d emails to %s, want one", n, u.email)
			}
		}
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(bound.Seconds(), "ffmpeg-alone-s")
		b.ReportMetric(wall.Seconds()/bound.Seconds(), "×-ffmpeg")
		var worst string
		var most int64
		for svc, g := range growth {
			b.Logf("%s: RSS +%.1f MiB over idle", svc, float64(g)/(1<<20))
			if g >= most {
				worst, most = svc, g
			}
		}
		b.ReportMetric(float64(most)/(1<<20), "max-rss-growth-MiB")
		b.Logf("largest RSS growth: %s", worst)
		b.StartTimer()
	}
}

// signUpUsers signs up n new users.
func signUpUsers(b *testing.B, edge string, n int) []user {
	b.Helper()
	users := make([]user, n)
	for i := range users {
		users[i] = signUpUser(b, edge)
	}
	return users
}

// ffmpegAlone converts in n times, workers at a time, with the converter's
// ffmpeg arguments, and returns the wall time.
func ffmpegAlone(b *testing.B, in, dir string, n, workers int) time.Duration {
	b.Helper()
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				out := filepath.Join(dir, fmt.Sprintf("alone-%d.mp3", i))
				cmd := exec.Command("ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y",
					"-i", in, "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1",
					"-c:a", "libmp3lame", "-q:a", "2", "-id3v2_version", "0", "-f", "mp3", out)
				if o, err := cmd.CombinedOutput(); err != nil {
					b.Errorf("ffmpeg alone: %v\n%s", err, o)
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// watchServiceRSS samples, every 100 ms, the RSS of every service process
// the stack runs (var/run/<service>.pid) until the returned function is
// called; that returns each one's peak growth over its RSS at the start.
func watchServiceRSS(b *testing.B) func() map[string]int64 {
	b.Helper()
	idle, peak := map[string]int64{}, map[string]int64{}
	pids := map[string]int{}
	for _, svc := range []string{"auth", "filestorage", "gateway", "converter", "notifier"} {
		pid := stackPID(b, svc)
		m, err := testenv.ProcessMemory(pid)
		if err != nil {
			b.Fatal(err)
		}
		pids[svc], idle[svc], peak[svc] = pid, m.RSS, m.RSS
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			for svc, pid := range pids {
				if m, err := testenv.ProcessMemory(pid); err == nil {
					peak[svc] = max(peak[svc], m.RSS)
				}
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() map[string]int64 {
		close(stop)
		<-done
		growth := map[string]int64{}
		for svc := range pids {
			growth[svc] = peak[svc] - idle[svc]
		}
		return growth
	}
}
