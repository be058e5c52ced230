// Package jobstest helps tests and benchmarks use the jobs store: a store
// on a fresh PostgreSQL database of the test's own, and bulk seeding with
// COPY.
package jobstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/platform/testenv"
)

// Open returns the pool and the Store of a fresh database (testenv
// .NewDatabase, dropped when tb ends) with the jobs' schema migrated, and
// the database's URL.
func Open(tb testing.TB) (*pgxpool.Pool, *jobs.Store, string) {
	tb.Helper()
	url := testenv.NewDatabase(tb)
	pool := Connect(tb, url)
	return pool, jobs.NewStore(pool), url
}

// Connect returns a pool on url with the jobs' schema migrated, closed when
// tb ends.
func Connect(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	return testenv.NewPool(tb, url, jobs.Migrations())
}

// Columns are the jobs columns Seed writes with COPY, in the order of
// Row: what a benchmark outside Go may COPY as well (psql \copy jobs (…)
// from a CSV). Audio columns are null for a job without an MP3; the
// outbox is left empty (seeded jobs count as published).
func Columns() []string {
	return []string{"id", "owner", "owner_email", "locale", "status", "progress",
		"video_file_id", "video_name", "video_content_type", "video_size",
		"audio_file_id", "audio_size", "audio_duration_seconds", "audio_bitrate_kbps",
		"reason", "retryable", "request_id", "created_at", "updated_at"}
}

// Row is j's values in Columns' order.
func Row(j jobs.Job) []any {
	var (
		audioID *string
		aSize   *int64
		aDur    *float64
		aKbps   *int32
	)
	if j.Audio != nil {
		kbps := int32(j.Audio.BitrateKbps)
		audioID, aSize, aDur, aKbps = &j.Audio.FileID, &j.Audio.Size, &j.Audio.DurationSeconds, &kbps
	}
	return []any{j.ID.Hex(), j.Owner, j.OwnerEmail, j.Locale, string(j.Status), int16(j.Progress),
		j.Video.FileID, j.Video.Name, j.Video.ContentType, j.Video.Size,
		audioID, aSize, aDur, aKbps, j.Reason, j.Retryable, j.RequestID, j.CreatedAt, j.UpdatedAt}
}

// Seed writes list with one COPY (100,000 jobs take a few seconds) and
// returns how many rows it wrote. Jobs keep their fields as given: set ID,
// Status and CreatedAt (Jobs makes such jobs).
func Seed(ctx context.Context, pool *pgxpool.Pool, list []jobs.Job) (int64, error) {
	n, err := pool.CopyFrom(ctx, pgx.Identifier{"jobs"}, Columns(),
		pgx.CopyFromSlice(len(list), func(i int) ([]any, error) { return Row(list[i]), nil }))
	if err != nil {
		return n, fmt.Errorf("seed %d jobs: %w", len(list), err)
	}
	return n, nil
}

// Jobs makes perOwner done jobs for each of owners, created one second
// apart per owner and ending at end (the newest), with ids from
// jobs.NewID: the data of a list or lookup benchmark.
func Jobs(owners []string, perOwner int, end time.Time) []jobs.Job {
	list := make([]jobs.Job, 0, len(owners)*perOwner)
	for _, o := range owners {
		for i := range perOwner {
			at := end.Add(-time.Duration(perOwner-1-i) * time.Second).UTC().Truncate(time.Microsecond)
			id := jobs.NewID()
			list = append(list, jobs.Job{ID: id, Owner: o, OwnerEmail: o + "@example.com", Status: jobs.Done, Progress: 100,
				Video:     jobs.Video{FileID: "v-" + id.Hex(), Name: "clip.mp4", ContentType: "video/mp4", Size: 1 << 20},
				Audio:     &jobs.Audio{FileID: "a-" + id.Hex(), Size: 1 << 18, DurationSeconds: 30, BitrateKbps: 128},
				CreatedAt: at, UpdatedAt: at, RequestID: "seed"})
		}
	}
	return list
}
