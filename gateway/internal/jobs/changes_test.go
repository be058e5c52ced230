package jobs_test

import (
	"sync"
	"testing"
	"time"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/jobs/jobstest"
	"github.com/audiomill/audiomill/platform/testenv"
)

// TestChangesRecordEveryAppliedChange: creation, each status change that
// was applied, a discard and a delete each record one Change in order; an
// update that changes nothing records none; another owner's are apart.
func TestChangesRecordEveryAppliedChange(t *testing.T) {
	_, s, _ := jobstest.Open(t)
	ctx := testenv.Context(t, 30*time.Second)
	j, _ := newJob(t, s, "alice", time.Hour)
	other, _ := newJob(t, s, "bob", time.Hour)
	steps := []func() (bool, error){
		func() (bool, error) { return s.SetProgress(ctx, j.ID, 30) },
		func() (bool, error) { return s.SetProgress(ctx, j.ID, 20) }, // lower: no change
		func() (bool, error) { return s.SetDone(ctx, j.ID, jobs.Audio{FileID: "mp3", Size: 9}) },
		func() (bool, error) { return s.SetFailed(ctx, j.ID, "late", false) }, // done stays done
	}
	for i, step := range steps {
		if _, err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := s.Delete(ctx, "alice", j.ID); err != nil {
		t.Fatal(err)
	}
	list, err := s.Changes(ctx, "alice", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		kind     jobs.ChangeKind
		status   jobs.Status
		progress int
	}
	want := []seen{{jobs.ChangeJob, jobs.Queued, 0}, {jobs.ChangeJob, jobs.Converting, 30},
		{jobs.ChangeJob, jobs.Done, 100}, {jobs.ChangeDeleted, "", 0}}
	if len(list) != len(want) {
		t.Fatalf("alice's changes: %d, want %d: %+v", len(list), len(want), list)
	}
	for i, c := range list {
		got := seen{c.Kind, c.Job.Status, c.Job.Progress}
		if got != want[i] || c.JobID != j.ID || c.Owner != "alice" {
			t.Errorf("change %d = %+v of %s, want %+v of %s", i, got, c.JobID, want[i], j.ID)
		}
		if i > 0 && c.ID <= list[i-1].ID {
			t.Errorf("change %d has id %d after %d", i, c.ID, list[i-1].ID)
		}
	}
	if list[2].Job.Audio == nil || list[2].Job.Audio.FileID != "mp3" {
		t.Errorf("done change has no MP3: %+v", list[2].Job)
	}
	if !list[2].Job.UpdatedAt.After(list[0].Job.CreatedAt) && !list[2].Job.UpdatedAt.Equal(list[0].Job.CreatedAt) {
		t.Errorf("updated_at %v before created_at %v", list[2].Job.UpdatedAt, list[0].Job.CreatedAt)
	}
	bob, err := s.Changes(ctx, "bob", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(bob) != 1 || bob[0].JobID != other.ID {
		t.Errorf("bob's changes = %+v, want only his job's creation", bob)
	}
	// A discarded event fails its job: that is a change too.
	k, ev := newJob(t, s, "carol", time.Hour)
	if err := s.Discard(ctx, ev, "too big", "the upload could not be published"); err != nil {
		t.Fatal(err)
	}
	carol, err := s.Changes(ctx, "carol", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(carol) != 2 || carol[1].Job.Status != jobs.Failed || carol[1].JobID != k.ID {
		t.Errorf("carol's changes = %+v, want created then failed", carol)
	}
}

// TestChangesFollowCommitOrder: while many changes of one owner's jobs
// commit concurrently, a reader that repeatedly reads "after the last id it
// saw" (what a stream does) sees every change exactly once: an owner's ids
// grow in commit order, so none commits behind a reader's position.
func TestChangesFollowCommitOrder(t *testing.T) {
	_, s, _ := jobstest.Open(t)
	ctx := testenv.Context(t, 2*time.Minute)
	const nJobs, steps = 8, 25
	var list []jobs.Job
	for range nJobs {
		j, _ := newJob(t, s, "dave", time.Hour)
		list = append(list, j)
	}
	start, err := s.Bounds(ctx, "dave")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	seen := map[int64]int{}
	var readErr error
	var reader sync.WaitGroup
	reader.Add(1)
	go func() {
		defer reader.Done()
		last := start.Latest
		for {
			// Once the writers are done, read until a read begun after
			// that finds nothing.
			done := false
			select {
			case <-stop:
				done = true
			default:
			}
			batch, err := s.Changes(ctx, "dave", last, 7)
			if err != nil {
				readErr = err
				return
			}
			for _, c := range batch {
				seen[c.ID]++
				last = c.ID
			}
			if done && len(batch) == 0 {
				return
			}
		}
	}()
	var writers sync.WaitGroup
	for _, j := range list {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for p := 1; p <= steps; p++ {
				if _, err := s.SetProgress(ctx, j.ID, p*3); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	reader.Wait()
	if readErr != nil {
		t.Fatal(readErr)
	}
	all, err := s.Changes(ctx, "dave", start.Latest, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != nJobs*steps {
		t.Fatalf("%d changes recorded, want %d", len(all), nJobs*steps)
	}
	for _, c := range all {
		if seen[c.ID] != 1 {
			t.Errorf("change %d seen %d times by the follower", c.ID, seen[c.ID])
		}
	}
}

// TestPruneChanges: changes older than the retention go, a prefix of ids,
// and Bounds.Pruned says where the kept ones start.
func TestPruneChanges(t *testing.T) {
	pool, s, _ := jobstest.Open(t)
	ctx := testenv.Context(t, 30*time.Second)
	old, _ := newJob(t, s, "erin", time.Hour)
	if _, err := pool.Exec(ctx, `update job_events set created_at = now() - interval '2 days' where job_id = $1`, old.ID.Hex()); err != nil {
		t.Fatal(err)
	}
	kept, _ := newJob(t, s, "erin", time.Hour)
	n, err := s.PruneChanges(ctx, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("pruned %d, want 1", n)
	}
	b, err := s.Bounds(ctx, "erin")
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.Changes(ctx, "erin", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].JobID != kept.ID {
		t.Fatalf("kept %+v, want only %s's creation", list, kept.ID)
	}
	if b.Pruned == 0 || b.Pruned >= list[0].ID || b.Latest != list[0].ID || b.Newest < b.Latest {
		t.Errorf("bounds %+v, kept id %d", b, list[0].ID)
	}
	// Nothing old left: a second sweep deletes nothing and keeps the mark.
	if n, err := s.PruneChanges(ctx, 24*time.Hour); err != nil || n != 0 {
		t.Errorf("second prune: %d, %v", n, err)
	}
	if b2, _ := s.Bounds(ctx, "erin"); b2.Pruned != b.Pruned {
		t.Errorf("pruned mark moved from %d to %d", b.Pruned, b2.Pruned)
	}
}
