package main

import (
	"bytes"
	"log/slog"
	"testing"
)

// costly counts how often it is formatted.
type costly struct{ n *int }

func (c costly) MarshalJSON() ([]byte, error) {
	*c.n++
	return []byte(`"doc"`), nil
}

func TestLazyAttrsFormatsOnlyWhatIsLogged(t *testing.T) {
	var buf bytes.Buffer
	formatted := 0
	l := slog.New(newLazyAttrs(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	for range 100 {
		l.With(slog.Any("args", costly{&formatted})).Debug(">>> INSERT")
	}
	if formatted != 0 || buf.Len() != 0 {
		t.Fatalf("dropped debug lines formatted their attributes %d times and wrote %q", formatted, buf.String())
	}
	l.With(slog.Any("args", costly{&formatted})).Info("kept")
	if formatted != 1 {
		t.Fatalf("a logged line formatted its attribute %d times, want 1", formatted)
	}
}

func TestLazyAttrsWritesWhatTheHandlerBelowWrites(t *testing.T) {
	type mk = func(*bytes.Buffer) slog.Handler
	log := func(h mk) string {
		var buf bytes.Buffer
		l := slog.New(h(&buf))
		l.With("a", 1).WithGroup("g").With("b", 2).WithGroup("").Info("m", "c", 3)
		l.With("x", "y").Warn("w")
		l.WithGroup("only").Error("e", "k", "v")
		return buf.String()
	}
	var plain, lazy mk
	plain = func(b *bytes.Buffer) slog.Handler {
		return slog.NewJSONHandler(b, &slog.HandlerOptions{ReplaceAttr: dropTime})
	}
	lazy = func(b *bytes.Buffer) slog.Handler { return newLazyAttrs(plain(b)) }
	got, want := log(lazy), log(plain)
	if got != want {
		t.Fatalf("through lazyAttrs:\n%s\nstraight:\n%s", got, want)
	}
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
