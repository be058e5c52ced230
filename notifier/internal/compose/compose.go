// Package compose renders the notifier's emails from audio.ready,
// audio.failed, account.verify and account.exists events: a subject, a plain-text and an HTML body (html/template
// escapes every user string), in English or, when the owner's locale says
// so, Chinese.
package compose

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"math"
	"net/url"
	"strings"
	texttemplate "text/template"

	"github.com/audiomill/audiomill/platform/events"
)

//go:embed templates
var files embed.FS

// Languages the emails are written in; English is the default.
const (
	English = "en"
	Chinese = "zh"
)

// Kinds of email, one per event.
const (
	kindReady  = "ready"
	kindFailed = "failed"
	kindVerify = "verify"
	kindExists = "exists"
)

// Email is a rendered message.
type Email struct {
	// Subject is one line, but may still hold characters of the user's
	// strings: the mailer makes it header-safe.
	Subject string
	Text    string
	HTML    string
	// Language is the language it is written in (English or Chinese).
	Language string
}

// ReadyData is what the audio.ready templates see.
type ReadyData struct {
	JobID, AudioID, FileName string
	// Link is ${PUBLIC_URL}/api/v1/jobs/{job_id}/audio.
	Link string
	// SeedLink is ${PUBLIC_URL}/download?fid={audio_id}, for the seed clients.
	SeedLink    string
	Size        string // human-readable, e.g. "3.4 MiB"
	Duration    string // e.g. "3:25" or "1:02:03"
	BitrateKbps int
}

// FailedData is what the audio.failed templates see.
type FailedData struct {
	JobID, FileName, Reason string
	Retryable               bool
	// UploadURL is where the user can upload again (PUBLIC_URL).
	UploadURL string
}

// VerifyData is what the account.verify templates see.
type VerifyData struct {
	// Link is ${PUBLIC_URL}/api/v1/verify?token=….
	Link string
	// Expires is when the link stops working (UTC, "2006-01-02 15:04 UTC").
	Expires string
}

// ExistsData is what the account.exists templates see.
type ExistsData struct {
	// LoginURL is PUBLIC_URL.
	LoginURL string
}

type set struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

// Composer renders emails. It is safe for concurrent use.
type Composer struct {
	publicURL string
	sets      map[string]set // by kind + "." + language
}

// New parses the templates; publicURL is PUBLIC_URL (a trailing slash is dropped).
func New(publicURL string) (*Composer, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("public url %q: want an absolute http(s) URL", publicURL)
	}
	c := &Composer{publicURL: strings.TrimRight(publicURL, "/"), sets: make(map[string]set)}
	for _, kind := range []string{kindReady, kindFailed, kindVerify, kindExists} {
		for _, lang := range []string{English, Chinese} {
			name := kind + "." + lang
			subject, err := texttemplate.New(name+".subject").Option("missingkey=error").ParseFS(files, "templates/"+name+".subject")
			if err != nil {
				return nil, fmt.Errorf("template %s.subject: %w", name, err)
			}
			text, err := texttemplate.New(name+".txt").Option("missingkey=error").ParseFS(files, "templates/"+name+".txt")
			if err != nil {
				return nil, fmt.Errorf("template %s.txt: %w", name, err)
			}
			html, err := htmltemplate.New(name+".html").Option("missingkey=error").ParseFS(files, "templates/"+name+".html")
			if err != nil {
				return nil, fmt.Errorf("template %s.html: %w", name, err)
			}
			c.sets[name] = set{subject, text, html}
		}
	}
	return c, nil
}

// Language maps an owner's locale to the language of their email:
// Chinese for "zh" and its variants ("zh-CN", "zh_TW", "zh-Hans"),
// English for anything else, including an empty or malformed locale.
func Language(locale string) string {
	l := strings.ToLower(strings.TrimSpace(locale))
	if l == Chinese || strings.HasPrefix(l, "zh-") || strings.HasPrefix(l, "zh_") {
		return Chinese
	}
	return English
}

// JobAudioURL is the download link of a job's MP3.
func (c *Composer) JobAudioURL(jobID string) string {
	return c.publicURL + "/api/v1/jobs/" + url.PathEscape(jobID) + "/audio"
}

// Ready renders the email of an audio.ready event of job jobID.
func (c *Composer) Ready(jobID string, p events.AudioReady) (Email, error) {
	return c.render(kindReady, Language(p.Locale), ReadyData{
		JobID:       jobID,
		AudioID:     p.AudioID,
		FileName:    p.FileName,
		Link:        c.JobAudioURL(jobID),
		SeedLink:    c.publicURL + "/download?fid=" + url.QueryEscape(p.AudioID),
		Size:        HumanSize(p.Size),
		Duration:    HumanDuration(p.DurationSeconds),
		BitrateKbps: p.BitrateKbps,
	})
}

// Failed renders the email of an audio.failed event of job jobID.
func (c *Composer) Failed(jobID string, p events.AudioFailed) (Email, error) {
	return c.render(kindFailed, Language(p.Locale), FailedData{
		JobID:     jobID,
		FileName:  p.FileName,
		Reason:    p.Reason,
		Retryable: p.Retryable,
		UploadURL: c.publicURL + "/",
	})
}

// Verify renders the email of an account.verify event: the link that
// verifies the address.
func (c *Composer) Verify(p events.AccountVerify) (Email, error) {
	return c.render(kindVerify, Language(p.Locale), VerifyData{
		Link:    c.publicURL + "/api/v1/verify?token=" + url.QueryEscape(p.Token),
		Expires: p.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"),
	})
}

// Exists renders the email of an account.exists event: someone tried to
// sign up with the address of an existing account.
func (c *Composer) Exists(p events.AccountExists) (Email, error) {
	return c.render(kindExists, Language(p.Locale), ExistsData{LoginURL: c.publicURL + "/"})
}

func (c *Composer) render(kind, lang string, data any) (Email, error) {
	s, ok := c.sets[kind+"."+lang]
	if !ok {
		return Email{}, fmt.Errorf("no templates for %s in %s", kind, lang)
	}
	var subject, text, html bytes.Buffer
	err := errors.Join(
		s.subject.Execute(&subject, data),
		s.text.Execute(&text, data),
		s.html.Execute(&html, data),
	)
	if err != nil {
		return Email{}, fmt.Errorf("render %s email (%s): %w", kind, lang, err)
	}
	return Email{
		Subject:  strings.TrimSpace(subject.String()),
		Text:     text.String(),
		HTML:     html.String(),
		Language: lang,
	}, nil
}

// HumanSize writes n bytes with a binary unit: "812 B", "3.4 MiB", "1.2 GiB".
func HumanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// HumanDuration writes seconds as m:ss or h:mm:ss, rounded to the second.
func HumanDuration(seconds float64) string {
	if !(seconds >= 0) || math.IsInf(seconds, 0) {
		return "?"
	}
	s := int64(math.Round(seconds))
	h, m, sec := s/3600, s/60%60, s%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, sec)
	}
	return fmt.Sprintf("%d:%02d", m, sec)
}
