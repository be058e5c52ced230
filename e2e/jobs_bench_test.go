package e2e_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/audiomill/audiomill/e2e/stack"
	"github.com/audiomill/audiomill/platform/testenv"
)

// The store BenchmarkJobs fills: storeJobs jobs of storeUsers users, and the
// benchmark's own user's myJobs among them.
const (
	storeJobs  = 100_000
	storeUsers = 1_000
	myJobs     = 100
	smallStore = 1_000
)

// BenchmarkJobs measures, in one run, the gateway's reads of a user's jobs
// against the bound that limits them, nginx's own fixed answer (the edge's
// /healthz), with the jobs of many users in the store:
//   - list-at-1000 and list-at-100000: the first page of the user's job list
//     when the store holds 1,000 and then 100,000 jobs (the user owns 100 in
//     both); the second reports its p50 as a multiple of the first's
//     (target ≤ 1.5×: the list costs what the user's page costs);
//   - nginx-return-200, job-via-edge, job-direct-gateway: GET
//     /api/v1/jobs/{id} with 100,000 jobs of 1,000 users in the store; the
//     edge's rate is reported as a percentage of nginx's (target ≥ 20 %,
//     p99 ≤ 25 ms).
func BenchmarkJobs(b *testing.B) {
	s := stack.New(b)
	jobsDB := testenv.NewDatabase(b)
	s.Start("auth")
	g := s.Start("gateway", "DATABASE_URL="+jobsDB, "GATEWAY_STATUS_QUEUE=bench.job-status-"+s.Tag)
	e := s.StartEdge()
	testenv.Eventually(b, 10*time.Second, func() bool { return inUpstream(e, g.Addr) }, "gateway never routed")
	token := signUp(b, e)
	owner := subjectOf(b, token)

	ctx := testenv.Context(b, 10*time.Minute)
	db, err := pgx.Connect(ctx, jobsDB)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close(context.Background())
	seedJobs(b, db, "a", 0, myJobs, func(int) string { return owner })
	seedJobs(b, db, "b", 0, smallStore-myJobs, otherOwner)

	list := e.URL("/api/v1/jobs")
	mine := e.URL("/api/v1/jobs/" + jobID("a", myJobs/2))
	var small testenv.Throughput
	b.Run("list-at-1000", func(b *testing.B) { small = testenv.BenchGET(b, list, token, benchConcurrency) })

	seedJobs(b, db, "b", smallStore-myJobs, storeJobs-myJobs, otherOwner)
	var nginx testenv.Throughput
	b.Run("nginx-return-200", func(b *testing.B) { nginx = testenv.BenchGET(b, e.URL("/healthz"), "", benchConcurrency) })
	b.Run("job-via-edge", func(b *testing.B) {
		t := testenv.BenchGET(b, mine, token, benchConcurrency)
		b.ReportMetric(100*t.Rate/nginx.Rate, "%-of-nginx")
	})
	b.Run("job-direct-gateway", func(b *testing.B) {
		testenv.BenchGET(b, "http://"+g.Addr+"/api/v1/jobs/"+jobID("a", myJobs/2), token, benchConcurrency)
	})
	b.Run("list-at-100000", func(b *testing.B) {
		t := testenv.BenchGET(b, list, token, benchConcurrency)
		b.ReportMetric(float64(t.P50)/float64(small.P50), "p50-×-at-1000")
	})
}

// jobID is the id of the i-th seeded job of a series (24 hex digits, the
// series' letter first).
func jobID(series string, i int) string { return fmt.Sprintf("%s%023x", series, i) }

// otherOwner spreads the other jobs over storeUsers-1 users.
func otherOwner(i int) string { return fmt.Sprintf("bench-user-%d", i%(storeUsers-1)) }

// seedJobs writes jobs from to to of a series straight into the gateway's
// database (done jobs with an MP3, newest the highest i, one second apart),
// with COPY, and refreshes the planner's statistics.
func seedJobs(b *testing.B, db *pgx.Conn, series string, from, to int, owner func(int) string) {
	b.Helper()
	ctx := testenv.Context(b, 5*time.Minute)
	base := time.Now().Add(-time.Duration(to) * time.Second)
	rows := make([][]any, 0, to-from)
	for i := from; i < to; i++ {
		at := base.Add(time.Duration(i) * time.Second)
		rows = append(rows, []any{jobID(series, i), owner(i), "bench@example.com", "done", 100,
			"video-" + jobID(series, i), "talk.mp4", "video/mp4", int64(1 << 20),
			"audio-" + jobID(series, i), int64(1 << 18), 37.8, at, at})
	}
	cols := []string{"id", "owner", "owner_email", "status", "progress", "video_file_id", "video_name",
		"video_content_type", "video_size", "audio_file_id", "audio_size", "audio_duration_seconds",
		"created_at", "updated_at"}
	if _, err := db.CopyFrom(ctx, pgx.Identifier{"jobs"}, cols, pgx.CopyFromRows(rows)); err != nil {
		b.Fatalf("seed jobs: %v", err)
	}
	if _, err := db.Exec(ctx, "analyze jobs"); err != nil {
		b.Fatalf("analyze jobs: %v", err)
	}
}

// subjectOf returns the sub claim of a JWT (read, not verified: the
// benchmark seeds jobs for the user the token names).
func subjectOf(tb testing.TB, token string) string {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		tb.Fatal(err)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Sub == "" {
		tb.Fatalf("no sub claim: %v", err)
	}
	return claims.Sub
}
