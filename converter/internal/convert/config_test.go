package convert_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/converter/internal/convert"
	"github.com/audiomill/audiomill/platform/config"
)

func readConfig(vars map[string]string) (convert.Config, error) {
	r := config.NewReader(func(k string) string { return vars[k] })
	c := convert.ConfigFromEnv(r)
	return c, r.Err()
}

func TestConfigFromEnv(t *testing.T) {
	base := map[string]string{"SERVICE_CLIENT_ID": "converter", "SERVICE_CLIENT_SECRET": "0123456789abcdef"}
	c, err := readConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	if c.Concurrency != runtime.NumCPU() || c.Prefetch != 2*c.Concurrency || c.Quality.String() != "V2" ||
		c.Queue != "converter.video-uploaded" || c.Binding != "video.uploaded" || c.AudioBucket != "audio" ||
		c.MaxTime != time.Hour || c.GracePeriod != 20*time.Second || c.Filestorage.URL != "" || c.AuthURL != "" {
		t.Fatalf("defaults: %+v", c)
	}

	tests := []struct {
		name, variable, value string
	}{
		{"QualityUnknown", "CONVERTER_MP3_QUALITY", "best"},
		{"ConcurrencyZero", "CONVERTER_CONCURRENCY", "0"},
		{"PrefetchBelowConcurrency", "CONVERTER_PREFETCH", "0"},
		{"MaxAttemptsZero", "CONVERTER_MAX_ATTEMPTS", "0"},
		{"RetryDelayAboveMax", "CONVERTER_RETRY_DELAY", "10m"},
		{"MaxTimeTiny", "CONVERTER_MAX_TIME", "10ms"},
		{"GraceNegative", "CONVERTER_GRACE_PERIOD", "-1s"},
		{"TempDirMissing", "CONVERTER_TEMP_DIR", "/no/such/dir"},
		{"FilestorageURLNotHTTP", "FILESTORAGE_URL", "ftp://x"},
		{"AuthURLRelative", "AUTH_URL", "auth:8101"},
		{"ClientIDMissing", "SERVICE_CLIENT_ID", ""},
		{"ClientSecretMissing", "SERVICE_CLIENT_SECRET", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{}
			for k, v := range base {
				vars[k] = v
			}
			vars[tc.variable] = tc.value
			if _, err := readConfig(vars); err == nil || !strings.Contains(err.Error(), tc.variable) {
				t.Fatalf("err = %v, want one naming %s", err, tc.variable)
			}
		})
	}
}

func TestSweepTemp(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	mk := func(name string, age time.Duration) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(p, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	old := mk("audiomill-convert-old", 3*time.Hour)
	fresh := mk("audiomill-convert-fresh", time.Minute)
	other := mk("someone-else", 5*time.Hour)
	n, err := convert.SweepTemp(dir, 2*time.Hour, now)
	if err != nil || n != 1 {
		t.Fatalf("swept %d, %v; want 1", n, err)
	}
	for p, want := range map[string]bool{old: false, fresh: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", p, err == nil, want)
		}
	}
}
