package jobs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/jobs/jobstest"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/testenv"
)

// TestIdempotencyKeys: the claims of an upload's Idempotency-Key on the
// real database: one attempt holds a key, its job completes it, a failed
// attempt releases it, a lapsed claim or an expired key is taken over (and
// the attempt that lost it cannot record its job), expired keys are swept,
// and a job's delete frees its key.
func TestIdempotencyKeys(t *testing.T) {
	pool, s, _ := jobstest.Open(t)
	ctx := testenv.Context(t, 60*time.Second)
	claim := func(owner, key, fp string, lease, ttl time.Duration) jobs.KeyClaim {
		return jobs.KeyClaim{Owner: owner, Key: key, Fingerprint: fp, Attempt: jobs.NewID(), Lease: lease, TTL: ttl}
	}
	state := func(t *testing.T, c jobs.KeyClaim) jobs.KeyStatus {
		t.Helper()
		st, err := s.ClaimKey(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	record := func(c jobs.KeyClaim) (jobs.Job, error) {
		j := jobs.Job{ID: c.Attempt, Owner: c.Owner, OwnerEmail: "a@example.com",
			Video: jobs.Video{FileID: "v", Name: "v.mp4", ContentType: "video/mp4", Size: 1}}
		ev := event()
		return j, s.CreateClaimed(ctx, &j, &ev, time.Second, &c)
	}
	jobCount := func(t *testing.T, owner string) int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, `select count(*) from jobs where owner = $1`, owner).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("OneAttemptHoldsTheKey", func(t *testing.T) {
		first := claim("alice", "k1", "fp", time.Minute, time.Hour)
		if st := state(t, first); st.State != jobs.KeyClaimed {
			t.Fatalf("first claim = %+v", st)
		}
		second := claim("alice", "k1", "fp", time.Minute, time.Hour)
		if st := state(t, second); st.State != jobs.KeyBusy || st.RetryAfter <= 0 || st.RetryAfter > time.Minute {
			t.Fatalf("second claim while the first runs = %+v; want busy", st)
		}
		if st := state(t, claim("alice", "k1", "other", time.Minute, time.Hour)); st.State != jobs.KeyMismatch {
			t.Fatalf("another fingerprint = %+v; want mismatch", st)
		}
		if st := state(t, claim("bob", "k1", "fp", time.Minute, time.Hour)); st.State != jobs.KeyClaimed {
			t.Fatalf("another owner's key = %+v; want claimed", st)
		}
		j, err := record(first)
		if err != nil {
			t.Fatal(err)
		}
		if st := state(t, second); st.State != jobs.KeyDone || st.JobID != j.ID {
			t.Fatalf("after the job = %+v; want done with %s", st, j.ID.Hex())
		}
		if _, err := record(second); errs.CodeOf(err) != errs.Conflict {
			t.Fatalf("a second job for the key = %v; want conflict", err)
		}
		if n := jobCount(t, "alice"); n != 1 {
			t.Fatalf("%d jobs, want 1", n)
		}
	})

	t.Run("ReleasedKeyIsFree", func(t *testing.T) {
		first := claim("alice", "k2", "fp", time.Minute, time.Hour)
		state(t, first)
		if err := s.ReleaseKey(ctx, first); err != nil {
			t.Fatal(err)
		}
		if st := state(t, claim("alice", "k2", "other", time.Minute, time.Hour)); st.State != jobs.KeyClaimed {
			t.Fatalf("after a release = %+v; want claimed", st)
		}
	})

	t.Run("LapsedClaimIsTakenOver", func(t *testing.T) {
		dead := claim("alice", "k3", "fp", time.Second, time.Hour)
		state(t, dead)
		renewed := claim("alice", "k4", "fp", time.Second, time.Hour)
		state(t, renewed)
		time.Sleep(600 * time.Millisecond)
		if held, err := s.RenewKey(ctx, jobs.KeyClaim{Owner: "alice", Key: "k4", Attempt: renewed.Attempt, Lease: time.Minute}); err != nil || !held {
			t.Fatalf("renew = %v, %v", held, err)
		}
		time.Sleep(600 * time.Millisecond)
		next := claim("alice", "k3", "fp", time.Minute, time.Hour)
		if st := state(t, next); st.State != jobs.KeyClaimed {
			t.Fatalf("after the claim lapsed = %+v; want claimed", st)
		}
		if st := state(t, claim("alice", "k4", "fp", time.Minute, time.Hour)); st.State != jobs.KeyBusy {
			t.Fatalf("a renewed claim = %+v; want busy", st)
		}
		// The attempt that lost its key records nothing.
		if _, err := record(dead); errs.CodeOf(err) != errs.Conflict {
			t.Fatalf("the dead attempt's job = %v; want conflict", err)
		}
		if held, _ := s.RenewKey(ctx, dead); held {
			t.Fatal("the dead attempt renewed a key it lost")
		}
		if _, err := record(next); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ExpiredKeyIsTakenOverAndSwept", func(t *testing.T) {
		c := claim("carol", "k5", "fp", time.Minute, time.Second)
		state(t, c)
		j, err := record(c)
		if err != nil {
			t.Fatal(err)
		}
		swept := claim("carol", "k6", "fp", time.Minute, time.Second)
		state(t, swept)
		if _, err := record(swept); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond)
		if st := state(t, claim("carol", "k5", "other", time.Minute, time.Hour)); st.State != jobs.KeyClaimed {
			t.Fatalf("an expired key = %+v; want claimed", st)
		}
		n, err := s.SweepKeys(ctx, 100)
		if err != nil || n < 1 {
			t.Fatalf("sweep = %d, %v; want the expired key k6", n, err)
		}
		var left int
		if err := pool.QueryRow(ctx, `select count(*) from idempotency_keys where owner = 'carol'`).Scan(&left); err != nil || left != 1 {
			t.Fatalf("carol's keys after the sweep = %d, %v; want the claimed k5 alone", left, err)
		}
		if _, err := s.Get(ctx, "carol", j.ID); err != nil {
			t.Fatalf("the job of an expired key: %v", err)
		}
	})

	t.Run("DeletedJobFreesItsKey", func(t *testing.T) {
		c := claim("dave", "k7", "fp", time.Minute, time.Hour)
		state(t, c)
		j, err := record(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "dave", j.ID); err != nil {
			t.Fatal(err)
		}
		if st := state(t, claim("dave", "k7", "fp", time.Minute, time.Hour)); st.State != jobs.KeyClaimed {
			t.Fatalf("after the job's delete = %+v; want claimed", st)
		}
	})
}

func TestValidKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"9f1c2d3e-upload 1 ~!", true},
		{strings.Repeat("k", 255), true},
		{"", false},
		{strings.Repeat("k", 256), false},
		{"tab\there", false},
		{"del\x7f", false},
		{"café", false},
		{"nul\x00", false},
	} {
		if err := jobs.ValidKey(tc.key); (err == nil) != tc.ok || (err != nil && errs.CodeOf(err) != errs.Invalid) {
			t.Errorf("ValidKey(%q) = %v; want ok %v", tc.key, err, tc.ok)
		}
	}
}
