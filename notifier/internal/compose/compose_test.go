package compose_test

import (
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/notifier/internal/compose"
	"github.com/audiomill/audiomill/platform/events"
)

func newComposer(t *testing.T) *compose.Composer {
	t.Helper()
	c, err := compose.New("https://audio.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewRejectsBadPublicURL(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://"} {
		if _, err := compose.New(u); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

func TestLanguage(t *testing.T) {
	tests := map[string]string{
		"": "en", "en": "en", "en-US": "en", "fr": "en", "zh": "zh", "ZH": "zh", "zh-CN": "zh",
		"zh_TW": "zh", "zh-Hans-CN": "zh", " zh ": "zh", "zho": "en", "zh\r\nX: y": "en",
	}
	for in, want := range tests {
		if got := compose.Language(in); got != want {
			t.Errorf("Language(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadyEnglish(t *testing.T) {
	c := newComposer(t)
	e, err := c.Ready("job 1/2", events.AudioReady{
		VideoID: "v", AudioID: "aud+1", OwnerID: "u", OwnerEmail: "a@b.c",
		FileName: `<script>alert(1)</script>.mp4`, Size: 3565158, DurationSeconds: 205.4, BitrateKbps: 128,
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.Language != "en" || e.Subject != `Your MP3 of "<script>alert(1)</script>.mp4" is ready` {
		t.Errorf("language %q subject %q", e.Language, e.Subject)
	}
	for _, want := range []string{
		"https://audio.example.com/api/v1/jobs/job%201%2F2/audio",
		"https://audio.example.com/download?fid=aud%2B1",
		"aud+1", "3.4 MiB", "3:25", "128 kbit/s", "job 1/2",
	} {
		if !strings.Contains(e.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, e.Text)
		}
	}
	if strings.Contains(e.HTML, "<script>") || !strings.Contains(e.HTML, "&lt;script&gt;") {
		t.Errorf("HTML does not escape the file name:\n%s", e.HTML)
	}
	if !strings.Contains(e.HTML, `href="https://audio.example.com/api/v1/jobs/job%201%2F2/audio"`) {
		t.Errorf("HTML lacks the link:\n%s", e.HTML)
	}
}

func TestReadyChinese(t *testing.T) {
	c := newComposer(t)
	e, err := c.Ready("j1", events.AudioReady{AudioID: "a1", FileName: "假期.mp4", Size: 2048, DurationSeconds: 3725, Locale: "zh-CN"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Language != "zh" || !strings.Contains(e.Subject, "假期.mp4") || !strings.Contains(e.Subject, "已生成") {
		t.Errorf("language %q subject %q", e.Language, e.Subject)
	}
	for _, want := range []string{"下载链接", "2.0 KiB", "1:02:05", "/api/v1/jobs/j1/audio"} {
		if !strings.Contains(e.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, e.Text)
		}
	}
	if strings.Contains(e.Text, "kbit/s") {
		t.Error("zero bitrate shown")
	}
}

func TestFailed(t *testing.T) {
	c := newComposer(t)
	for _, tt := range []struct {
		locale    string
		retryable bool
		want      []string
	}{
		{"", false, []string{"Reason: no audio stream", "sound track", "quote job j9", "https://audio.example.com/"}},
		{"en", true, []string{"This looks temporary", "in a few minutes"}},
		{"zh", false, []string{"原因：no audio stream", "音轨", "j9"}},
		{"zh-TW", true, []string{"暂时性问题"}},
	} {
		e, err := c.Failed("j9", events.AudioFailed{FileName: "x.avi", Reason: "no audio stream", Retryable: tt.retryable, Locale: tt.locale})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(e.Subject, "x.avi") {
			t.Errorf("subject %q does not name the video", e.Subject)
		}
		for _, w := range tt.want {
			if !strings.Contains(e.Text, w) {
				t.Errorf("locale %q retryable %v: text lacks %q:\n%s", tt.locale, tt.retryable, w, e.Text)
			}
		}
		if !strings.Contains(e.HTML, "no audio stream") {
			t.Errorf("HTML lacks the reason")
		}
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := compose.HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	for s, want := range map[float64]string{0: "0:00", 59.6: "1:00", 61: "1:01", 3600: "1:00:00", 3725.2: "1:02:05", -1: "?"} {
		if got := compose.HumanDuration(s); got != want {
			t.Errorf("HumanDuration(%v) = %q, want %q", s, got, want)
		}
	}
}

func TestVerifyAndExistsEmails(t *testing.T) {
	c := newComposer(t)
	exp := time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC)
	for _, locale := range []string{"en", "zh-CN"} {
		e, err := c.Verify(events.AccountVerify{UserID: "u1", Email: "a@example.com", Locale: locale, Token: "tok-_+/=", ExpiresAt: exp})
		if err != nil {
			t.Fatal(err)
		}
		link := "https://audio.example.com/api/v1/verify?token=tok-_%2B%2F%3D"
		if !strings.Contains(e.Text, link) || !strings.Contains(e.HTML, "tok-_%2b%2f%3d") && !strings.Contains(e.HTML, "tok-_%2B%2F%3D") ||
			!strings.Contains(e.Text, "2030-01-02 03:04 UTC") || e.Subject == "" {
			t.Errorf("%s verify email: %q\n%s\n%s", locale, e.Subject, e.Text, e.HTML)
		}
		x, err := c.Exists(events.AccountExists{UserID: "u1", Email: "a@example.com", Locale: locale})
		if err != nil || x.Subject == "" || !strings.Contains(x.Text, "https://audio.example.com/") {
			t.Errorf("%s exists email: %v %q %s", locale, err, x.Subject, x.Text)
		}
	}
}
