package jobs_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/jobs/jobstest"
	"github.com/audiomill/audiomill/platform/testenv"
)

// BenchmarkStore measures the store's two reads of the API, one job by id
// and the first page of a user's list (20 jobs), on 1,000 jobs and then on
// 100,000 jobs of 1,000 users, from one connection: the latency the
// gateway adds per request, p50 and p99 of each.
func BenchmarkStore(b *testing.B) {
	pool, s, _ := jobstest.Open(b)
	ctx := testenv.Context(b, 10*time.Minute)
	owners := func(n int, prefix string) []string {
		o := make([]string, n)
		for i := range o {
			o[i] = fmt.Sprintf("%s-%04d", prefix, i)
		}
		return o
	}
	mine := jobstest.Jobs([]string{"me"}, 100, time.Now())
	if _, err := jobstest.Seed(ctx, pool, append(mine, jobstest.Jobs(owners(9, "small"), 100, time.Now())...)); err != nil {
		b.Fatal(err)
	}
	target := mine[50]
	run := func(b *testing.B, size string) {
		for _, tc := range []struct {
			name string
			op   func() error
		}{
			{"get", func() error { _, err := s.Get(ctx, "me", target.ID); return err }},
			{"list", func() error { _, err := s.List(ctx, "me", jobs.ListOptions{Limit: 21}); return err }},
		} {
			b.Run(tc.name+"/"+size, func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				for b.Loop() {
					t0 := time.Now()
					if err := tc.op(); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
	if _, err := pool.Exec(ctx, "analyze jobs"); err != nil {
		b.Fatal(err)
	}
	run(b, "1k-jobs")
	if _, err := jobstest.Seed(ctx, pool, jobstest.Jobs(owners(990, "big"), 100, time.Now())); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "analyze jobs"); err != nil {
		b.Fatal(err)
	}
	run(b, "100k-jobs")
}
