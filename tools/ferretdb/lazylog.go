package main

import (
	"context"
	"log/slog"
	"slices"
)

// lazyAttrs is a slog.Handler that hands the attributes of Logger.With to
// the handler below only when a record is logged.
//
// FerretDB 1.24 calls With on every SQL statement, with the statement's
// arguments (a whole document: a GridFS chunk is a quarter of a MiB of
// base64), and only then asks for a debug line that an info-level logger
// drops. slog's JSON handler formats With's attributes as it is called, so
// every insert was encoded to JSON once more for nothing: a fifth of the
// launcher's CPU while files were written. Here they are formatted only
// for a record that is logged.
type lazyAttrs struct {
	next    slog.Handler
	pending []slog.Attr
}

// newLazyAttrs wraps next.
func newLazyAttrs(next slog.Handler) slog.Handler { return &lazyAttrs{next: next} }

// Enabled implements slog.Handler.
func (h *lazyAttrs) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	return h.flushed().Handle(ctx, r)
}

// WithAttrs implements slog.Handler; it only keeps as.
func (h *lazyAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &lazyAttrs{next: h.next, pending: append(slices.Clip(h.pending), as...)}
}

// WithGroup implements slog.Handler: the attributes so far go outside the
// group, so they are handed down first.
func (h *lazyAttrs) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &lazyAttrs{next: h.flushed().WithGroup(name)}
}

// flushed is next with the pending attributes.
func (h *lazyAttrs) flushed() slog.Handler {
	if len(h.pending) == 0 {
		return h.next
	}
	return h.next.WithAttrs(h.pending)
}
