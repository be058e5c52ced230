package uploads_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/gateway/internal/gatewaytest"
	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/jobs/jobstest"
	"github.com/audiomill/audiomill/gateway/internal/pipeline"
	"github.com/audiomill/audiomill/gateway/internal/storage"
	"github.com/audiomill/audiomill/gateway/internal/uploads"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/logging"
	"github.com/audiomill/audiomill/platform/testenv"
)

var bins gatewaytest.Binaries

func TestMain(m *testing.M) {
	os.Exit(testenv.MainInTempDir(m, "uploadstest-bin-", func(dir string) error {
		bins.Dir = dir
		return nil
	}))
}

// env is one test's uploads.Service on the real things: filestorage and
// auth (processes), a database of its own, a RabbitMQ virtual host of its
// own with a queue of video.uploaded.
type env struct {
	deps     *gatewaytest.Deps
	dbURL    string
	store    *jobs.Store // the service's
	direct   *jobs.Store // on the same database, never through a proxy
	pipe     *pipeline.Pipeline
	conn     *broker.Conn // the service's
	uploads  *uploads.Service
	files    *client.Client // as the converter (storage:admin), to look at the videos
	logs     *testenv.LogBuffer
	uploaded chan broker.Delivery
}

// newEnv starts the env; through, when set, gives the URL the service
// reaches the env's database at (a proxy's).
func newEnv(t *testing.T, through func(dbURL string) string) *env {
	t.Helper()
	e := &env{deps: gatewaytest.StartDeps(t, &bins), logs: &testenv.LogBuffer{}}
	logger, _ := logging.New(e.logs, "info", "test")

	e.dbURL = testenv.NewDatabase(t)
	serviceDB := e.dbURL
	if through != nil {
		serviceDB = through(e.dbURL)
	}
	e.direct = jobs.NewStore(jobstest.Connect(t, e.dbURL))
	e.store = jobs.NewStore(jobstest.Connect(t, serviceDB))
	e.conn = dial(t, e.deps.AMQPURL)
	e.pipe = pipeline.New(pipeline.Options{Jobs: e.store, Conn: e.conn, Logger: logger,
		RelayInterval: time.Hour, RelayAfter: 2 * time.Second})

	gatewayTokens, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: "gateway",
		ClientSecret: gatewaytest.ClientSecret, BaseURL: e.deps.AuthURL})
	if err != nil {
		t.Fatal(err)
	}
	fc, err := client.Config{URL: e.deps.FilesURL}.New(nil, gatewayTokens)
	if err != nil {
		t.Fatal(err)
	}
	e.uploads = uploads.New(uploads.Options{Storage: storage.New(fc), Pipeline: e.pipe, Logger: logger})

	converterTokens, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: "converter",
		ClientSecret: gatewaytest.ConverterSecret, BaseURL: e.deps.AuthURL})
	if err != nil {
		t.Fatal(err)
	}
	if e.files, err = client.New(client.Options{BaseURL: e.deps.FilesURL, Token: converterTokens.Token}); err != nil {
		t.Fatal(err)
	}

	// The converter's side: a queue of the test's own bound to video.uploaded.
	queue := "uploadstest-" + fmt.Sprint(time.Now().UnixNano()) + ".video-uploaded"
	e.uploaded = make(chan broker.Delivery, 16)
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = broker.Consume(cctx, dial(t, e.deps.AMQPURL), broker.QueueSpec{Name: queue, Bindings: []string{events.TypeVideoUploaded}},
			func(_ context.Context, d broker.Delivery) error { e.uploaded <- d; return nil })
	}()
	t.Cleanup(func() { cancel(); <-done })
	testenv.Eventually(t, 10*time.Second, func() bool {
		return testenv.WithAMQPChannel(e.deps.AMQPURL, func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
			return err
		}) == nil
	}, "queue %s never declared", queue)
	return e
}

// dial connects to the broker until the test ends.
func dial(t *testing.T, amqpURL string) *broker.Conn {
	t.Helper()
	logger, _ := logging.New(io.Discard, "error", "test")
	conn, err := broker.Dial(testenv.Context(t, 30*time.Second), amqpURL, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// source is an uploads.Source: one video, and the errors a request may
// give.
type source struct {
	video    uploads.Video
	videoErr error
	bodyErr  error
	restErr  error
	calls    []string
}

func (s *source) Video() (uploads.Video, error) {
	s.calls = append(s.calls, "Video")
	return s.video, s.videoErr
}

func (s *source) BodyErr() error {
	s.calls = append(s.calls, "BodyErr")
	return s.bodyErr
}

func (s *source) Rest() error {
	s.calls = append(s.calls, "Rest")
	return s.restErr
}

// upload is an upload of owner's with src.
func upload(owner string, src uploads.Source) uploads.Upload {
	return uploads.Upload{Owner: owner, OwnerEmail: owner + "@example.com", Locale: "fr-CA", RequestID: "req-" + owner, Source: src}
}

// owner is a fresh owner id.
func owner() string { return fmt.Sprintf("u%d", time.Now().UnixNano()) }

// videos lists the paths stored under owner's folder.
func (e *env) videos(t *testing.T, owner string) []string {
	t.Helper()
	var paths []string
	for entry, err := range e.files.List(testenv.Context(t, 10*time.Second), storage.VideoBucket, client.ListOptions{Prefix: owner + "/"}) {
		if errs.CodeOf(err) == errs.NotFound {
			return nil
		}
		if err != nil {
			t.Fatalf("list videos: %v", err)
		}
		if entry.File != nil {
			paths = append(paths, entry.File.Path)
		}
	}
	return paths
}

// nothingKept: no job of owner's, and (eventually: a partial upload may
// still be finishing) no video.
func (e *env) nothingKept(t *testing.T, owner string) {
	t.Helper()
	list, err := e.direct.List(testenv.Context(t, 10*time.Second), owner, jobs.ListOptions{Limit: 10})
	if err != nil || len(list) != 0 {
		t.Errorf("jobs of %s: %d, %v; want none", owner, len(list), err)
	}
	var left []string
	testenv.Eventually(t, 15*time.Second, func() bool { left = e.videos(t, owner); return len(left) == 0 },
		"videos left of a refused upload: %v", &left)
}

// TestAccept: the video is stored under the owner's folder, the job
// recorded (queued) and video.uploaded published and marked published.
func TestAccept(t *testing.T) {
	e := newEnv(t, nil)
	ctx := testenv.Context(t, time.Minute)
	who := owner()
	src := &source{video: uploads.Video{Name: `C:\clips\holiday.mp4`, ContentType: "video/mp4",
		Body: strings.NewReader("not really a video")}}
	j, err := e.uploads.Accept(ctx, upload(who, src))
	if err != nil {
		t.Fatal(err)
	}
	if j.ID.IsZero() || j.Status != jobs.Queued || j.Owner != who || j.OwnerEmail != who+"@example.com" || j.Locale != "fr-CA" ||
		j.RequestID != "req-"+who || j.Video.Name != "holiday.mp4" || j.Video.ContentType != "video/mp4" || j.Video.Size != 18 ||
		j.Video.FileID == "" || j.CreatedAt.IsZero() {
		t.Fatalf("job = %+v", j)
	}
	if strings.Join(src.calls, ",") != "Video,Rest" {
		t.Errorf("source calls = %v; want Video, Rest", src.calls)
	}
	stored, err := e.files.Stat(ctx, j.Video.FileID)
	if err != nil || stored.Bucket != storage.VideoBucket || stored.Path != who+"/"+j.ID.Hex() || stored.Owner != who ||
		stored.Custom["job_id"] != j.ID.Hex() || stored.ContentType != "video/mp4" {
		t.Fatalf("stored video = %+v, %v", stored, err)
	}
	got, err := e.store.Get(ctx, who, j.ID)
	if err != nil || got.Status != jobs.Queued || got.Video != j.Video {
		t.Fatalf("recorded job = %+v, %v", got, err)
	}
	select {
	case d := <-e.uploaded:
		ev, err := events.Decode[events.VideoUploaded](d.Payload)
		if err != nil || d.JobID != j.ID.Hex() || d.CorrelationID != "req-"+who || ev.VideoID != j.Video.FileID ||
			ev.OwnerID != who || ev.FileName != "holiday.mp4" || ev.Locale != "fr-CA" || ev.Size != 18 {
			t.Fatalf("video.uploaded = %+v %+v, %v", d, ev, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no video.uploaded")
	}
	// Published, and marked so: nothing is left for a relay.
	time.Sleep(2500 * time.Millisecond) // the upload's claim runs out
	if n, err := e.pipe.RelayOnce(ctx); err != nil || n != 0 {
		t.Errorf("relay after a confirmed upload published %d, %v", n, err)
	}
	if !strings.Contains(e.logs.String(), `"msg":"video accepted"`) {
		t.Errorf("no \"video accepted\" line:\n%s", e.logs.String())
	}
}

// errReader gives some bytes, then fails like a client that went away.
type errReader struct{ n int }

func (r *errReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

// TestAcceptRefused: a refused upload answers its code and keeps nothing.
func TestAcceptRefused(t *testing.T) {
	e := newEnv(t, nil)
	video := func(name, ct, body string) uploads.Video {
		return uploads.Video{Name: name, ContentType: ct, Body: strings.NewReader(body)}
	}
	tooLarge := errs.E(errs.TooLarge, "the video is larger than 100 bytes")
	for _, tc := range []struct {
		name  string
		owner string // owner() when empty
		email string // owner@example.com when empty, none when "-"
		src   *source
		code  errs.Code
		want  error // the error itself, when it is the source's
	}{
		{name: "ErrNoEmail", email: "-", src: &source{video: video("a.mp4", "video/mp4", "v")}, code: errs.Forbidden},
		{name: "ErrSourceVideo", src: &source{videoErr: errs.E(errs.Invalid, "exactly 1 file required")}, code: errs.Invalid},
		{name: "ErrFileName", src: &source{video: video("\xff\xfe", "video/mp4", "v")}, code: errs.Invalid},
		{name: "ErrContentTypeTooLong", src: &source{video: video("a.mp4", "video/"+strings.Repeat("x", 194), "v")}, code: errs.Invalid},
		{name: "ErrEmptyVideo", src: &source{video: video("a.mp4", "video/mp4", "")}, code: errs.Invalid},
		{name: "ErrRest", src: &source{video: video("a.mp4", "video/mp4", "one"), restErr: errs.E(errs.Invalid, "exactly 1 file required")},
			code: errs.Invalid},
		{name: "ErrBody", src: &source{video: uploads.Video{Name: "a.mp4", ContentType: "video/mp4", Body: &errReader{n: 70_000}},
			bodyErr: tooLarge}, code: errs.TooLarge, want: tooLarge},
		// video.uploaded could never carry the owner id (longer than
		// events.MaxIDLength; filestorage takes it): refused after the
		// video was stored, which is removed.
		{name: "ErrEventRefused", owner: strings.Repeat("o", events.MaxIDLength+1), email: "long@example.com", src: &source{video: video("a.mp4", "video/mp4", "v")}, code: errs.Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testenv.Context(t, time.Minute)
			u := upload(cmpOr(tc.owner, owner()), tc.src)
			switch tc.email {
			case "":
			case "-":
				u.OwnerEmail = ""
			default:
				u.OwnerEmail = tc.email
			}
			j, err := e.uploads.Accept(ctx, u)
			if errs.CodeOf(err) != tc.code || !j.ID.IsZero() {
				t.Fatalf("Accept = %+v, %v; want %s", j, err, tc.code)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v; want the source's %v", err, tc.want)
			}
			if tc.src.videoErr != nil && !errors.Is(err, tc.src.videoErr) {
				t.Errorf("err = %v; want the source's %v", err, tc.src.videoErr)
			}
			e.nothingKept(t, u.Owner)
		})
	}
	t.Run("ErrInterrupted", func(t *testing.T) {
		// The client goes away while the video streams in: the request's
		// context ends and its body breaks off.
		ctx, cancel := context.WithCancel(testenv.Context(t, time.Minute))
		pr, pw := io.Pipe()
		go func() {
			_, _ = pw.Write(make([]byte, 64<<10))
			cancel()
			pw.CloseWithError(io.ErrUnexpectedEOF)
		}()
		who := owner()
		_, err := e.uploads.Accept(ctx, upload(who, &source{video: uploads.Video{Name: "a.mp4", Body: pr}}))
		if errs.CodeOf(err) != errs.Invalid || !strings.Contains(errs.MessageOf(err), "interrupted") {
			t.Fatalf("err = %v; want invalid: interrupted", err)
		}
		e.nothingKept(t, who)
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestAcceptBrokerDown: an upload is accepted while RabbitMQ is away; its
// event waits in the outbox for the relay.
func TestAcceptBrokerDown(t *testing.T) {
	e := newEnv(t, nil)
	ctx := testenv.Context(t, time.Minute)
	if err := e.conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	who := owner()
	j, err := e.uploads.Accept(ctx, upload(who, &source{video: uploads.Video{Name: "a.mp4", Body: strings.NewReader("v")}}))
	if err != nil {
		t.Fatalf("upload with the broker away: %v", err)
	}
	if j.Video.ContentType != "application/octet-stream" {
		t.Errorf("content type = %q; want application/octet-stream", j.Video.ContentType)
	}
	if !strings.Contains(e.logs.String(), "video.uploaded not confirmed; the relay will publish it") {
		t.Errorf("no warning of the unconfirmed event:\n%s", e.logs.String())
	}
	// A relay with a connection publishes it once the upload's claim ran out.
	logger, _ := logging.New(io.Discard, "error", "test")
	relay := pipeline.New(pipeline.Options{Jobs: e.store, Conn: dial(t, e.deps.AMQPURL), Logger: logger,
		RelayInterval: time.Hour, RelayAfter: 2 * time.Second})
	time.Sleep(2500 * time.Millisecond)
	if n, err := relay.RelayOnce(ctx); err != nil || n != 1 {
		t.Fatalf("relay published %d, %v; want the upload's event", n, err)
	}
	select {
	case d := <-e.uploaded:
		if d.JobID != j.ID.Hex() {
			t.Fatalf("video.uploaded of job %s; want %s", d.JobID, j.ID.Hex())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no video.uploaded from the relay")
	}
}

// TestAcceptDatabaseDown: the job cannot be recorded, so the stored video
// is removed.
func TestAcceptDatabaseDown(t *testing.T) {
	var db *testenv.Proxy
	e := newEnv(t, func(dbURL string) string {
		u, err := url.Parse(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		db = testenv.StartProxy(t, u.Host)
		u.Host = db.Addr
		return u.String()
	})
	db.Cut()
	ctx := testenv.Context(t, time.Minute)
	who := owner()
	start := time.Now()
	_, err := e.uploads.Accept(ctx, upload(who, &source{video: uploads.Video{Name: "a.mp4", Body: strings.NewReader("video")}}))
	if errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("upload with the database down: %v; want unavailable", err)
	}
	t.Logf("refused after %v", time.Since(start).Round(time.Millisecond))
	e.nothingKept(t, who)
}
