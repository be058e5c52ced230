package mailer_test

import (
	"context"
	"testing"
	"time"

	"github.com/audiomill/audiomill/notifier/internal/mailer"
	"github.com/audiomill/audiomill/platform/testenv"
)

func TestPingRealSMTPSink(t *testing.T) {
	addr := testenv.SMTPAddr(t)
	if err := mailer.Ping(addr)(testenv.Context(t, 5*time.Second)); err != nil {
		t.Fatalf("ping %s: %v", addr, err)
	}
}

func TestPingDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := mailer.Ping("127.0.0.1:1")(ctx); err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
}
