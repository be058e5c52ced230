package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/jobs/jobstest"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/testenv"
)

// event is a valid outbox event body for tests (the store does not read it).
func event() jobs.Event {
	return jobs.Event{Type: "video.uploaded", Envelope: []byte(`{"id":"x","type":"video.uploaded"}`)}
}

func newJob(t *testing.T, s *jobs.Store, owner string, lease time.Duration) (jobs.Job, jobs.Event) {
	t.Helper()
	j := jobs.Job{ID: jobs.NewID(), Owner: owner, OwnerEmail: owner + "@example.com",
		Video: jobs.Video{FileID: "v", Name: "v.mp4", ContentType: "video/mp4", Size: 1}}
	ev := event()
	if err := s.Create(testenv.Context(t, 10*time.Second), &j, &ev, lease); err != nil {
		t.Fatal(err)
	}
	return j, ev
}

// TestTransitions: each event applied to each status, each one conditional
// UPDATE on the real database.
func TestTransitions(t *testing.T) {
	_, s, _ := jobstest.Open(t)
	ctx := testenv.Context(t, 60*time.Second)
	type step struct {
		name  string
		apply func(j jobs.Job) (bool, error)
	}
	progress := func(p int) step {
		return step{fmt.Sprintf("progress %d", p), func(j jobs.Job) (bool, error) { return s.SetProgress(ctx, j.ID, p) }}
	}
	done := step{"done", func(j jobs.Job) (bool, error) {
		return s.SetDone(ctx, j.ID, jobs.Audio{FileID: "a", Size: 2, DurationSeconds: 1, BitrateKbps: 128})
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
		{"ProgressDuplicate", []step{progress(40), progress(40)}, []bool{true, false}, jobs.Converting, 40, ""},
		{"ProgressZeroStartsConverting", []step{progress(0)}, []bool{true}, jobs.Converting, 0, ""},
		{"Done", []step{progress(20), done}, []bool{true, true}, jobs.Done, 100, ""},
		{"DoneTwice", []step{done, done}, []bool{true, false}, jobs.Done, 100, ""},
		{"DoneStaysDoneOnFailed", []step{done, failed}, []bool{true, false}, jobs.Done, 100, ""},
		{"DoneStaysDoneOnProgress", []step{done, progress(40)}, []bool{true, false}, jobs.Done, 100, ""},
		{"Failed", []step{progress(5), failed}, []bool{true, true}, jobs.Failed, 5, "bad input"},
		{"FailedTwice", []step{failed, failed}, []bool{true, false}, jobs.Failed, 0, "bad input"},
		{"FailedThenProgressIgnored", []step{failed, progress(90)}, []bool{true, false}, jobs.Failed, 0, "bad input"},
		{"FailedThenDone", []step{failed, done}, []bool{true, true}, jobs.Done, 100, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, _ := newJob(t, s, "owner-"+tc.name, time.Minute)
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
			if got.Status != tc.want || got.Progress != tc.wantPct || got.Reason != tc.wantReason {
				t.Errorf("job %+v; want %s %d%% reason %q", got, tc.want, tc.wantPct, tc.wantReason)
			}
			if (got.Status == jobs.Done) != (got.Audio != nil) {
				t.Errorf("status %s with audio %+v", got.Status, got.Audio)
			}
			if got.Audio != nil && *got.Audio != (jobs.Audio{FileID: "a", Size: 2, DurationSeconds: 1, BitrateKbps: 128}) {
				t.Errorf("audio %+v", *got.Audio)
			}
		})
	}

	t.Run("ErrNoID", func(t *testing.T) {
		j := jobs.Job{Owner: "o", OwnerEmail: "o@example.com"}
		ev := event()
		if err := s.Create(ctx, &j, &ev, time.Minute); err == nil {
			t.Error("created a job without an id")
		}
	})
	t.Run("ErrUnknownJob", func(t *testing.T) {
		if changed, err := s.SetDone(ctx, jobs.NewID(), jobs.Audio{FileID: "a"}); changed || err != nil {
			t.Errorf("done of an unknown job: %v %v", changed, err)
		}
		if _, err := s.Get(ctx, "x", jobs.NewID()); errs.CodeOf(err) != errs.NotFound {
			t.Errorf("get unknown: %v", err)
		}
		if _, err := s.ByAudio(ctx, "x", "nosuchfile"); errs.CodeOf(err) != errs.NotFound {
			t.Errorf("by audio unknown: %v", err)
		}
	})
	t.Run("ErrOtherOwner", func(t *testing.T) {
		j, _ := newJob(t, s, "alice", time.Minute)
		if _, err := s.SetDone(ctx, j.ID, jobs.Audio{FileID: "alice-mp3"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "bob", j.ID); errs.CodeOf(err) != errs.NotFound {
			t.Errorf("bob gets alice's job: %v", err)
		}
		if _, err := s.ByAudio(ctx, "bob", "alice-mp3"); errs.CodeOf(err) != errs.NotFound {
			t.Errorf("bob gets alice's MP3: %v", err)
		}
		if got, err := s.ByAudio(ctx, "alice", "alice-mp3"); err != nil || got.ID != j.ID {
			t.Errorf("alice's MP3: %v %v", got.ID, err)
		}
		if err := s.Delete(ctx, "bob", j.ID); errs.CodeOf(err) != errs.NotFound {
			t.Errorf("bob deletes alice's job: %v", err)
		}
		if err := s.Delete(ctx, "alice", j.ID); err != nil {
			t.Errorf("alice deletes her job: %v", err)
		}
		if err := s.Delete(ctx, "alice", j.ID); errs.CodeOf(err) != errs.NotFound {
			t.Errorf("delete twice: %v", err)
		}
	})
}

// TestCreateIsOneTransaction: a job whose event cannot be written is not
// written either.
func TestCreateIsOneTransaction(t *testing.T) {
	pool, s, _ := jobstest.Open(t)
	ctx := testenv.Context(t, 20*time.Second)
	j := jobs.Job{ID: jobs.NewID(), Owner: "o", OwnerEmail: "o@example.com", Video: jobs.Video{FileID: "v", Name: "v.mp4", ContentType: "video/mp4", Size: 1}}
	ev := jobs.Event{Type: "video.uploaded", Envelope: []byte("not JSON")}
	if err := s.Create(ctx, &j, &ev, time.Minute); err == nil {
		t.Fatal("an event that is not JSON was written")
	}
	if _, err := s.Get(ctx, "o", j.ID); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("the job was written without its event: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, "select count(*) from outbox").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d outbox rows (%v)", n, err)
	}
}

// TestOutbox: the claim respects the upload's lease, never hands one row to
// two claimers, skips published and dead rows; a release makes a row
// claimable again; a discard fails the job; a delete removes the job's
// unpublished events.
func TestOutbox(t *testing.T) {
	pool, s, _ := jobstest.Open(t)
	ctx := testenv.Context(t, 60*time.Second)
	claimIDs := func(limit int) map[int64]jobs.Event {
		t.Helper()
		list, err := s.Claim(ctx, limit, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		m := map[int64]jobs.Event{}
		for _, ev := range list {
			m[ev.ID] = ev
		}
		return m
	}

	leased, leasedEv := newJob(t, s, "relay", time.Minute) // its upload owns it for a minute
	free, freeEv := newJob(t, s, "relay", -time.Second)    // its claim already ran out
	got := claimIDs(100)
	if _, ok := got[leasedEv.ID]; ok {
		t.Error("claimed an event still leased to its upload")
	}
	ev, ok := got[freeEv.ID]
	if !ok || ev.JobID != free.ID || ev.Type != "video.uploaded" || ev.Attempts != 1 {
		t.Fatalf("claim = %+v; want event %d of job %s, attempt 1", got, freeEv.ID, free.ID)
	}
	var env map[string]string
	if err := json.Unmarshal(ev.Envelope, &env); err != nil || env["id"] != "x" {
		t.Errorf("envelope %s (%v)", ev.Envelope, err)
	}
	if again := claimIDs(100); len(again) != 0 {
		t.Errorf("claimed again during the claim: %v", again)
	}
	if err := s.Release(ctx, []int64{freeEv.ID}, 0); err != nil {
		t.Fatal(err)
	}
	if again := claimIDs(100); again[freeEv.ID].Attempts != 2 {
		t.Errorf("released event not claimed again: %v", again)
	}
	if err := s.MarkPublished(ctx, freeEv.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, []int64{freeEv.ID}, 0); err != nil {
		t.Fatal(err)
	}
	if again := claimIDs(100); len(again) != 0 {
		t.Errorf("a published event was claimed: %v", again)
	}

	t.Run("ConcurrentClaimsDisjoint", func(t *testing.T) {
		const n = 300
		for range n {
			newJob(t, s, "many", -time.Second)
		}
		var mu sync.Mutex
		seen := map[int64]int{}
		var wg sync.WaitGroup
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					list, err := s.Claim(ctx, 7, time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					if len(list) == 0 {
						return
					}
					mu.Lock()
					for _, ev := range list {
						seen[ev.ID]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(seen) != n {
			t.Errorf("%d of %d events claimed", len(seen), n)
		}
		for id, c := range seen {
			if c != 1 {
				t.Errorf("event %d claimed %d times", id, c)
			}
		}
	})

	t.Run("DiscardFailsTheJob", func(t *testing.T) {
		j, ev := newJob(t, s, "bad", -time.Second)
		if err := s.Discard(ctx, ev, "content_type too long", "the upload could not be queued"); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "bad", j.ID)
		if err != nil || got.Status != jobs.Failed || got.Reason != "the upload could not be queued" || got.Retryable {
			t.Fatalf("job after discard: %+v %v", got, err)
		}
		var dead bool
		var lastErr string
		if err := pool.QueryRow(ctx, "select dead_at is not null, last_error from outbox where id = $1", ev.ID).Scan(&dead, &lastErr); err != nil || !dead || lastErr != "content_type too long" {
			t.Fatalf("outbox row: dead %v %q %v", dead, lastErr, err)
		}
		if err := s.Release(ctx, []int64{ev.ID}, 0); err != nil {
			t.Fatal(err)
		}
		if again := claimIDs(100); len(again) != 0 {
			t.Errorf("a dead event was claimed: %v", again)
		}
	})

	t.Run("DeleteRemovesEvents", func(t *testing.T) {
		if err := s.Delete(ctx, "relay", leased.ID); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := pool.QueryRow(ctx, "select count(*) from outbox where job_id = $1", leased.ID.Hex()).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%d events of a deleted job (%v)", n, err)
		}
	})

	t.Run("Prune", func(t *testing.T) {
		if _, err := pool.Exec(ctx, "update outbox set published_at = now() - interval '2 days' where id = $1", freeEv.ID); err != nil {
			t.Fatal(err)
		}
		n, err := s.Prune(ctx, 24*time.Hour)
		if err != nil || n != 1 {
			t.Fatalf("pruned %d (%v); want the one published two days ago", n, err)
		}
	})
}

// TestList: newest first by (created_at, id), ties broken by id, keyset
// pages that neither skip nor repeat, the status filter, and an owner's
// list holding only theirs.
func TestList(t *testing.T) {
	pool, s, _ := jobstest.Open(t)
	ctx := testenv.Context(t, 60*time.Second)
	end := time.Now().UTC().Truncate(time.Microsecond)
	list := jobstest.Jobs([]string{"alice", "bob"}, 25, end)
	// Five of alice's jobs share one creation time: the id decides.
	for i := range 5 {
		list[i].CreatedAt = end.Add(-time.Hour)
	}
	for i := 10; i < 15; i++ {
		list[i].Status, list[i].Audio, list[i].Progress = jobs.Failed, nil, 0
	}
	if _, err := jobstest.Seed(ctx, pool, list); err != nil {
		t.Fatal(err)
	}
	var want []jobs.Job
	for _, j := range list {
		if j.Owner == "alice" {
			want = append(want, j)
		}
	}
	sortNewest(want)

	for _, limit := range []int{1, 3, 7, 25, 100} {
		t.Run(fmt.Sprintf("Pages%d", limit), func(t *testing.T) {
			var got []jobs.Job
			var after jobs.Cursor
			for range 100 {
				page, err := s.List(ctx, "alice", jobs.ListOptions{After: after, Limit: limit})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, page...)
				if len(page) < limit {
					break
				}
				// The cursor survives its text form.
				c, err := jobs.ParseCursor(jobs.CursorOf(page[len(page)-1]).String())
				if err != nil {
					t.Fatal(err)
				}
				after = c
			}
			if ids(got) != ids(want) {
				t.Fatalf("pages of %d:\n got %s\nwant %s", limit, ids(got), ids(want))
			}
		})
	}
	t.Run("Status", func(t *testing.T) {
		got, err := s.List(ctx, "alice", jobs.ListOptions{Status: jobs.Failed, Limit: 100})
		if err != nil || len(got) != 5 {
			t.Fatalf("failed jobs: %d %v", len(got), err)
		}
		for _, j := range got {
			if j.Status != jobs.Failed || j.Owner != "alice" {
				t.Errorf("job %+v", j)
			}
		}
		page, err := s.List(ctx, "alice", jobs.ListOptions{Status: jobs.Failed, Limit: 2})
		if err != nil || len(page) != 2 {
			t.Fatal(err)
		}
		rest, err := s.List(ctx, "alice", jobs.ListOptions{Status: jobs.Failed, Limit: 100, After: jobs.CursorOf(page[1])})
		if err != nil || ids(append(page, rest...)) != ids(got) {
			t.Fatalf("status pages %s + %s; want %s (%v)", ids(page), ids(rest), ids(got), err)
		}
	})
	t.Run("Empty", func(t *testing.T) {
		got, err := s.List(ctx, "carol", jobs.ListOptions{Limit: 10})
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("carol's list %v %v; want empty, not nil", got, err)
		}
	})
}

func sortNewest(list []jobs.Job) {
	for i := 1; i < len(list); i++ {
		for k := i; k > 0 && newer(list[k], list[k-1]); k-- {
			list[k], list[k-1] = list[k-1], list[k]
		}
	}
}

func newer(a, b jobs.Job) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.After(b.CreatedAt)
	}
	return a.ID.Hex() > b.ID.Hex()
}

func ids(list []jobs.Job) string {
	s := make([]string, len(list))
	for i, j := range list {
		s[i] = j.ID.Hex()[18:]
	}
	return strings.Join(s, ",")
}

// TestConcurrentEventsNoLostUpdate: many writers apply a shuffled burst of
// one job's events (progress 10..90 twice, ready twice, failed) at once
// while a reader watches: the job ends done at 100 % with its MP3, and no
// read ever sees its progress or status go back.
func TestConcurrentEventsNoLostUpdate(t *testing.T) {
	_, s, _ := jobstest.Open(t)
	ctx := testenv.Context(t, 60*time.Second)
	rank := map[jobs.Status]int{jobs.Queued: 0, jobs.Converting: 1, jobs.Failed: 2, jobs.Done: 3}
	for round := range 10 {
		j, _ := newJob(t, s, "burst", time.Minute)
		var ops []func() error
		for p := 10; p <= 90; p += 10 {
			for range 2 {
				ops = append(ops, func() error { _, err := s.SetProgress(ctx, j.ID, p); return err })
			}
		}
		for range 2 {
			ops = append(ops, func() error {
				_, err := s.SetDone(ctx, j.ID, jobs.Audio{FileID: "mp3-" + j.ID.Hex(), Size: 9, DurationSeconds: 3})
				return err
			})
		}
		ops = append(ops, func() error { _, err := s.SetFailed(ctx, j.ID, "late", true); return err })
		rand.Shuffle(len(ops), func(a, b int) { ops[a], ops[b] = ops[b], ops[a] })

		stop := make(chan struct{})
		readErr := make(chan error, 1)
		go func() {
			last := jobs.Job{Status: jobs.Queued}
			for {
				select {
				case <-stop:
					readErr <- nil
					return
				default:
				}
				got, err := s.Get(ctx, "burst", j.ID)
				if err != nil {
					readErr <- err
					return
				}
				if got.Progress < last.Progress || rank[got.Status] < rank[last.Status] {
					readErr <- fmt.Errorf("went back: %s %d%% after %s %d%%", got.Status, got.Progress, last.Status, last.Progress)
					return
				}
				last = got
			}
		}()
		var wg sync.WaitGroup
		for _, op := range ops {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := op(); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		close(stop)
		if err := <-readErr; err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		got, err := s.Get(ctx, "burst", j.ID)
		if err != nil || got.Status != jobs.Done || got.Progress != 100 || got.Audio == nil || got.Reason != "" {
			t.Fatalf("round %d: final %+v %v; want done 100%% with audio", round, got, err)
		}
	}
}

// TestQueriesUseIndexes runs every query of the store, as the store sends
// it, under EXPLAIN on a table of 20,000 jobs: each is an index scan on the
// index made for it, never a sequential scan.
func TestQueriesUseIndexes(t *testing.T) {
	_, _, url := jobstest.Open(t)
	ctx := testenv.Context(t, 120*time.Second)
	rec := &recorder{}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = rec
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := jobs.NewStore(pool)
	owners := make([]string, 200)
	for i := range owners {
		owners[i] = fmt.Sprintf("user-%03d", i)
	}
	seed := jobstest.Jobs(owners, 100, time.Now())
	if _, err := jobstest.Seed(ctx, pool, seed); err != nil {
		t.Fatal(err)
	}
	// Most events published long ago, as in a running stack.
	if _, err := pool.Exec(ctx, `insert into outbox (job_id, type, envelope, claimed_until, published_at)
		select id, 'video.uploaded', '{}', created_at, created_at from jobs`); err != nil {
		t.Fatal(err)
	}
	j, ev := newJob(t, s, "user-001", -time.Second)
	if _, err := pool.Exec(ctx, "analyze"); err != nil {
		t.Fatal(err)
	}

	target := seed[150]
	rec.reset()
	calls := []struct {
		name, index string
		call        func() error
	}{
		{"Get", "jobs_pkey", func() error { _, err := s.Get(ctx, target.Owner, target.ID); return err }},
		{"ByAudio", "jobs_owner_audio", func() error { _, err := s.ByAudio(ctx, target.Owner, target.Audio.FileID); return err }},
		{"ListFirst", "jobs_owner_created", func() error { _, err := s.List(ctx, target.Owner, jobs.ListOptions{Limit: 21}); return err }},
		{"ListAfter", "jobs_owner_created", func() error {
			_, err := s.List(ctx, target.Owner, jobs.ListOptions{Limit: 21, After: jobs.CursorOf(target)})
			return err
		}},
		{"ListStatus", "jobs_owner_status_created", func() error {
			_, err := s.List(ctx, target.Owner, jobs.ListOptions{Limit: 21, Status: jobs.Failed, After: jobs.CursorOf(target)})
			return err
		}},
		{"SetProgress", "jobs_pkey", func() error { _, err := s.SetProgress(ctx, j.ID, 5); return err }},
		{"SetDone", "jobs_pkey", func() error { _, err := s.SetDone(ctx, target.ID, jobs.Audio{FileID: "x"}); return err }},
		{"SetFailed", "jobs_pkey", func() error { _, err := s.SetFailed(ctx, target.ID, "r", false); return err }},
		{"Claim", "outbox_pending", func() error { _, err := s.Claim(ctx, 100, time.Minute); return err }},
		{"MarkPublished", "outbox_pkey", func() error { return s.MarkPublished(ctx, ev.ID) }},
		{"Release", "outbox_pkey", func() error { return s.Release(ctx, []int64{ev.ID}, 0) }},
		{"Prune", "outbox_published", func() error { _, err := s.Prune(ctx, 24*time.Hour); return err }},
		{"Delete", "jobs_pkey", func() error { return s.Delete(ctx, target.Owner, target.ID) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			rec.reset()
			if err := c.call(); err != nil {
				t.Fatal(err)
			}
			q, ok := rec.last()
			if !ok {
				t.Fatal("no query recorded")
			}
			plan := explain(t, ctx, pool, q)
			if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, c.index) {
				t.Errorf("plan of %s does not use %s alone:\n%s\n%s", c.name, c.index, q.sql, plan)
			}
		})
	}
}

type query struct {
	sql  string
	args []any
}

// recorder is a pgx tracer that keeps the queries the store sends.
type recorder struct {
	mu      sync.Mutex
	queries []query
}

func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !strings.HasPrefix(strings.TrimSpace(d.SQL), "explain") {
		r.queries = append(r.queries, query{d.SQL, d.Args})
	}
	return ctx
}

func (r *recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = nil
}

// last is the last query recorded, the transaction's begin and commit aside.
func (r *recorder) last() (query, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.queries) - 1; i >= 0; i-- {
		switch strings.ToLower(strings.TrimSpace(r.queries[i].sql)) {
		case "begin", "commit", "rollback":
			continue
		}
		return r.queries[i], true
	}
	return query{}, false
}

// explain returns q's plan (as text), planned with its arguments in a
// transaction rolled back.
func explain(t *testing.T, ctx context.Context, pool *pgxpool.Pool, q query) string {
	t.Helper()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := tx.Query(ctx, "explain "+q.sql, q.args...)
	if err != nil {
		t.Fatalf("explain %s: %v", q.sql, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestCursor: the text form round-trips; anything else is invalid.
func TestCursor(t *testing.T) {
	c := jobs.Cursor{CreatedAt: time.Date(2026, 12, 1, 10, 0, 0, 123456000, time.UTC), ID: jobs.NewID()}
	got, err := jobs.ParseCursor(c.String())
	if err != nil || !got.CreatedAt.Equal(c.CreatedAt) || got.ID != c.ID {
		t.Fatalf("round trip %v → %q → %v %v", c, c.String(), got, err)
	}
	for _, bad := range []string{"", "nope", "!!!!", c.String() + "A", c.String()[:10], "AAAAAAAAAAAAAAAAAAAAAAAAAAA",
		c.String() + "=", c.String()[:26] + "+", jobs.NewID().Hex()} {
		if _, err := jobs.ParseCursor(bad); errs.CodeOf(err) != errs.Invalid {
			t.Errorf("ParseCursor(%q) = %v; want invalid", bad, err)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add(jobs.Cursor{CreatedAt: time.Now(), ID: jobs.NewID()}.String())
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := jobs.ParseCursor(s)
		if err != nil {
			if errs.CodeOf(err) != errs.Invalid {
				t.Fatalf("ParseCursor(%q): %v, not invalid", s, err)
			}
			return
		}
		if back, err := jobs.ParseCursor(c.String()); err != nil || back != c {
			t.Fatalf("ParseCursor(%q) = %v; its String %q parses to %v %v", s, c, c.String(), back, err)
		}
	})
}

func TestParseIDAndStatus(t *testing.T) {
	for _, id := range []string{"", "xyz", "6b043cbc30d0377afdaeb2a", "6b043cbc30d0377afdaeb2aZ", "6b043cbc30d0377afdaeb2aa0"} {
		if _, err := jobs.ParseID(id); errs.CodeOf(err) != errs.Invalid {
			t.Errorf("ParseID(%q) = %v", id, err)
		}
	}
	id := jobs.NewID()
	if got, err := jobs.ParseID(id.Hex()); err != nil || got != id || len(id.Hex()) != 24 {
		t.Errorf("ParseID(%s) = %v %v", id.Hex(), got, err)
	}
	for _, s := range []string{"queued", "converting", "done", "failed"} {
		if st, err := jobs.ParseStatus(s); err != nil || string(st) != s {
			t.Errorf("ParseStatus(%q) = %v %v", s, st, err)
		}
	}
	for _, s := range []string{"", "Done", "running", "done,failed", "queued "} {
		if _, err := jobs.ParseStatus(s); errs.CodeOf(err) != errs.Invalid {
			t.Errorf("ParseStatus(%q) = %v; want invalid", s, err)
		}
	}
}
