package jobs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/testenv"
)

// openStore returns a Store on a database of the test's own (the real
// MongoDB-compatible database: FerretDB locally), dropped at the end.
func openStore(t *testing.T) *jobs.Store {
	t.Helper()
	mc, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)))
	if err != nil {
		t.Fatal(err)
	}
	db := mc.Database(fmt.Sprintf("audiomill_gwtest_jobs_%d", time.Now().UnixNano()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = db.Drop(ctx)
		_ = mc.Disconnect(ctx)
	})
	s := jobs.NewStore(db)
	if err := s.EnsureIndexes(testenv.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return s
}

func newJob(t *testing.T, s *jobs.Store, owner string) jobs.Job {
	t.Helper()
	j := jobs.Job{Owner: owner, OwnerEmail: owner + "@example.com", Video: jobs.Video{FileID: "v", Name: "v.mp4", Size: 1}}
	if err := s.Create(testenv.Context(t, 10*time.Second), &j, time.Minute); err != nil {
		t.Fatal(err)
	}
	return j
}

// TestTransitions: each event applied to each status, on the real database
// (what FerretDB does with $in/$ne/$lte filters is what we rely on).
func TestTransitions(t *testing.T) {
	s := openStore(t)
	ctx := testenv.Context(t, 60*time.Second)
	type step struct {
		name  string
		apply func(j jobs.Job) (bool, error)
	}
	progress := func(p int) step {
		return step{fmt.Sprintf("progress %d", p), func(j jobs.Job) (bool, error) { return s.SetProgress(ctx, j.ID, p) }}
	}
	done := step{"done", func(j jobs.Job) (bool, error) {
		return s.SetDone(ctx, j.ID, jobs.Audio{FileID: "a", Size: 2, DurationSeconds: 1})
	}}
	failed := step{"failed", func(j jobs.Job) (bool, error) { return s.SetFailed(ctx, j.ID, "bad input", false) }}

	for _, tc := range []struct {
		name       string
		steps      []step
		changed    []bool
		want       jobs.Status
		wantPct    int
		wantReason string
	}{
		{"ProgressMovesForward", []step{progress(10), progress(50)}, []bool{true, true}, jobs.Converting, 50, ""},
		{"ProgressNeverBack", []step{progress(60), progress(30)}, []bool{true, false}, jobs.Converting, 60, ""},
		{"Done", []step{progress(20), done}, []bool{true, true}, jobs.Done, 100, ""},
		{"DoneTwice", []step{done, done}, []bool{true, false}, jobs.Done, 100, ""},
		{"DoneStaysDoneOnFailed", []step{done, failed}, []bool{true, false}, jobs.Done, 100, ""},
		{"DoneStaysDoneOnProgress", []step{done, progress(40)}, []bool{true, false}, jobs.Done, 100, ""},
		{"Failed", []step{progress(5), failed}, []bool{true, true}, jobs.Failed, 5, "bad input"},
		{"FailedThenProgressIgnored", []step{failed, progress(90)}, []bool{true, false}, jobs.Failed, 0, "bad input"},
		{"FailedThenDone", []step{failed, done}, []bool{true, true}, jobs.Done, 100, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t, s, "owner-"+tc.name)
			for i, st := range tc.steps {
				changed, err := st.apply(j)
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				if changed != tc.changed[i] {
					t.Errorf("%s: changed = %v, want %v", st.name, changed, tc.changed[i])
				}
			}
			got, err := s.Get(ctx, j.Owner, j.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.want || got.Progress != tc.wantPct || got.Reason != tc.wantReason || !got.Published {
				t.Errorf("job %+v; want %s %d%% reason %q published", got, tc.want, tc.wantPct, tc.wantReason)
			}
		})
	}

	t.Run("ErrUnknownJob", func(t *testing.T) {
		if changed, err := s.SetDone(ctx, jobs.NewID(), jobs.Audio{FileID: "a"}); changed || err != nil {
			t.Errorf("done of an unknown job: %v %v", changed, err)
		}
		if _, err := s.Get(ctx, "x", jobs.NewID()); errs.CodeOf(err) != errs.NotFound {
			t.Errorf("get unknown: %v", err)
		}
	})
	t.Run("ErrOtherOwner", func(t *testing.T) {
		j := newJob(t, s, "alice")
		if _, err := s.Get(ctx, "bob", j.ID); errs.CodeOf(err) != errs.NotFound {
			t.Errorf("bob gets alice's job: %v", err)
		}
		if err := s.Delete(ctx, "bob", j.ID); errs.CodeOf(err) != errs.NotFound {
			t.Errorf("bob deletes alice's job: %v", err)
		}
	})
	t.Run("Unpublished", func(t *testing.T) {
		j := jobs.Job{Owner: "relay", OwnerEmail: "r@example.com"}
		if err := s.Create(ctx, &j, -time.Second); err != nil { // lease already over
			t.Fatal(err)
		}
		leased := newJob(t, s, "relay") // lease of a minute: the upload's
		list, err := s.Unpublished(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, x := range list {
			found[x.ID.Hex()] = true
		}
		if !found[j.ID.Hex()] || found[leased.ID.Hex()] {
			t.Fatalf("unpublished %v; want %s and not %s", found, j.ID.Hex(), leased.ID.Hex())
		}
		if err := s.MarkPublished(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		list, _ = s.Unpublished(ctx, 100)
		for _, x := range list {
			if x.ID == j.ID {
				t.Fatal("a published job is still listed")
			}
		}
	})
	t.Run("ErrMalformedID", func(t *testing.T) {
		for _, id := range []string{"", "xyz", "6b043cbc30d0377afdaeb2a", "6b043cbc30d0377afdaeb2aZ"} {
			if _, err := jobs.ParseID(id); errs.CodeOf(err) != errs.Invalid {
				t.Errorf("ParseID(%q) = %v", id, err)
			}
		}
	})
}
