package testenv

import "testing"

func TestURLHost(t *testing.T) {
	for _, tc := range []struct{ raw, def, want string }{
		{"amqp://guest:guest@127.0.0.1:5672/", "5672", "127.0.0.1:5672"},
		{"amqp://guest:guest@rabbit/", "5672", "rabbit:5672"},
		{"mongodb://a:27018,b:27019/?replicaSet=rs0", "27017", "a:27018"},
		{"mongodb://db/", "27017", "db:27017"},
		{"http://[::1]:1080", "80", "[::1]:1080"},
		{"http://localhost", "80", "localhost:80"},
	} {
		if got := urlHost(t, "X", tc.raw, tc.def); got != tc.want {
			t.Errorf("urlHost(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}
