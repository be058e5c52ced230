package convert_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/converter/internal/convert"
	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

// binaries are the services the tests run as processes, built once.
var binaries = map[string]string{}

// fixtureDir holds fixtures shared by the tests; TestMain removes it.
var fixtureDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "converter-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, svc := range []string{"auth", "filestorage", "converter"} {
		bin, err := testenv.BuildService(dir, svc)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		binaries[svc] = bin
	}
	fixtureDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// env is one test's world: a real auth and filestorage (processes), RabbitMQ,
// a queue and routing key of the test's own, and an observer of audio.* events.
type env struct {
	t          testing.TB
	id         string
	amqpURL    string
	authURL    string
	storageURL string
	clientID   string
	secret     string
	files      *client.Client
	conn       *broker.Conn
	queue      string
	binding    string
	storage    *testenv.Process

	mu     sync.Mutex
	events []broker.Envelope
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func startService(t testing.TB, name string, vars ...string) *testenv.Process {
	t.Helper()
	cmd := exec.Command(binaries[name])
	cmd.Env = append(os.Environ(), "PORT=0", "LOG_LEVEL=info", "SHUTDOWN_DELAY=0s",
		"CONSUL_HTTP_ADDR="+testenv.ConsulAddr(t), "SERVICE_TAGS=convert-test",
		"SERVICE_ID="+name+"-convert-test-"+randomHex(t, 4))
	cmd.Env = append(cmd.Env, vars...)
	p := testenv.StartProcess(t, cmd)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.Output(), 6000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func newEnv(t testing.TB) *env { return newEnvWith(t, "disk") }

// newEnvWith is newEnv with filestorage on backend ("disk" or "gridfs").
func newEnvWith(t testing.TB, backend string) *env {
	t.Helper()
	e := &env{t: t, id: randomHex(t, 5), amqpURL: testenv.AMQPURL(t)}
	mongoURI, redisAddr := testenv.MongoURI(t), testenv.RedisAddr(t)
	e.clientID, e.secret = "converter-"+e.id, randomHex(t, 16)
	filesDB := "ctest_files_" + e.id
	t.Cleanup(func() { dropDatabases(mongoURI, filesDB) })

	auth := startService(t, "auth", "DATABASE_URL="+testenv.NewDatabase(t), "REDIS_ADDR="+redisAddr,
		"BCRYPT_COST=10", "SERVICE_CLIENTS="+e.clientID+":"+e.secret+":storage:admin")
	e.authURL = "http://" + auth.Addr
	e.storage = startService(t, "filestorage", "MONGO_URI="+mongoURI, "MONGO_DATABASE="+filesDB, "REDIS_ADDR="+redisAddr,
		"AUTH_JWKS_URL="+e.authURL+"/.well-known/jwks.json", "FILESTORAGE_BACKEND="+backend, "FILESTORAGE_DIR="+t.TempDir())
	e.storageURL = "http://" + e.storage.Addr

	tokens, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: e.clientID, ClientSecret: e.secret, BaseURL: e.authURL})
	if err != nil {
		t.Fatal(err)
	}
	if e.files, err = client.New(client.Options{BaseURL: e.storageURL, Token: tokens.Token}); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if e.conn, err = broker.Dial(testenv.Context(t, 10*time.Second), e.amqpURL, logger); err != nil {
		t.Fatalf("RabbitMQ (AMQP_URL): %v", err)
	}
	t.Cleanup(func() { _ = e.conn.Close(context.Background()) })
	e.queue, e.binding = "converter.test-"+e.id, "test."+e.id+".video.uploaded"
	if err := e.conn.DeclareQueue(testenv.Context(t, 10*time.Second), broker.QueueSpec{Name: e.queue, Bindings: []string{e.binding}}); err != nil {
		t.Fatal(err)
	}
	e.observe()
	t.Cleanup(e.deleteQueues)
	return e
}

func dropDatabases(uri string, names ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return
	}
	defer func() { _ = c.Disconnect(ctx) }()
	for _, n := range names {
		_ = c.Database(n).Drop(ctx)
	}
}

// channel opens a raw AMQP channel for the test.
func (e *env) channel() *amqp.Channel {
	e.t.Helper()
	conn, err := amqp.Dial(e.amqpURL)
	if err != nil {
		e.t.Fatalf("RabbitMQ (AMQP_URL): %v", err)
	}
	e.t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		e.t.Fatal(err)
	}
	return ch
}

// observe collects every audio.* event of this test's jobs.
func (e *env) observe() {
	ch := e.channel()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, key := range []string{events.TypeAudioReady, events.TypeAudioFailed, events.TypeAudioProgress} {
		if err := ch.QueueBind(q.Name, key, broker.Exchange, false, nil); err != nil {
			e.t.Fatal(err)
		}
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	go func() {
		for d := range deliveries {
			env, err := broker.DecodeEnvelope(d.Body)
			if err != nil || !strings.HasPrefix(env.JobID, e.id) {
				continue
			}
			e.mu.Lock()
			e.events = append(e.events, env)
			e.mu.Unlock()
		}
	}()
}

func (e *env) deleteQueues() {
	_ = testenv.WithAMQPChannel(e.amqpURL, func(ch *amqp.Channel) error {
		for _, q := range []string{e.queue, e.queue + broker.RetrySuffix, e.queue + broker.DeadSuffix} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		return nil
	})
}

// eventsOf returns the events seen so far for job, of typ ("" for all).
func (e *env) eventsOf(job, typ string) []broker.Envelope {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []broker.Envelope
	for _, ev := range e.events {
		if ev.JobID == job && (typ == "" || ev.Type == typ) {
			out = append(out, ev)
		}
	}
	return out
}

// outcome waits for job's audio.ready or audio.failed.
func (e *env) outcome(job string, timeout time.Duration) broker.Envelope {
	e.t.Helper()
	var got broker.Envelope
	testenv.Eventually(e.t, timeout, func() bool {
		for _, ev := range e.eventsOf(job, "") {
			if ev.Type != events.TypeAudioProgress {
				got = ev
				return true
			}
		}
		return false
	}, "no audio.ready or audio.failed for job %s", job)
	return got
}

// job is a test job id (prefixed so the observer keeps its events).
func (e *env) job(name string) string { return e.id + "-" + name }

// upload stores the file at path in the videos bucket and returns its id.
func (e *env) upload(path string) string {
	e.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	stored, err := e.files.Upload(testenv.Context(e.t, time.Minute), "videos", "user-"+e.id+"/"+filepath.Base(path)+"-"+randomHex(e.t, 3),
		f, client.UploadOptions{ContentType: "video/mp4", Size: st.Size()})
	if err != nil {
		e.t.Fatalf("upload %s: %v", path, err)
	}
	return stored.ID
}

// videoUploaded is a valid payload for the stored video id.
func (e *env) videoUploaded(videoID string) events.VideoUploaded {
	return events.VideoUploaded{VideoID: videoID, OwnerID: "user-" + e.id, OwnerEmail: "user-" + e.id + "@example.com",
		FileName: "clip.mp4", ContentType: "video/mp4", Size: 1}
}

// publish sends video.uploaded for job to the test's queue.
func (e *env) publish(job string, p events.VideoUploaded) {
	e.t.Helper()
	env, err := broker.NewEnvelope(events.TypeVideoUploaded, job, "req-"+job, p)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.conn.Publish(testenv.Context(e.t, 10*time.Second), e.binding, env); err != nil {
		e.t.Fatal(err)
	}
}

// publishRaw sends body as is to the test's queue.
func (e *env) publishRaw(body string) {
	e.t.Helper()
	ch := e.channel()
	if err := ch.PublishWithContext(testenv.Context(e.t, 10*time.Second), broker.Exchange, e.binding, true, false,
		amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: []byte(body)}); err != nil {
		e.t.Fatal(err)
	}
}

// dead returns the bodies in the test queue's dead-letter queue, with their
// reasons. It leaves them there: closing the channel requeues them.
func (e *env) dead() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	err := testenv.WithAMQPChannel(e.amqpURL, func(ch *amqp.Channel) error {
		for {
			d, ok, err := ch.Get(e.queue+broker.DeadSuffix, false)
			if err != nil || !ok {
				return err
			}
			reason, _ := d.Headers[broker.ReasonHeader].(string)
			out[string(d.Body)] = reason
		}
	})
	if err != nil {
		e.t.Fatalf("dead letters: %v", err)
	}
	return out
}

// config is a converter Config for this env.
func (e *env) config() convert.Config {
	q, _ := ffmpeg.ParseQuality(ffmpeg.DefaultQuality)
	return convert.Config{
		Queue: e.queue, Binding: e.binding, Concurrency: 2, Prefetch: 2,
		RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 200 * time.Millisecond, MaxAttempts: 3,
		Quality: q, MaxTime: 5 * time.Minute, GracePeriod: 5 * time.Second, TempDir: e.t.TempDir(),
		AudioBucket: "audio", Filestorage: client.Config{URL: e.storageURL}, AuthURL: e.authURL,
		ClientID: e.clientID, ClientSecret: e.secret,
	}
}

// runConverter runs a converter in this process until the test ends.
func (e *env) runConverter(cfg convert.Config) *convert.Converter {
	e.t.Helper()
	files := e.files
	if cfg.Filestorage.URL != e.storageURL {
		var err error
		files, err = client.New(client.Options{BaseURL: cfg.Filestorage.URL, Token: client.StaticToken("unused")})
		if err != nil {
			e.t.Fatal(err)
		}
	}
	c, err := convert.New(cfg, convert.Options{Tools: ffmpeg.Tools{FFmpeg: "ffmpeg", FFprobe: "ffprobe"},
		Files: files, Events: e.conn, Logger: slog.New(slog.NewJSONHandler(testWriter{e.t}, nil))})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx, e.conn) }()
	e.t.Cleanup(func() { cancel(); <-done })
	return c
}

// startConverter runs the converter binary on this env.
func (e *env) startConverter(vars ...string) *testenv.Process {
	e.t.Helper()
	all := []string{"AMQP_URL=" + e.amqpURL, "CONVERTER_QUEUE=" + e.queue, "CONVERTER_BINDING=" + e.binding,
		"FILESTORAGE_URL=" + e.storageURL, "AUTH_URL=" + e.authURL,
		"SERVICE_CLIENT_ID=" + e.clientID, "SERVICE_CLIENT_SECRET=" + e.secret,
		"CONVERTER_TEMP_DIR=" + e.t.TempDir(), "CONVERTER_RETRY_DELAY=200ms", "CONVERTER_MAX_RETRY_DELAY=1s"}
	return startService(e.t, "converter", append(all, vars...)...)
}

// mp3s lists the MP3s stored for this env's user.
func (e *env) mp3s() []client.Entry {
	e.t.Helper()
	var out []client.Entry
	for entry, err := range e.files.List(testenv.Context(e.t, 30*time.Second), "audio", client.ListOptions{Prefix: "user-" + e.id + "/"}) {
		if err != nil {
			e.t.Fatalf("list audio: %v", err)
		}
		out = append(out, entry)
	}
	return out
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Fixtures, generated with ffmpeg (nothing big is committed).
var (
	testVideo = []string{"-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"}
	testTone  = []string{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"}
)

func generate(t testing.TB, name string, args ...[]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	full := []string{"-nostdin", "-hide_banner", "-loglevel", "error", "-y"}
	for _, a := range args {
		full = append(full, a...)
	}
	full = append(full, p)
	if out, err := exec.Command("ffmpeg", full...).CombinedOutput(); err != nil {
		t.Fatalf("generate %s (ffmpeg is required): %v\n%s", name, err, out)
	}
	return p
}
