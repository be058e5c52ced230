package app_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/converter/internal/app"
	"github.com/audiomill/audiomill/platform/config"
)

func readConfig(vars map[string]string) (app.Config, error) {
	r := config.NewReader(func(k string) string { return vars[k] })
	c := app.ReadConfig(r)
	return c, r.Err()
}

func TestReadConfig(t *testing.T) {
	base := map[string]string{"SERVICE_CLIENT_ID": "converter", "SERVICE_CLIENT_SECRET": "0123456789abcdef"}
	all, err := readConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	c := all.Convert
	if c.Concurrency != runtime.NumCPU() || c.Prefetch != 2*c.Concurrency || c.Quality.String() != "V2" ||
		c.Queue != "converter.video-uploaded" || c.Binding != "video.uploaded" || c.AudioBucket != "audio" ||
		c.MaxTime != time.Hour || c.GracePeriod != 20*time.Second || all.Filestorage.URL != "" || all.Account.AuthURL != "" {
		t.Fatalf("defaults: %+v", all)
	}
	if c.MaxDuration != 4*time.Hour || c.MaxOutputBytes != 1<<30 || all.Tools.Limits.CPUTime != 30*time.Minute || all.Tools.Limits.Memory != 1<<30 {
		t.Fatalf("bounds: %+v %+v", c, all.Tools.Limits)
	}
	set, err := readConfig(map[string]string{"SERVICE_CLIENT_ID": "converter", "SERVICE_CLIENT_SECRET": "0123456789abcdef",
		"CONVERTER_MAX_DURATION": "90m", "CONVERTER_MAX_OUTPUT_BYTES": "200MiB", "CONVERTER_FFMPEG_CPU_TIME": "5m", "CONVERTER_FFMPEG_MEMORY": "2GiB"})
	if err != nil || set.Convert.MaxDuration != 90*time.Minute || set.Convert.MaxOutputBytes != 200<<20 ||
		set.Tools.Limits.CPUTime != 5*time.Minute || set.Tools.Limits.Memory != 2<<30 {
		t.Fatalf("bounds set: %+v %+v %v", set.Convert, set.Tools.Limits, err)
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
		{"MaxDurationTiny", "CONVERTER_MAX_DURATION", "500ms"},
		{"MaxDurationNotADuration", "CONVERTER_MAX_DURATION", "4"},
		{"MaxOutputTiny", "CONVERTER_MAX_OUTPUT_BYTES", "1000"},
		{"MaxOutputNotASize", "CONVERTER_MAX_OUTPUT_BYTES", "lots"},
		{"CPUTimeZero", "CONVERTER_FFMPEG_CPU_TIME", "0s"},
		{"MemoryTiny", "CONVERTER_FFMPEG_MEMORY", "64MiB"},
		{"MemoryNegative", "CONVERTER_FFMPEG_MEMORY", "-1"},
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
