// Package events is the contract of audiomill's events on the
// audiomill.events exchange: their routing keys (which are also the
// envelope types) and their payloads. See "Messaging contract" in
// docs/architecture.md.
//
// A payload travels in broker.Envelope.Payload. The job id and the
// correlation id (the request id of the upload) are in the envelope, not in
// the payload. Publishers build an envelope with
//
//	env, err := broker.NewEnvelope(events.TypeAudioReady, jobID, requestID, payload)
//
// after payload.Validate(); consumers decode with Decode, which validates.
package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Routing keys on audiomill.events; each is also the envelope type of its
// event and the EventType of its payload.
const (
	// TypeVideoUploaded: a video is stored and its conversion job recorded
	// (published by the gateway, consumed by the converter).
	TypeVideoUploaded = "video.uploaded"
	// TypeAudioReady: the job's MP3 is stored (published by the converter).
	TypeAudioReady = "audio.ready"
	// TypeAudioFailed: the job's conversion failed (published by the converter).
	TypeAudioFailed = "audio.failed"
	// TypeAudioProgress: how far the conversion is (published by the converter,
	// best effort; nothing depends on receiving every one).
	TypeAudioProgress = "audio.progress"
)

// Limits of payload fields.
const (
	// MaxIDLength bounds every id field.
	MaxIDLength = 128
	// MaxFileNameLength bounds FileName, in bytes.
	MaxFileNameLength = 1024
	// MaxReasonLength bounds AudioFailed.Reason, in bytes.
	MaxReasonLength = 4096
	// MaxEmailLength is the longest address RFC 5321 allows in a path.
	MaxEmailLength = 254
)

// ErrInvalidPayload is wrapped by every error of Validate and Decode.
var ErrInvalidPayload = errors.New("invalid event payload")

// Payload is what every event payload implements.
type Payload interface {
	// Validate reports every missing or invalid field, by its JSON name,
	// in an error wrapping ErrInvalidPayload.
	Validate() error
	// EventType is the event's envelope type and routing key.
	EventType() string
}

// VideoUploaded is the payload of a video.uploaded event.
type VideoUploaded struct {
	VideoID    string `json:"video_id"`
	OwnerID    string `json:"owner_id"`
	OwnerEmail string `json:"owner_email"`
	// Locale is the owner's language, a BCP 47 tag ("en", "zh-CN"). It is
	// not validated: empty or unknown means the consumer's default.
	Locale      string `json:"locale,omitempty"`
	FileName    string `json:"file_name"` // as the user named the upload
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"` // bytes
}

// AudioReady is the payload of an audio.ready event.
type AudioReady struct {
	VideoID         string  `json:"video_id"`
	AudioID         string  `json:"audio_id"` // the MP3's file id in filestorage
	OwnerID         string  `json:"owner_id"`
	OwnerEmail      string  `json:"owner_email"`
	Locale          string  `json:"locale,omitempty"`
	FileName        string  `json:"file_name"` // the video's file name
	Size            int64   `json:"size"`      // the MP3's size in bytes
	DurationSeconds float64 `json:"duration_seconds"`
	BitrateKbps     int     `json:"bitrate_kbps"`
}

// AudioFailed is the payload of an audio.failed event.
type AudioFailed struct {
	VideoID    string `json:"video_id"`
	OwnerID    string `json:"owner_id"`
	OwnerEmail string `json:"owner_email"`
	Locale     string `json:"locale,omitempty"`
	FileName   string `json:"file_name"`
	Reason     string `json:"reason"`    // for the user: why the conversion failed
	Retryable  bool   `json:"retryable"` // whether uploading again may succeed
}

// AudioProgress is the payload of an audio.progress event.
type AudioProgress struct {
	VideoID string `json:"video_id"`
	Percent int    `json:"percent"` // 0–100
}

// Compile-time checks.
var (
	_ Payload = VideoUploaded{}
	_ Payload = AudioReady{}
	_ Payload = AudioFailed{}
	_ Payload = AudioProgress{}
)

// EventType implements Payload.
func (VideoUploaded) EventType() string { return TypeVideoUploaded }

// EventType implements Payload.
func (AudioReady) EventType() string { return TypeAudioReady }

// EventType implements Payload.
func (AudioFailed) EventType() string { return TypeAudioFailed }

// EventType implements Payload.
func (AudioProgress) EventType() string { return TypeAudioProgress }

// Validate implements Payload.
func (p VideoUploaded) Validate() error {
	var c checker
	c.video(p.VideoID, p.OwnerID, p.OwnerEmail, p.FileName)
	c.text("content_type", p.ContentType, MaxIDLength, true)
	if p.Size <= 0 {
		c.add("size", "must be positive")
	}
	return c.err(TypeVideoUploaded)
}

// Validate implements Payload.
func (p AudioReady) Validate() error {
	var c checker
	c.video(p.VideoID, p.OwnerID, p.OwnerEmail, p.FileName)
	c.id("audio_id", p.AudioID)
	if p.Size <= 0 {
		c.add("size", "must be positive")
	}
	if !(p.DurationSeconds >= 0) || p.DurationSeconds > 1e7 { // also rejects NaN
		c.add("duration_seconds", "must be between 0 and 1e7")
	}
	if p.BitrateKbps < 0 || p.BitrateKbps > 10000 {
		c.add("bitrate_kbps", "must be between 0 and 10000")
	}
	return c.err(TypeAudioReady)
}

// Validate implements Payload.
func (p AudioFailed) Validate() error {
	var c checker
	c.video(p.VideoID, p.OwnerID, p.OwnerEmail, p.FileName)
	c.text("reason", p.Reason, MaxReasonLength, true)
	return c.err(TypeAudioFailed)
}

// Validate implements Payload.
func (p AudioProgress) Validate() error {
	var c checker
	c.id("video_id", p.VideoID)
	if p.Percent < 0 || p.Percent > 100 {
		c.add("percent", "must be between 0 and 100")
	}
	return c.err(TypeAudioProgress)
}

// Decode parses raw (an envelope's payload) strictly into p and validates
// it: the payload must be one JSON object whose fields have their JSON
// types; unknown fields are allowed, so publishers can add fields before
// consumers know them. Errors wrap ErrInvalidPayload and name the field.
func Decode[T any, P interface {
	*T
	Payload
}](raw []byte) (T, error) {
	var v T
	if len(bytes.TrimSpace(raw)) == 0 {
		return v, fmt.Errorf("%w: no payload", ErrInvalidPayload)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(P(&v)); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return v, fmt.Errorf("%w: field %s: want a JSON %s, got %s", ErrInvalidPayload, typeErr.Field, typeErr.Type, typeErr.Value)
		}
		return v, fmt.Errorf("%w: %v", ErrInvalidPayload, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return v, fmt.Errorf("%w: data after the JSON object", ErrInvalidPayload)
	}
	if err := P(&v).Validate(); err != nil {
		return v, err
	}
	return v, nil
}

// ValidEmail reports why addr is not a plain email address
// ("user@example.com": no display name, no angle brackets, no control
// characters), or nil.
func ValidEmail(addr string) error {
	switch {
	case addr == "":
		return errors.New("is required")
	case len(addr) > MaxEmailLength:
		return fmt.Errorf("is longer than %d bytes", MaxEmailLength)
	case hasControl(addr):
		return errors.New("contains control characters")
	}
	parsed, err := mail.ParseAddress(addr)
	if err != nil || parsed.Name != "" || parsed.Address != addr {
		return errors.New("is not an email address")
	}
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" || domain == "" || strings.ContainsAny(addr, " \"()<>,;:\\[]") {
		return errors.New("is not an email address")
	}
	return nil
}

// checker collects a payload's problems.
type checker struct{ problems []string }

func (c *checker) add(field, problem string) {
	c.problems = append(c.problems, field+" "+problem)
}

func (c *checker) err(typ string) error {
	if len(c.problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %s", ErrInvalidPayload, typ, strings.Join(c.problems, "; "))
}

// id checks a required identifier: printable, no spaces, bounded.
// video checks the fields every video event carries: whose video it is
// and what the user called it.
func (c *checker) video(videoID, ownerID, ownerEmail, fileName string) {
	c.id("video_id", videoID)
	c.id("owner_id", ownerID)
	c.email("owner_email", ownerEmail)
	c.text("file_name", fileName, MaxFileNameLength, true)
}

func (c *checker) id(field, v string) {
	switch {
	case v == "":
		c.add(field, "is required")
	case len(v) > MaxIDLength:
		c.add(field, fmt.Sprintf("is longer than %d bytes", MaxIDLength))
	case !utf8.ValidString(v) || strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0:
		c.add(field, "contains spaces or control characters")
	}
}

// text checks free text: valid UTF-8, bounded. Control characters are
// allowed (a file name may hold anything); consumers that put text in a
// header must strip them.
func (c *checker) text(field, v string, limit int, required bool) {
	switch {
	case v == "" && required:
		c.add(field, "is required")
	case len(v) > limit:
		c.add(field, fmt.Sprintf("is longer than %d bytes", limit))
	case !utf8.ValidString(v):
		c.add(field, "is not valid UTF-8")
	}
}

func (c *checker) email(field, v string) {
	if err := ValidEmail(v); err != nil {
		c.add(field, err.Error())
	}
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }) >= 0
}
