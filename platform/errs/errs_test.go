package errs_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/audiomill/audiomill/platform/errs"
)

func TestCodeOf(t *testing.T) {
	_, refused := net.Dial("tcp", "127.0.0.1:1")
	cases := []struct {
		name string
		err  error
		code errs.Code
		msg  string
	}{
		{"nil", nil, "", "internal error"},
		{"coded", fmt.Errorf("wrapped: %w", errs.E(errs.NotFound, "no such file")), errs.NotFound, "no such file"},
		{"coded beats its cause", errs.Wrap(context.DeadlineExceeded, errs.Invalid, "bad"), errs.Invalid, "bad"},
		{"plain", errors.New("boom: secret detail"), errs.Internal, "internal error"},
		{"deadline", fmt.Errorf("db: insert: %w", context.DeadlineExceeded), errs.Unavailable, "a service this one depends on is unavailable; try again later"},
		{"refused", fmt.Errorf("call: %w", refused), errs.Unavailable, "a service this one depends on is unavailable; try again later"},
		{"canceled is the caller's", fmt.Errorf("x: %w", context.Canceled), errs.Internal, "internal error"},
	}
	for _, c := range cases {
		if got := errs.CodeOf(c.err); got != c.code {
			t.Errorf("%s: CodeOf = %q, want %q", c.name, got, c.code)
		}
		if c.err != nil {
			if got := errs.MessageOf(c.err); got != c.msg {
				t.Errorf("%s: MessageOf = %q, want %q", c.name, got, c.msg)
			}
		}
	}
}
