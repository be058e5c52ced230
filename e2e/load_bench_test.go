package e2e_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
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
	users := make([]user, loadUsers)
	for i := range users {
		users[i] = signUpUser(b, edge)
	}
	b.ResetTimer()
	for range b.N {
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
