package events_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
)

func validReady() events.AudioReady {
	return events.AudioReady{
		VideoID: "vid-1", AudioID: "aud-1", OwnerID: "user-1", OwnerEmail: "ann@example.com",
		Locale: "en", FileName: "holiday.mp4", Size: 1234, DurationSeconds: 61.5, BitrateKbps: 192,
	}
}

func validFailed() events.AudioFailed {
	return events.AudioFailed{
		VideoID: "vid-1", OwnerID: "user-1", OwnerEmail: "ann@example.com",
		FileName: "holiday.mp4", Reason: "no audio stream", Retryable: false,
	}
}

func validUploaded() events.VideoUploaded {
	return events.VideoUploaded{
		VideoID: "vid-1", OwnerID: "user-1", OwnerEmail: "ann@example.com",
		FileName: "holiday.mp4", ContentType: "video/mp4", Size: 1 << 20,
	}
}

// check runs one Validate case: wantField empty means valid, else the
// error must wrap ErrInvalidPayload and name wantField.
func check(t *testing.T, err error, wantField string) {
	t.Helper()
	if wantField == "" {
		if err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Validate() = nil, want an error naming %s", wantField)
	}
	if !errors.Is(err, events.ErrInvalidPayload) {
		t.Errorf("error %v does not wrap ErrInvalidPayload", err)
	}
	if !strings.Contains(err.Error(), wantField) {
		t.Errorf("error %q does not name %s", err, wantField)
	}
}

func TestAudioReadyValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*events.AudioReady)
		field string
	}{
		{"Valid", func(*events.AudioReady) {}, ""},
		{"ValidNoLocaleZeroDuration", func(p *events.AudioReady) { p.Locale, p.DurationSeconds, p.BitrateKbps = "", 0, 0 }, ""},
		{"ValidUnknownLocale", func(p *events.AudioReady) { p.Locale = "x-klingon\r\n" }, ""},
		{"ValidControlCharsInFileName", func(p *events.AudioReady) { p.FileName = "a\r\nBcc: x@y.z" }, ""},
		{"ErrVideoIDRequired", func(p *events.AudioReady) { p.VideoID = "" }, "video_id is required"},
		{"ErrAudioIDRequired", func(p *events.AudioReady) { p.AudioID = "" }, "audio_id is required"},
		{"ErrAudioIDSpaces", func(p *events.AudioReady) { p.AudioID = "a b" }, "audio_id"},
		{"ErrAudioIDNewline", func(p *events.AudioReady) { p.AudioID = "a\nb" }, "audio_id"},
		{"ErrAudioIDTooLong", func(p *events.AudioReady) { p.AudioID = strings.Repeat("a", events.MaxIDLength+1) }, "audio_id"},
		{"ErrOwnerIDRequired", func(p *events.AudioReady) { p.OwnerID = "" }, "owner_id is required"},
		{"ErrOwnerEmailRequired", func(p *events.AudioReady) { p.OwnerEmail = "" }, "owner_email is required"},
		{"ErrOwnerEmailNotEmail", func(p *events.AudioReady) { p.OwnerEmail = "not-an-email" }, "owner_email is not an email address"},
		{"ErrOwnerEmailDisplayName", func(p *events.AudioReady) { p.OwnerEmail = "Ann <ann@example.com>" }, "owner_email"},
		{"ErrOwnerEmailInjection", func(p *events.AudioReady) { p.OwnerEmail = "ann@example.com\r\nBcc: eve@example.com" }, "owner_email contains control characters"},
		{"ErrOwnerEmailList", func(p *events.AudioReady) { p.OwnerEmail = "ann@example.com,eve@example.com" }, "owner_email"},
		{"ErrOwnerEmailTooLong", func(p *events.AudioReady) { p.OwnerEmail = strings.Repeat("a", 250) + "@example.com" }, "owner_email"},
		{"ErrFileNameRequired", func(p *events.AudioReady) { p.FileName = "" }, "file_name is required"},
		{"ErrFileNameTooLong", func(p *events.AudioReady) { p.FileName = strings.Repeat("x", events.MaxFileNameLength+1) }, "file_name"},
		{"ErrFileNameNotUTF8", func(p *events.AudioReady) { p.FileName = "\xff.mp4" }, "file_name is not valid UTF-8"},
		{"ErrSizeZero", func(p *events.AudioReady) { p.Size = 0 }, "size must be positive"},
		{"ErrDurationNegative", func(p *events.AudioReady) { p.DurationSeconds = -1 }, "duration_seconds"},
		{"ErrDurationNaN", func(p *events.AudioReady) { p.DurationSeconds = math.NaN() }, "duration_seconds"},
		{"ErrBitrateNegative", func(p *events.AudioReady) { p.BitrateKbps = -1 }, "bitrate_kbps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validReady()
			tt.edit(&p)
			check(t, p.Validate(), tt.field)
		})
	}
}

func TestAudioReadyValidateNamesEveryField(t *testing.T) {
	err := events.AudioReady{}.Validate()
	for _, f := range []string{"video_id", "audio_id", "owner_id", "owner_email", "file_name", "size"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("error %v does not name %s", err, f)
		}
	}
}

func TestAudioFailedValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*events.AudioFailed)
		field string
	}{
		{"Valid", func(*events.AudioFailed) {}, ""},
		{"ValidRetryable", func(p *events.AudioFailed) { p.Retryable = true; p.Locale = "zh-CN" }, ""},
		{"ErrVideoIDRequired", func(p *events.AudioFailed) { p.VideoID = "" }, "video_id is required"},
		{"ErrOwnerIDRequired", func(p *events.AudioFailed) { p.OwnerID = "" }, "owner_id is required"},
		{"ErrOwnerEmailNotEmail", func(p *events.AudioFailed) { p.OwnerEmail = "ann@" }, "owner_email"},
		{"ErrFileNameRequired", func(p *events.AudioFailed) { p.FileName = "" }, "file_name is required"},
		{"ErrReasonRequired", func(p *events.AudioFailed) { p.Reason = "" }, "reason is required"},
		{"ErrReasonTooLong", func(p *events.AudioFailed) { p.Reason = strings.Repeat("r", events.MaxReasonLength+1) }, "reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validFailed()
			tt.edit(&p)
			check(t, p.Validate(), tt.field)
		})
	}
}

func TestVideoUploadedValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*events.VideoUploaded)
		field string
	}{
		{"Valid", func(*events.VideoUploaded) {}, ""},
		{"ErrVideoIDRequired", func(p *events.VideoUploaded) { p.VideoID = "" }, "video_id is required"},
		{"ErrOwnerIDRequired", func(p *events.VideoUploaded) { p.OwnerID = "" }, "owner_id is required"},
		{"ErrOwnerEmailNotEmail", func(p *events.VideoUploaded) { p.OwnerEmail = "@example.com" }, "owner_email"},
		{"ErrFileNameRequired", func(p *events.VideoUploaded) { p.FileName = "" }, "file_name is required"},
		{"ErrContentTypeRequired", func(p *events.VideoUploaded) { p.ContentType = "" }, "content_type is required"},
		{"ErrSizeNegative", func(p *events.VideoUploaded) { p.Size = -5 }, "size must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validUploaded()
			tt.edit(&p)
			check(t, p.Validate(), tt.field)
		})
	}
}

func TestAudioProgressValidate(t *testing.T) {
	tests := []struct {
		name  string
		p     events.AudioProgress
		field string
	}{
		{"Valid0", events.AudioProgress{VideoID: "v", Percent: 0}, ""},
		{"Valid100", events.AudioProgress{VideoID: "v", Percent: 100}, ""},
		{"ErrVideoIDRequired", events.AudioProgress{Percent: 5}, "video_id is required"},
		{"ErrPercentNegative", events.AudioProgress{VideoID: "v", Percent: -1}, "percent"},
		{"ErrPercentOver100", events.AudioProgress{VideoID: "v", Percent: 101}, "percent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.p.Validate(), tt.field) })
	}
}

func TestValidEmail(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"ann@example.com", true},
		{"ann.lee+audio@mail.example.co.uk", true},
		{"张伟@例子.中国", true},
		{"", false},
		{"ann", false},
		{"ann@", false},
		{"@example.com", false},
		{"ann@example.com ", false},
		{" ann@example.com", false},
		{"<ann@example.com>", false},
		{"Ann <ann@example.com>", false},
		{"ann@example.com\n", false},
		{"ann@example.com\rBcc: eve@example.com", false},
		{"ann@example.com, eve@example.com", false},
		{`"ann lee"@example.com`, false},
		{"ann@exa mple.com", false},
	}
	for _, tt := range tests {
		err := events.ValidEmail(tt.addr)
		if (err == nil) != tt.ok {
			t.Errorf("ValidEmail(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
		}
	}
}

func TestJSONFieldNames(t *testing.T) {
	raw, err := json.Marshal(validReady())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"video_id":"vid-1","audio_id":"aud-1","owner_id":"user-1","owner_email":"ann@example.com","locale":"en","file_name":"holiday.mp4","size":1234,"duration_seconds":61.5,"bitrate_kbps":192}`
	if string(raw) != want {
		t.Errorf("AudioReady JSON\n got %s\nwant %s", raw, want)
	}
	raw, _ = json.Marshal(validFailed())
	want = `{"video_id":"vid-1","owner_id":"user-1","owner_email":"ann@example.com","file_name":"holiday.mp4","reason":"no audio stream","retryable":false}`
	if string(raw) != want {
		t.Errorf("AudioFailed JSON\n got %s\nwant %s", raw, want)
	}
	raw, _ = json.Marshal(validUploaded())
	want = `{"video_id":"vid-1","owner_id":"user-1","owner_email":"ann@example.com","file_name":"holiday.mp4","content_type":"video/mp4","size":1048576}`
	if string(raw) != want {
		t.Errorf("VideoUploaded JSON\n got %s\nwant %s", raw, want)
	}
}

func TestDecode(t *testing.T) {
	env, err := broker.NewEnvelope(events.TypeAudioReady, "job-1", "req-1", validReady())
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.Decode[events.AudioReady](env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if got != validReady() {
		t.Errorf("round trip: got %+v", got)
	}

	bad := []struct {
		name, raw, want string
	}{
		{"ErrEmpty", ``, "no payload"},
		{"ErrNotJSON", `{"video_id":`, "invalid event payload"},
		{"ErrNotObject", `"hello"`, "invalid event payload"},
		{"ErrWrongType", `{"video_id":"v","size":"big"}`, "field size"},
		{"ErrTrailing", `{"video_id":"v"} {}`, "data after"},
		{"ErrMissingFields", `{"video_id":"v"}`, "audio_id is required"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := events.Decode[events.AudioReady]([]byte(tt.raw))
			if err == nil || !errors.Is(err, events.ErrInvalidPayload) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode(%q) = %v, want an ErrInvalidPayload naming %q", tt.raw, err, tt.want)
			}
		})
	}
	// Unknown fields are allowed (forward compatibility).
	if _, err := events.Decode[events.AudioProgress]([]byte(`{"video_id":"v","percent":5,"eta_seconds":3}`)); err != nil {
		t.Errorf("unknown field rejected: %v", err)
	}
}

func FuzzDecodeAudioReady(f *testing.F) {
	raw, _ := json.Marshal(validReady())
	f.Add(raw)
	f.Add([]byte(`{"size":-1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := events.Decode[events.AudioReady](b)
		if err == nil {
			if verr := p.Validate(); verr != nil {
				t.Fatalf("Decode accepted a payload Validate rejects: %v", verr)
			}
		}
	})
}
