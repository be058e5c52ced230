package httpapi_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/audiomill/audiomill/platform/httpapi"
)

func TestClientAddr(t *testing.T) {
	trusted, err := httpapi.ParseTrustedProxies([]string{"10.0.0.0/8", "::1/128"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, peer, realIP string
		xff                []string
		want               string
	}{
		{"UntrustedPeerIsTheClient", "203.0.113.9:5000", "198.51.100.1", []string{"198.51.100.2"}, "203.0.113.9"},
		{"UntrustedLoopbackIsTheClient", "127.0.0.1:5000", "198.51.100.1", nil, "127.0.0.1"},
		{"TrustedPeerRealIP", "10.1.2.3:5000", "198.51.100.1", nil, "198.51.100.1"},
		{"TrustedPeerIPv6", "[::1]:5000", "2001:db8::7", nil, "2001:db8::7"},
		{"TrustedPeerForwardedFor", "10.1.2.3:5000", "", []string{"198.51.100.1"}, "198.51.100.1"},
		// A client writes its own X-Forwarded-For; the edge appends the
		// address it saw: the rightmost untrusted hop is the client.
		{"SpoofedLeftHopsIgnored", "10.1.2.3:5000", "", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"TrustedHopsSkipped", "10.1.2.3:5000", "", []string{"198.51.100.1, 10.9.9.9", "10.8.8.8"}, "198.51.100.1"},
		{"TrustedRealIPThenForwardedFor", "10.1.2.3:5000", "10.7.7.7", []string{"198.51.100.1, 10.7.7.7"}, "198.51.100.1"},
		{"AllHopsTrusted", "10.1.2.3:5000", "", []string{"10.5.5.5, 10.6.6.6"}, "10.5.5.5"},
		{"MalformedHopEndsTheWalk", "10.1.2.3:5000", "", []string{"198.51.100.1, garbage, 10.6.6.6"}, "10.6.6.6"},
		{"MalformedRealIPIgnored", "10.1.2.3:5000", "not an ip", []string{"198.51.100.1"}, "198.51.100.1"},
		{"NoHeaders", "10.1.2.3:5000", "", nil, "10.1.2.3"},
		{"MappedIPv4", "10.1.2.3:5000", "::ffff:198.51.100.1", nil, "198.51.100.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
			r.RemoteAddr = tc.peer
			if tc.realIP != "" {
				r.Header.Set("X-Real-IP", tc.realIP)
			}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := trusted.ClientAddr(r); got != tc.want {
				t.Errorf("ClientAddr = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	for _, bad := range [][]string{{"10.0.0.1"}, {"10.0.0.0/33"}, {"nonsense"}, {"10.0.0.0/8", ""}} {
		if _, err := httpapi.ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) accepted", bad)
		}
	}
	if p := httpapi.DefaultProxies(); len(p) != 2 {
		t.Errorf("DefaultProxies = %v", p)
	}
}

// TestClientIPThroughTheServer: a server trusting only 127.0.0.2 derives the
// client from that peer's headers, and ignores another loopback peer's; the
// access log names the client.
func TestClientIPThroughTheServer(t *testing.T) {
	trusted, err := httpapi.ParseTrustedProxies([]string{"127.0.0.2/32"})
	if err != nil {
		t.Fatal(err)
	}
	s := mustOpenWith(t, httpapi.Options{TrustedProxies: trusted}, func(s *httpapi.Server) {
		s.Router().HandleFunc("/ip", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(httpapi.ClientIP(r)))
		})
	})
	from := func(local string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	get := func(c *http.Client, hdr, value string) string {
		req, _ := http.NewRequest(http.MethodGet, s.base+"/ip", nil)
		req.Header.Set(hdr, value)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get(from("127.0.0.2"), "X-Forwarded-For", "198.51.100.1"); got != "198.51.100.1" {
		t.Errorf("through the trusted proxy: %q, want 198.51.100.1", got)
	}
	if got := get(from("127.0.0.3"), "X-Real-IP", "198.51.100.1"); got != "127.0.0.3" {
		t.Errorf("an untrusted peer's X-Real-IP: %q, want its own 127.0.0.3", got)
	}
	if got := get(from("127.0.0.3"), "X-Forwarded-For", "198.51.100.1"); got != "127.0.0.3" {
		t.Errorf("an untrusted peer's X-Forwarded-For: %q, want its own 127.0.0.3", got)
	}
	if !strings.Contains(s.logs.String(), `"client":"198.51.100.1"`) {
		t.Errorf("no access line names the client:\n%s", s.logs.String())
	}
}
