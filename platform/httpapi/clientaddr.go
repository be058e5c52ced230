package httpapi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// DefaultTrustedProxies are the peers trusted to name the client when
// TRUSTED_PROXIES is unset: loopback, where the edge of the local stack runs.
const DefaultTrustedProxies = "127.0.0.0/8,::1/128"

// TrustedProxies are the peers (the edge, a load balancer in front of it)
// whose X-Real-IP and X-Forwarded-For headers name the client. Any other
// peer is the client itself, whatever headers it sends.
type TrustedProxies []netip.Prefix

// ParseTrustedProxies parses CIDR prefixes ("10.0.0.0/8", "::1/128"); a bare
// address is not accepted, so that a typo cannot silently trust nothing or
// everything. The error names the first bad entry.
func ParseTrustedProxies(list []string) (TrustedProxies, error) {
	out := make(TrustedProxies, 0, len(list))
	for _, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR prefix (e.g. 10.0.0.0/8)", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// DefaultProxies returns DefaultTrustedProxies, parsed.
func DefaultProxies() TrustedProxies {
	t, err := ParseTrustedProxies(strings.Split(DefaultTrustedProxies, ","))
	if err != nil {
		panic(err) // a constant: cannot happen
	}
	return t
}

// Contains reports whether ip is one of the trusted proxies.
func (t TrustedProxies) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range t {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientAddr derives r's client address. A peer that is not trusted is the
// client. A trusted peer's X-Real-IP names the client unless it is itself a
// trusted proxy; then X-Forwarded-For is walked from the right (the hop
// nearest to us), skipping trusted hops: the first untrusted hop is the
// client (what a client writes further left is ignored: it could be
// anything). When every hop is trusted the leftmost one is the client; a
// malformed hop ends the walk at the last good one.
func (t TrustedProxies) ClientAddr(r *http.Request) string {
	peer := peerAddr(r)
	ip, err := netip.ParseAddr(peer)
	if err != nil || !t.Contains(ip) {
		return peer
	}
	addr := ip.Unmap()
	if real, err := netip.ParseAddr(strings.TrimSpace(r.Header.Get("X-Real-IP"))); err == nil {
		addr = real.Unmap()
		if !t.Contains(addr) {
			return addr.String()
		}
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		addr = hop.Unmap()
		if !t.Contains(addr) {
			break
		}
	}
	return addr.String()
}

// peerAddr is the host of r's RemoteAddr.
func peerAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type clientAddrKey struct{}

// withClientAddr puts the client address trusted derives into the request's
// context, for ClientIP and the access log.
func withClientAddr(trusted TrustedProxies, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), clientAddrKey{}, trusted.ClientAddr(r))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// ClientIP is the client address of r: the one the Server derived from the
// peer and, when the peer is a trusted proxy (TRUSTED_PROXIES), from its
// X-Real-IP / X-Forwarded-For. Rate limits and logs key on it; a request
// that did not pass through a Server gets its peer's address.
func ClientIP(r *http.Request) string {
	if a, ok := r.Context().Value(clientAddrKey{}).(string); ok {
		return a
	}
	return peerAddr(r)
}
