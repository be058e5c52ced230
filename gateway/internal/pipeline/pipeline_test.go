package pipeline_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/gateway/internal/gatewaytest"
	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/jobs/jobstest"
	"github.com/audiomill/audiomill/gateway/internal/pipeline"
	"github.com/audiomill/audiomill/gateway/internal/storage"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/logging"
	"github.com/audiomill/audiomill/platform/testenv"
)

// replica is one gateway's pipeline: its own database pool and broker
// connection, on a database and a virtual host shared with the others.
type replica struct {
	p     *pipeline.Pipeline
	store *jobs.Store
	conn  *broker.Conn
	reg   *prometheus.Registry
}

var bins gatewaytest.Binaries

func TestMain(m *testing.M) {
	os.Exit(testenv.MainInTempDir(m, "pipelinetest-bin-", func(dir string) error {
		bins.Dir = dir
		return nil
	}))
}

// storageOf returns a filestorage client of deps as the converter (scope
// storage:admin), and the gateway's Storage on it.
func storageOf(t *testing.T, deps *gatewaytest.Deps) (*client.Client, *storage.Storage) {
	t.Helper()
	tokens, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: "converter",
		ClientSecret: gatewaytest.ConverterSecret, BaseURL: deps.AuthURL})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Options{BaseURL: deps.FilesURL, Token: tokens.Token})
	if err != nil {
		t.Fatal(err)
	}
	return c, storage.New(c)
}

func newReplica(t *testing.T, dbURL, amqpURL, queue string, files pipeline.Files) *replica {
	t.Helper()
	logger, _ := logging.New(io.Discard, "error", "test")
	conn, err := broker.Dial(testenv.Context(t, 30*time.Second), amqpURL, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	r := &replica{store: jobs.NewStore(jobstest.Connect(t, dbURL)), conn: conn, reg: prometheus.NewRegistry()}
	r.p = pipeline.New(pipeline.Options{Jobs: r.store, Conn: conn, Logger: logger, StatusQueue: queue, Files: files,
		RelayInterval: time.Hour, RelayAfter: 2 * time.Second, Registerer: r.reg})
	return r
}

// applied is how many status events the replica applied (changed or not).
func (r *replica) applied(t *testing.T) int {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() == "gateway_job_events_total" {
			for _, m := range mf.GetMetric() {
				n += int(m.GetCounter().GetValue())
			}
		}
	}
	return n
}

// consume runs the replica's status consumer until the test ends.
func (r *replica) consume(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.p.Consume(ctx); err != nil {
			t.Errorf("consume: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// TestTwoReplicasNoLostUpdate: two gateways (two pipelines, each with its
// own pool and connection, 8 handlers each) consume one queue while a
// shuffled burst of every job's events arrives out of order: progress 10
// to 90, some twice, ready twice, a late failed. Every job ends done at
// 100 % with its MP3, and no read taken during the burst ever saw a job's
// progress or status go back.
func TestTwoReplicasNoLostUpdate(t *testing.T) {
	dbURL := testenv.NewDatabase(t)
	deps := gatewaytest.StartDeps(t, &bins)
	amqpURL := deps.AMQPURL
	files, gatewayFiles := storageOf(t, deps)
	queue := "gatewaytest-" + fmt.Sprint(time.Now().UnixNano()) + ".job-status"
	a, b := newReplica(t, dbURL, amqpURL, queue, gatewayFiles), newReplica(t, dbURL, amqpURL, queue, gatewayFiles)
	ctx := testenv.Context(t, 3*time.Minute)

	const nJobs = 12
	var list []jobs.Job
	mp3s := map[jobs.ID]string{} // each job's MP3, the owner's file, as the converter stores it
	for i := range nJobs {
		j := jobs.Job{ID: jobs.NewID(), Owner: "burst", OwnerEmail: "burst@example.com", RequestID: "req",
			Video: jobs.Video{FileID: fmt.Sprintf("video-%d", i), Name: "v.mp4", ContentType: "video/mp4", Size: 1}}
		ev, err := pipeline.UploadedEvent(j)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.store.Create(ctx, &j, &ev, time.Hour); err != nil {
			t.Fatal(err)
		}
		f, err := files.Upload(ctx, "audio", "burst/"+j.ID.Hex()+".mp3", strings.NewReader("mp3 of "+j.ID.Hex()),
			client.UploadOptions{ContentType: "audio/mpeg", Owner: j.Owner})
		if err != nil {
			t.Fatal(err)
		}
		mp3s[j.ID] = f.ID
		list = append(list, j)
	}
	type msg struct {
		job jobs.Job
		p   events.Payload
	}
	var burst []msg
	for _, j := range list {
		for pct := 10; pct <= 90; pct += 10 {
			burst = append(burst, msg{j, events.AudioProgress{VideoID: j.Video.FileID, Percent: pct}})
			if rand.IntN(3) == 0 {
				burst = append(burst, msg{j, events.AudioProgress{VideoID: j.Video.FileID, Percent: pct}})
			}
		}
		ready := events.AudioReady{VideoID: j.Video.FileID, AudioID: mp3s[j.ID], OwnerID: j.Owner,
			OwnerEmail: j.OwnerEmail, FileName: "v.mp4", Size: 1000, DurationSeconds: 12.5, BitrateKbps: 128}
		burst = append(burst, msg{j, ready}, msg{j, ready}, msg{j, events.AudioFailed{VideoID: j.Video.FileID,
			OwnerID: j.Owner, OwnerEmail: j.OwnerEmail, FileName: "v.mp4", Reason: "late failure"}})
	}
	rand.Shuffle(len(burst), func(x, y int) { burst[x], burst[y] = burst[y], burst[x] })

	// Both consumers subscribe before the burst.
	a.consume(t)
	b.consume(t)
	testenv.Eventually(t, 15*time.Second, func() bool {
		return a.conn.Ping(ctx) == nil && queueDeclared(t, amqpURL, queue)
	}, "status queue never declared")
	time.Sleep(500 * time.Millisecond) // both subscribed

	// A reader watches every job through a pool of its own.
	reader := jobs.NewStore(jobstest.Connect(t, dbURL))
	rank := map[jobs.Status]int{jobs.Queued: 0, jobs.Converting: 1, jobs.Failed: 2, jobs.Done: 3}
	stop := make(chan struct{})
	var readErr error
	reads := 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		last := map[jobs.ID]jobs.Job{}
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, j := range list {
				got, err := reader.Get(ctx, j.Owner, j.ID)
				if err != nil {
					readErr = err
					return
				}
				reads++
				prev, ok := last[j.ID]
				if ok && (got.Progress < prev.Progress || rank[got.Status] < rank[prev.Status]) {
					readErr = fmt.Errorf("job %s went back: %s %d%% after %s %d%%", j.ID, got.Status, got.Progress, prev.Status, prev.Progress)
					return
				}
				last[j.ID] = got
			}
		}
	}()

	// The burst, from four publishers at once.
	var pw sync.WaitGroup
	for w := range 4 {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for i := w; i < len(burst); i += 4 {
				env, err := broker.NewEnvelope(burst[i].p.EventType(), burst[i].job.ID.Hex(), "burst", burst[i].p)
				if err == nil {
					err = a.conn.Publish(ctx, burst[i].p.EventType(), env)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	pw.Wait()
	testenv.Eventually(t, 60*time.Second, func() bool { return a.applied(t)+b.applied(t) >= len(burst) },
		"applied %d + %d of %d events", a.applied(t), b.applied(t), len(burst))
	close(stop)
	wg.Wait()
	if readErr != nil {
		t.Fatal(readErr)
	}
	if a.applied(t) == 0 || b.applied(t) == 0 {
		t.Errorf("replicas applied %d and %d events: want both to take part", a.applied(t), b.applied(t))
	}
	for _, j := range list {
		got, err := reader.Get(ctx, j.Owner, j.ID)
		if err != nil || got.Status != jobs.Done || got.Progress != 100 || got.Audio == nil ||
			got.Audio.FileID != mp3s[j.ID] || got.Audio.DurationSeconds != 12.5 || got.Reason != "" {
			t.Errorf("job %s: %+v %v; want done, 100 %%, its MP3", j.ID, got, err)
		}
	}
	t.Logf("%d events over %d jobs: replica A applied %d, B %d; %d reads during the burst",
		len(burst), nJobs, a.applied(t), b.applied(t), reads)
}

func queueDeclared(t *testing.T, amqpURL, queue string) bool {
	t.Helper()
	return testenv.WithAMQPChannel(amqpURL, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		return err
	}) == nil
}

// TestRelayDiscardsUnpublishable: 150 events that can never be published
// (a 200-byte content type, as an older gateway accepted), written before
// five good ones, do not starve the relay: one pass publishes the five and
// sets the 150 aside, failing their jobs with the reason.
func TestRelayDiscardsUnpublishable(t *testing.T) {
	dbURL := testenv.NewDatabase(t)
	amqpURL := gatewaytest.VHost(t)
	r := newReplica(t, dbURL, amqpURL, "unused.job-status", nil)
	ctx := testenv.Context(t, 2*time.Minute)

	// The converter's side: a queue bound to video.uploaded.
	got := make(chan broker.Delivery, 512)
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	queue := "gatewaytest-" + fmt.Sprint(time.Now().UnixNano()) + ".video-uploaded"
	go func() {
		defer close(done)
		_ = broker.Consume(cctx, r.conn, broker.QueueSpec{Name: queue, Bindings: []string{events.TypeVideoUploaded}},
			func(_ context.Context, d broker.Delivery) error { got <- d; return nil })
	}()
	t.Cleanup(func() { cancel(); <-done })
	testenv.Eventually(t, 10*time.Second, func() bool { return queueDeclared(t, amqpURL, queue) }, "queue never declared")

	create := func(i int, contentType string) jobs.Job {
		j := jobs.Job{ID: jobs.NewID(), Owner: "o", OwnerEmail: "o@example.com", RequestID: "req",
			Video: jobs.Video{FileID: fmt.Sprintf("video-%d", i), Name: "v.mp4", ContentType: contentType, Size: 1}}
		ev, err := pipeline.UnvalidatedUploadedEvent(j)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.store.Create(ctx, &j, &ev, -time.Second); err != nil {
			t.Fatal(err)
		}
		return j
	}
	var bad, good []jobs.Job
	for i := range 150 {
		bad = append(bad, create(i, strings.Repeat("v", 200)))
	}
	for i := range 5 {
		good = append(good, create(i, "video/mp4"))
	}
	if _, err := pipeline.UploadedEvent(bad[0]); err == nil {
		t.Fatal("UploadedEvent accepted a 200-byte content type")
	}

	n, err := r.p.RelayOnce(ctx)
	if err != nil || n != len(good) {
		t.Fatalf("relay pass published %d (%v); want %d", n, err, len(good))
	}
	seen := map[string]bool{}
	for len(seen) < len(good) {
		select {
		case d := <-got:
			seen[d.JobID] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("received %d of %d good events", len(seen), len(good))
		}
	}
	for _, j := range good {
		if !seen[j.ID.Hex()] {
			t.Errorf("good job %s not published", j.ID)
		}
	}
	for _, j := range bad {
		if seen[j.ID.Hex()] {
			t.Errorf("unpublishable job %s was published", j.ID)
		}
		st, err := r.store.Get(ctx, j.Owner, j.ID)
		if err != nil || st.Status != jobs.Failed || st.Retryable ||
			!strings.Contains(st.Reason, "content_type is longer than 128 bytes") {
			t.Fatalf("job %s: %s %q %v", j.ID, st.Status, st.Reason, err)
		}
	}
	if n, err := r.p.RelayOnce(ctx); err != nil || n != 0 {
		t.Errorf("second pass published %d (%v); want nothing left", n, err)
	}
}
