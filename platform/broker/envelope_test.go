package broker_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/broker"
)

func TestNewEnvelope(t *testing.T) {
	type payload struct {
		VideoID string `json:"video_id"`
		Note    string `json:"note"`
	}
	env, err := broker.NewEnvelope("video.uploaded", "job-1", "req-1", payload{VideoID: "v1", Note: "<&>"})
	if err != nil {
		t.Fatal(err)
	}
	if len(env.ID) != 32 {
		t.Errorf("id %q: want 32 hex characters", env.ID)
	}
	if env.Type != "video.uploaded" || env.JobID != "job-1" || env.CorrelationID != "req-1" {
		t.Errorf("fields not kept: %+v", env)
	}
	if time.Since(env.OccurredAt) > time.Minute || env.OccurredAt.Location() != time.UTC {
		t.Errorf("occurred_at %v: want now, UTC", env.OccurredAt)
	}
	if want := `{"video_id":"v1","note":"<&>"}`; string(env.Payload) != want {
		t.Errorf("payload %s, want %s", env.Payload, want)
	}
	var p payload
	if err := env.DecodePayload(&p); err != nil || p.VideoID != "v1" {
		t.Errorf("DecodePayload: %+v, %v", p, err)
	}

	other, err := broker.NewEnvelope("video.uploaded", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == env.ID {
		t.Error("two envelopes share an id")
	}
	if other.Payload != nil {
		t.Errorf("nil payload encoded as %q, want none", other.Payload)
	}

	t.Run("ErrTypeRequired", func(t *testing.T) {
		if _, err := broker.NewEnvelope("", "", "", nil); !errors.Is(err, broker.ErrInvalidEnvelope) {
			t.Errorf("err = %v, want ErrInvalidEnvelope", err)
		}
	})
	t.Run("ErrPayloadNotEncodable", func(t *testing.T) {
		if _, err := broker.NewEnvelope("x", "", "", func() {}); err == nil {
			t.Error("want an error for a func payload")
		}
	})
}

func TestDecodeEnvelope(t *testing.T) {
	body := []byte(`{"id":"abc","type":"audio.ready","occurred_at":"2025-01-02T03:04:05.123456789+02:00",` +
		`"job_id":"j","correlation_id":"r","payload": { "a" : [1, 2] } }`)
	env, err := broker.DecodeEnvelope(body)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2025, 1, 2, 1, 4, 5, 123456789, time.UTC)
	if env.ID != "abc" || env.Type != "audio.ready" || env.JobID != "j" || env.CorrelationID != "r" || !env.OccurredAt.Equal(want) {
		t.Errorf("decoded %+v", env)
	}
	if string(env.Payload) != `{"a":[1,2]}` {
		t.Errorf("payload %s not compacted", env.Payload)
	}

	minimal, err := broker.DecodeEnvelope([]byte(`{"id":"a","type":"t","occurred_at":"2025-01-01T00:00:00Z","payload":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if minimal.Payload != nil {
		t.Errorf("null payload decoded as %q, want none", minimal.Payload)
	}
}

func TestDecodeEnvelopeInvalid(t *testing.T) {
	const ok = `"id":"a","type":"t","occurred_at":"2025-01-01T00:00:00Z"`
	for _, tc := range []struct {
		name, body, want string
	}{
		{"ErrEmpty", ``, "not a JSON object"},
		{"ErrNotJSON", `hello`, "not a JSON object"},
		{"ErrArray", `[1,2]`, "not a JSON object"},
		{"ErrNull", `null`, "not a JSON object"},
		{"ErrString", `"x"`, "not a JSON object"},
		{"ErrTruncated", `{` + ok, "not a JSON object"},
		{"ErrTrailingData", `{` + ok + `} {}`, "data after the JSON object"},
		{"ErrTrailingGarbage", `{` + ok + `}]`, "data after the JSON object"},
		{"ErrUnknownField", `{` + ok + `,"extra":1}`, `unknown field(s) "extra"`},
		{"ErrWrongCase", `{"ID":"a","type":"t","occurred_at":"2025-01-01T00:00:00Z"}`, `unknown field(s) "ID"`},
		{"ErrIDMissing", `{"type":"t","occurred_at":"2025-01-01T00:00:00Z"}`, "id is required"},
		{"ErrIDEmpty", `{"id":"","type":"t","occurred_at":"2025-01-01T00:00:00Z"}`, "id is required"},
		{"ErrIDNull", `{"id":null,"type":"t","occurred_at":"2025-01-01T00:00:00Z"}`, "id is required"},
		{"ErrIDNotString", `{"id":42,"type":"t","occurred_at":"2025-01-01T00:00:00Z"}`, "field id"},
		{"ErrIDTooLong", `{"id":"` + strings.Repeat("x", 256) + `","type":"t","occurred_at":"2025-01-01T00:00:00Z"}`, "id is longer than 255"},
		{"ErrTypeMissing", `{"id":"a","occurred_at":"2025-01-01T00:00:00Z"}`, "type is required"},
		{"ErrOccurredAtMissing", `{"id":"a","type":"t"}`, "occurred_at is required"},
		{"ErrOccurredAtZero", `{"id":"a","type":"t","occurred_at":"0001-01-01T00:00:00Z"}`, "occurred_at is required"},
		{"ErrOccurredAtNotRFC3339", `{"id":"a","type":"t","occurred_at":"yesterday"}`, "field occurred_at"},
		{"ErrOccurredAtNumber", `{"id":"a","type":"t","occurred_at":1700000000}`, "field occurred_at"},
		{"ErrJobIDNotString", `{` + ok + `,"job_id":{}}`, "field job_id"},
		{"ErrCorrelationIDTooLong", `{` + ok + `,"correlation_id":"` + strings.Repeat("r", 256) + `"}`, "correlation_id is longer"},
		{"ErrAllRequiredMissing", `{}`, "id is required; type is required; occurred_at is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := broker.DecodeEnvelope([]byte(tc.body))
			if err == nil {
				t.Fatalf("DecodeEnvelope(%.60q) succeeded, want an error containing %q", tc.body, tc.want)
			}
			if !errors.Is(err, broker.ErrInvalidEnvelope) {
				t.Errorf("error %v does not wrap ErrInvalidEnvelope", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestEnvelopeEncodeRoundTrip(t *testing.T) {
	env, err := broker.NewEnvelope("audio.ready", "job", "req", json.RawMessage(`{"html":"<b>&</b>","n":1.50}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := broker.DecodeEnvelope(body)
	if err != nil {
		t.Fatal(err)
	}
	assertEnvelopeEqual(t, got, env)
	if _, err := (broker.Envelope{}).Encode(); !errors.Is(err, broker.ErrInvalidEnvelope) {
		t.Errorf("Encode of an empty envelope: %v, want ErrInvalidEnvelope", err)
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, seed := range []string{
		`{"id":"a","type":"t","occurred_at":"2025-01-01T00:00:00Z"}`,
		`{"id":"abc","type":"audio.ready","occurred_at":"2025-01-02T03:04:05.123456789+02:00","job_id":"j","correlation_id":"r","payload": { "a" : [1, 2, "<>&\u2028"] } }`,
		`{"id":"a","type":"t","occurred_at":"9999-12-31T23:59:59-23:59","payload":null}`,
		`{"id":"a","type":"t","occurred_at":"0000-01-01T00:00:00+23:59","payload":"\ud800"}`,
		`{"id":"\u00e9","type":"t","occurred_at":"2025-01-01T00:00:00Z","payload":1e400}`,
		`{"id":"a","id":"b","type":"t","occurred_at":"2025-01-01T00:00:00Z"}`,
		`{"ID":"a"}`,
		`[]`, `null`, ``, `{`, `{"payload":{}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := broker.DecodeEnvelope(body)
		if err != nil {
			if !errors.Is(err, broker.ErrInvalidEnvelope) {
				t.Fatalf("error %v does not wrap ErrInvalidEnvelope", err)
			}
			return
		}
		encoded, err := env.Encode()
		if err != nil {
			t.Fatalf("decoded envelope %+v does not encode: %v", env, err)
		}
		again, err := broker.DecodeEnvelope(encoded)
		if err != nil {
			t.Fatalf("re-encoded envelope %s does not decode: %v", encoded, err)
		}
		assertEnvelopeEqual(t, again, env)
		encodedAgain, err := again.Encode()
		if err != nil || !bytes.Equal(encodedAgain, encoded) {
			t.Fatalf("encoding not stable:\n%s\n%s (%v)", encoded, encodedAgain, err)
		}
	})
}

func assertEnvelopeEqual(t *testing.T, got, want broker.Envelope) {
	t.Helper()
	if got.ID != want.ID || got.Type != want.Type || got.JobID != want.JobID ||
		got.CorrelationID != want.CorrelationID || !got.OccurredAt.Equal(want.OccurredAt) ||
		!bytes.Equal(got.Payload, want.Payload) {
		t.Fatalf("envelopes differ:\n got %+v (payload %s)\nwant %+v (payload %s)", got, got.Payload, want, want.Payload)
	}
}
