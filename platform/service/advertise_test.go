package service

import (
	"errors"
	"net"
	"testing"
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
