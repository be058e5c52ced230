package consul

import (
	"testing"
	"time"
)

// The agent's API does not report DeregisterCriticalServiceAfter or the
// check's HTTP URL back, so the registration we send is checked here.
func TestRegistrationCheck(t *testing.T) {
	r := NewRegistrar(nil, Registration{Name: "svc", ID: "svc-1", Address: "127.0.0.1", Port: 8101,
		Version: "v9", CheckURL: "http://127.0.0.1:8101/readyz"}, nil)
	reg := r.registration("")
	if reg.Meta["version"] != "v9" || reg.ID != "svc-1" || reg.Port != 8101 {
		t.Errorf("registration = %+v", reg)
	}
	c := reg.Check
	if c.HTTP != "http://127.0.0.1:8101/readyz" {
		t.Errorf("check URL = %q", c.HTTP)
	}
	for field, value := range map[string]string{
		"Interval": c.Interval, "Timeout": c.Timeout, "DeregisterCriticalServiceAfter": c.DeregisterCriticalServiceAfter,
	} {
		d, err := time.ParseDuration(value)
		if err != nil || d <= 0 {
			t.Errorf("%s = %q, want a positive duration", field, value)
		}
	}
	if d, _ := time.ParseDuration(c.Interval); d > 2*time.Second {
		t.Errorf("Interval = %s, want ≤ 2s", d)
	}
}
