// Package convertertest runs what the converter's tests need around it:
// a real auth and filestorage (processes built from this checkout),
// RabbitMQ with a queue and routing key of the test's own, an observer of
// the audio.* events, and the converter itself, in-process or as its
// binary.
//
// It follows the rule of every service's test harness: the package
// internal/<service>test of the service (see auth's internal/authtest).
package convertertest

import (
	"bytes"
	"context"
	"encoding/binary"
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

	"github.com/audiomill/audiomill/converter/internal/convert"
	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

// Binaries are auth, filestorage and converter built from this checkout
// into Dir, once, for the tests that run them as processes.
type Binaries struct {
	// Dir receives the binaries; the tests' shared fixtures go there too.
	Dir   string
	once  sync.Once
	paths map[string]string
	err   error
}

// Build builds the binaries (once).
func (b *Binaries) Build() error {
	b.once.Do(func() {
		b.paths = map[string]string{}
		for _, svc := range []string{"auth", "filestorage", "converter"} {
			bin, err := testenv.BuildService(b.Dir, svc)
			if err != nil {
				b.err = err
				return
			}
			b.paths[svc] = bin
		}
	})
	return b.err
}

// Path returns the built binary of service ("auth", "filestorage" or "converter").
func (b *Binaries) Path(service string) string { return b.paths[service] }

// Env is one test's world: a real auth and filestorage (processes),
// RabbitMQ, a queue and routing key of the test's own, and an observer of
// audio.* events.
type Env struct {
	T  testing.TB
	ID string
	// AMQPURL is the broker (AMQP_URL).
	AMQPURL string
	// AuthURL and StorageURL are the base URLs of auth and filestorage.
	AuthURL, StorageURL string
	// ClientID and Secret are the converter's service account at auth.
	ClientID, Secret string
	// Files is filestorage's client, with the converter's token (its
	// scopes are the stack's, from scripts/service-accounts).
	Files *client.Client
	// Videos is filestorage's client with the token of a gateway's
	// account (the stack's gateway scopes): it stores the videos.
	Videos *client.Client
	// GatewayID and GatewaySecret are that account at auth.
	GatewayID, GatewaySecret string
	// Conn is the test's broker connection.
	Conn *broker.Conn
	// Queue and Binding are the test's queue and routing key.
	Queue, Binding string
	// Storage is the filestorage process.
	Storage *testenv.Process
	// Tools are the ffmpeg and ffprobe the in-process converters run, and
	// their limits (the defaults unless a test sets others).
	Tools ffmpeg.Tools
	bins  *Binaries

	mu     sync.Mutex
	events []broker.Envelope
}

// Start runs the binary of service (built by Build) with vars added to
// the test environment, and shows the end of its output when tb failed.
func (b *Binaries) Start(tb testing.TB, service string, vars ...string) *testenv.Process {
	tb.Helper()
	cmd := exec.Command(b.Path(service))
	cmd.Env = append(os.Environ(), "PORT=0", "LOG_LEVEL=info", "SHUTDOWN_DELAY=0s",
		"CONSUL_HTTP_ADDR="+testenv.ConsulAddr(tb), "CONSUL_HTTP_TOKEN="+testenv.ConsulToken(tb),
		"SERVICE_TAGS=convert-test",
		"SERVICE_ID="+service+"-convert-test-"+testenv.RandomHex(tb, 4))
	cmd.Env = append(cmd.Env, vars...)
	p := testenv.StartProcess(tb, cmd)
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("%s output:\n%s", service, Tail(p.Output(), 6000))
		}
	})
	return p
}

// Tail returns the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// NewEnv starts an Env with filestorage on its disk backend, the services
// run from bins (built here when they are not yet).
func NewEnv(t testing.TB, bins *Binaries) *Env { return NewEnvWith(t, bins, "disk") }

// NewEnvWith is NewEnv with filestorage on backend ("disk" or "gridfs").
func NewEnvWith(t testing.TB, bins *Binaries, backend string) *Env {
	t.Helper()
	if err := bins.Build(); err != nil {
		t.Fatal(err)
	}
	e := &Env{T: t, ID: testenv.RandomHex(t, 5), AMQPURL: testenv.AMQPURL(t), bins: bins,
		Tools: ffmpeg.Tools{FFmpeg: "ffmpeg", FFprobe: "ffprobe"}}
	mongoURI, redisAddr := testenv.MongoURI(t), testenv.RedisAddr(t)
	e.ClientID, e.Secret = "converter-"+e.ID, testenv.RandomHex(t, 16)
	e.GatewayID, e.GatewaySecret = "gateway-"+e.ID, testenv.RandomHex(t, 16)
	filesDB := "ctest_files_" + e.ID
	t.Cleanup(func() { testenv.DropMongoDatabases(mongoURI, filesDB) })

	auth := bins.Start(t, "auth", "DATABASE_URL="+testenv.NewDatabase(t), "REDIS_ADDR="+redisAddr,
		"BCRYPT_COST=10", "SERVICE_CLIENTS="+e.ClientID+":"+e.Secret+":"+testenv.ServiceAccountScope(t, "converter")+
			","+e.GatewayID+":"+e.GatewaySecret+":"+testenv.ServiceAccountScope(t, "gateway"),
		"AUTH_KEK="+testenv.AuthKEK(t))
	e.AuthURL = "http://" + auth.Addr
	e.Storage = bins.Start(t, "filestorage", "MONGO_URI="+mongoURI, "MONGO_DATABASE="+filesDB, "REDIS_ADDR="+redisAddr,
		"AUTH_JWKS_URL="+e.AuthURL+"/.well-known/jwks.json", "FILESTORAGE_BACKEND="+backend, "FILESTORAGE_DIR="+t.TempDir())
	e.StorageURL = "http://" + e.Storage.Addr

	tokens, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: e.ClientID, ClientSecret: e.Secret, BaseURL: e.AuthURL})
	if err != nil {
		t.Fatal(err)
	}
	if e.Files, err = client.New(client.Options{BaseURL: e.StorageURL, Token: tokens.Token}); err != nil {
		t.Fatal(err)
	}
	gwTokens, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: e.GatewayID, ClientSecret: e.GatewaySecret, BaseURL: e.AuthURL})
	if err != nil {
		t.Fatal(err)
	}
	if e.Videos, err = client.New(client.Options{BaseURL: e.StorageURL, Token: gwTokens.Token}); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if e.Conn, err = broker.Dial(testenv.Context(t, 10*time.Second), e.AMQPURL, logger); err != nil {
		t.Fatalf("RabbitMQ (AMQP_URL): %v", err)
	}
	t.Cleanup(func() { _ = e.Conn.Close(context.Background()) })
	e.Queue, e.Binding = "converter.test-"+e.ID, "test."+e.ID+".video.uploaded"
	if err := e.Conn.DeclareQueue(testenv.Context(t, 10*time.Second), broker.QueueSpec{Name: e.Queue, Bindings: []string{e.Binding}}); err != nil {
		t.Fatal(err)
	}
	e.observe()
	t.Cleanup(e.deleteQueues)
	return e
}

// Channel opens a raw AMQP channel for the test.
func (e *Env) Channel() *amqp.Channel {
	e.T.Helper()
	conn, err := amqp.Dial(e.AMQPURL)
	if err != nil {
		e.T.Fatalf("RabbitMQ (AMQP_URL): %v", err)
	}
	e.T.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		e.T.Fatal(err)
	}
	return ch
}

// observe collects every audio.* event of this test's jobs.
func (e *Env) observe() {
	ch := e.Channel()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		e.T.Fatal(err)
	}
	for _, key := range []string{events.TypeAudioReady, events.TypeAudioFailed, events.TypeAudioProgress} {
		if err := ch.QueueBind(q.Name, key, broker.Exchange, false, nil); err != nil {
			e.T.Fatal(err)
		}
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		e.T.Fatal(err)
	}
	go func() {
		for d := range deliveries {
			env, err := broker.DecodeEnvelope(d.Body)
			if err != nil || !strings.HasPrefix(env.JobID, e.ID) {
				continue
			}
			e.mu.Lock()
			e.events = append(e.events, env)
			e.mu.Unlock()
		}
	}()
}

func (e *Env) deleteQueues() {
	testenv.DeleteQueues(e.AMQPURL, e.Queue, e.Queue+broker.RetrySuffix, e.Queue+broker.DeadSuffix)
}

// EventsOf returns the events seen so far for job, of typ ("" for all).
func (e *Env) EventsOf(job, typ string) []broker.Envelope {
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

// Outcome waits for job's audio.ready or audio.failed.
func (e *Env) Outcome(job string, timeout time.Duration) broker.Envelope {
	e.T.Helper()
	var got broker.Envelope
	testenv.Eventually(e.T, timeout, func() bool {
		for _, ev := range e.EventsOf(job, "") {
			if ev.Type != events.TypeAudioProgress {
				got = ev
				return true
			}
		}
		return false
	}, "no audio.ready or audio.failed for job %s", job)
	return got
}

// Job is a test job id (prefixed so the observer keeps its events).
func (e *Env) Job(name string) string { return e.ID + "-" + name }

// Owner is the user of this env's jobs (VideoUploaded's owner_id).
func (e *Env) Owner() string { return "user-" + e.ID }

// Upload stores the file at path in the videos bucket as the Owner's, as
// the gateway does, and returns its id.
func (e *Env) Upload(path string) string {
	e.T.Helper()
	return e.UploadAs(e.Owner(), path)
}

// UploadAs stores the file at path in the videos bucket as owner's, with
// the gateway's scopes, and returns its id.
func (e *Env) UploadAs(owner, path string) string {
	e.T.Helper()
	f, err := os.Open(path)
	if err != nil {
		e.T.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	stored, err := e.Videos.Upload(testenv.Context(e.T, time.Minute), "videos", owner+"/"+filepath.Base(path)+"-"+testenv.RandomHex(e.T, 3),
		f, client.UploadOptions{ContentType: "video/mp4", Size: st.Size(), Owner: owner})
	if err != nil {
		e.T.Fatalf("upload %s: %v", path, err)
	}
	return stored.ID
}

// VideoUploaded is a valid payload for the stored video id.
func (e *Env) VideoUploaded(videoID string) events.VideoUploaded {
	return events.VideoUploaded{VideoID: videoID, OwnerID: e.Owner(), OwnerEmail: e.Owner() + "@example.com",
		FileName: "clip.mp4", ContentType: "video/mp4", Size: 1}
}

// Publish sends video.uploaded for job to the test's queue.
func (e *Env) Publish(job string, p events.VideoUploaded) {
	e.T.Helper()
	env, err := broker.NewEnvelope(events.TypeVideoUploaded, job, "req-"+job, p)
	if err != nil {
		e.T.Fatal(err)
	}
	if err := e.Conn.Publish(testenv.Context(e.T, 10*time.Second), e.Binding, env); err != nil {
		e.T.Fatal(err)
	}
}

// PublishRaw sends body as is to the test's queue.
func (e *Env) PublishRaw(body string) {
	e.T.Helper()
	testenv.PublishRaw(e.T, e.AMQPURL, broker.Exchange, e.Binding,
		amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: []byte(body)})
}

// Dead returns the bodies in the test queue's dead-letter queue, with their
// reasons. It leaves them there: closing the channel requeues them.
func (e *Env) Dead() map[string]string {
	e.T.Helper()
	out := map[string]string{}
	err := testenv.WithAMQPChannel(e.AMQPURL, func(ch *amqp.Channel) error {
		for {
			d, ok, err := ch.Get(e.Queue+broker.DeadSuffix, false)
			if err != nil || !ok {
				return err
			}
			reason, _ := d.Headers[broker.ReasonHeader].(string)
			out[string(d.Body)] = reason
		}
	})
	if err != nil {
		e.T.Fatalf("dead letters: %v", err)
	}
	return out
}

// Config is a converter Config for this env.
func (e *Env) Config() convert.Config {
	q, _ := ffmpeg.ParseQuality(ffmpeg.DefaultQuality)
	return convert.Config{
		ConsumerConfig: broker.ConsumerConfig{Queue: e.Queue, Concurrency: 2, Prefetch: 2,
			RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 200 * time.Millisecond, MaxAttempts: 3},
		Binding: e.Binding, Quality: q, MaxTime: 5 * time.Minute, GracePeriod: 5 * time.Second,
		TempDir: e.T.TempDir(), AudioBucket: "audio",
	}
}

// RunConverter runs a converter in this process until the test ends.
func (e *Env) RunConverter(cfg convert.Config) *convert.Converter {
	e.T.Helper()
	return e.RunConverterWith(cfg, e.Files)
}

// RunConverterWith is runConverter with files as filestorage.
func (e *Env) RunConverterWith(cfg convert.Config, files *client.Client) *convert.Converter {
	e.T.Helper()
	c, err := convert.New(cfg, convert.Options{Tools: e.Tools,
		Files: files, Events: e.Conn, Logger: slog.New(slog.NewJSONHandler(testWriter{e.T}, nil))})
	if err != nil {
		e.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx, e.Conn) }()
	e.T.Cleanup(func() { cancel(); <-done })
	return c
}

// StartConverter runs the converter binary on this env.
func (e *Env) StartConverter(vars ...string) *testenv.Process {
	e.T.Helper()
	all := []string{"AMQP_URL=" + e.AMQPURL, "CONVERTER_QUEUE=" + e.Queue, "CONVERTER_BINDING=" + e.Binding,
		"FILESTORAGE_URL=" + e.StorageURL, "AUTH_URL=" + e.AuthURL,
		"SERVICE_CLIENT_ID=" + e.ClientID, "SERVICE_CLIENT_SECRET=" + e.Secret,
		"CONVERTER_TEMP_DIR=" + e.T.TempDir(), "CONVERTER_RETRY_DELAY=200ms", "CONVERTER_MAX_RETRY_DELAY=1s"}
	return e.bins.Start(e.T, "converter", append(all, vars...)...)
}

// MP3s lists the MP3s stored for this env's users (none when the audio
// bucket does not exist yet).
func (e *Env) MP3s() []client.Entry {
	e.T.Helper()
	var out []client.Entry
	for entry, err := range e.Files.List(testenv.Context(e.T, 30*time.Second), "audio", client.ListOptions{}) {
		if errs.CodeOf(err) == errs.NotFound {
			return nil
		}
		if err != nil {
			e.T.Fatalf("list audio: %v", err)
		}
		out = append(out, entry)
	}
	return out
}

// testWriter writes the in-process converter's log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestVideo is ffmpeg's input of a test picture (for Generate).
func TestVideo() []string { return []string{"-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"} }

// TestTone is ffmpeg's input of a 440 Hz tone (for Generate).
func TestTone() []string {
	return []string{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"}
}

// Generate makes the fixture name with ffmpeg from args (inputs and
// options, e.g. TestVideo(), TestTone(), then encoding options), in a
// directory of tb's. Nothing big is committed.
func Generate(t testing.TB, name string, args ...[]string) string {
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

// WaitProgress waits until job's conversion is under way (a progress event
// below 100 %).
func (e *Env) WaitProgress(job string) {
	e.T.Helper()
	testenv.Eventually(e.T, time.Minute, func() bool {
		for _, ev := range e.EventsOf(job, events.TypeAudioProgress) {
			p, err := events.Decode[events.AudioProgress](ev.Payload)
			if err == nil && p.Percent < 100 {
				return true
			}
		}
		return false
	}, "job %s never reported progress", job)
}

// AssertOneReady waits for job's outcome, fails the test unless it is
// exactly one audio.ready, and returns that.
func (e *Env) AssertOneReady(job string) events.AudioReady {
	e.T.Helper()
	out := e.Outcome(job, 2*time.Minute)
	if out.Type != events.TypeAudioReady {
		e.T.Fatalf("job %s: %s %s", job, out.Type, out.Payload)
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would be right behind
	if n := len(e.EventsOf(job, events.TypeAudioReady)); n != 1 {
		e.T.Fatalf("job %s: %d audio.ready events, want 1", job, n)
	}
	ready, err := events.Decode[events.AudioReady](out.Payload)
	if err != nil {
		e.T.Fatal(err)
	}
	return ready
}

// SlowWAV writes a 100 kB WAV file sampled at 1 Hz: its header tells the
// truth, 27 h 46 min 40 s, and ffmpeg turns it into that much MP3 (about
// 1,500 times faster than real time here: a minute of CPU).
func SlowWAV(tb testing.TB, dir string) string {
	tb.Helper()
	const n = 100_000
	var b bytes.Buffer
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36+n))
	b.WriteString("WAVEfmt ")
	// PCM, mono, 1 Hz, 1 byte/s, 1-byte frames, 8 bits.
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(1), uint32(1), uint16(1), uint16(8)} {
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, uint32(n))
	for i := range n {
		b.WriteByte(byte(i * 37))
	}
	p := filepath.Join(dir, "slow.wav")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}
