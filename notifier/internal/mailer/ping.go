// Package mailer sends the notifier's email over SMTP.
package mailer

import (
	"context"
	"fmt"
	"net"
	"net/smtp"
	"time"
)

// Ping returns the readiness check of the SMTP server at addr: it connects,
// reads the server's greeting, says EHLO and QUIT. It is bounded by ctx.
func Ping(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("smtp dial %s: %w", addr, err)
		}
		defer conn.Close()
		if deadline, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(deadline)
		} else {
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		}
		host, _, _ := net.SplitHostPort(addr)
		c, err := smtp.NewClient(conn, host)
		if err != nil {
			return fmt.Errorf("smtp greeting from %s: %w", addr, err)
		}
		if err := c.Hello("audiomill-notifier"); err != nil {
			return fmt.Errorf("smtp EHLO to %s: %w", addr, err)
		}
		if err := c.Quit(); err != nil {
			return fmt.Errorf("smtp QUIT to %s: %w", addr, err)
		}
		return nil
	}
}
