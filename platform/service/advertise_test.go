package service

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/config"
)

func TestFirstIPv4(t *testing.T) {
	ipnet := func(s string) net.Addr {
		ip, n, _ := net.ParseCIDR(s)
		n.IP = ip
		return n
	}
	for _, tc := range []struct {
		name  string
		addrs []net.Addr
		want  string
		ok    bool
	}{
		{"SkipsLoopbackAndIPv6", []net.Addr{ipnet("127.0.0.1/8"), ipnet("fe80::1/64"), ipnet("172.18.0.5/16")}, "172.18.0.5", true},
		{"ErrOnlyLoopback", []net.Addr{ipnet("127.0.0.1/8"), ipnet("::1/128")}, "", false},
		{"ErrNone", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := firstIPv4(func() ([]net.Addr, error) { return tc.addrs, nil })
			if got != tc.want || (err == nil) != tc.ok {
				t.Fatalf("firstIPv4 = %q, %v; want %q (ok %v)", got, err, tc.want, tc.ok)
			}
		})
	}
	if _, err := firstIPv4(func() ([]net.Addr, error) { return nil, errors.New("boom") }); err == nil {
		t.Fatal("listing error swallowed")
	}
}

func TestShutdownDelayDefault(t *testing.T) {
	none := func(string) string { return "" }
	if d := ReadBase(config.NewReader(none), Spec{Name: "edge-facing"}).ShutdownDelay; d != DefaultShutdownDelay {
		t.Errorf("routed service delay = %v, want %v", d, DefaultShutdownDelay)
	}
	if d := ReadBase(config.NewReader(none), Spec{Name: "consumer", Unrouted: true}).ShutdownDelay; d != 0 {
		t.Errorf("unrouted service delay = %v, want 0", d)
	}
	set := func(k string) string { return map[string]string{"SHUTDOWN_DELAY": "2s"}[k] }
	if d := ReadBase(config.NewReader(set), Spec{Unrouted: true}).ShutdownDelay; d != 2*time.Second {
		t.Errorf("SHUTDOWN_DELAY=2s gave %v", d)
	}
}
