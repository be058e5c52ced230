package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/audiomill/audiomill/platform/logging"
)

func TestRequestIDOnEveryLine(t *testing.T) {
	var buf bytes.Buffer
	logger, err := logging.New(&buf, "info", "auth")
	if err != nil {
		t.Fatal(err)
	}
	ctx := logging.WithRequestID(context.Background(), "req-123")
	logger.InfoContext(ctx, "first")
	logger.With("k", "v").WarnContext(ctx, "second")
	logger.Info("no context")

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"req-123", "req-123", ""} {
		var rec map[string]any
		if err := json.Unmarshal(lines[i], &rec); err != nil {
			t.Fatalf("line %d is not JSON: %v", i, err)
		}
		got, _ := rec[logging.RequestIDKey].(string)
		if got != want {
			t.Errorf("line %d request_id = %q, want %q", i, got, want)
		}
		if rec["service"] != "auth" {
			t.Errorf("line %d service = %v", i, rec["service"])
		}
	}
}

func TestLevel(t *testing.T) {
	var buf bytes.Buffer
	logger, err := logging.New(&buf, "warn", "x")
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("hidden")
	if buf.Len() != 0 {
		t.Fatalf("info logged at warn level: %s", buf.String())
	}
	if _, err := logging.New(&buf, "loud", "x"); err == nil {
		t.Fatal("New accepted level \"loud\"")
	}
}

func TestNewRequestIDUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := logging.NewRequestID()
		if len(id) != 32 || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}
