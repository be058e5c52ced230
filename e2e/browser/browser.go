// Package browser drives Debian's headless Chromium for the e2e tests
// (chromedp): a browser of the test's own (a temporary profile), the page's
// console errors, uncaught exceptions and Content-Security-Policy violations
// collected, the bytes it fetched, and a full-page screenshot of its final
// state saved at the end of each test under var/test-artifacts/<test>.png.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// cspListener runs in every document before the page's own scripts (CDP's
// addScriptToEvaluateOnNewDocument, outside the page's CSP): each
// securitypolicyviolation event lands in window.__cspViolations.
const cspListener = `window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push({directive: e.effectiveDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber, sample: e.sample});
});`

// Options shape the browser.
type Options struct {
	// Width and Height of the viewport (1280×900 when zero).
	Width, Height int64
	// ArtifactDir holds the screenshots (the repository's var/test-artifacts).
	ArtifactDir string
	// Label tells apart the screenshots of a test's browsers:
	// <test>-<label>.png (<test>.png when empty).
	Label string
}

// Browser is one headless Chromium with one tab.
type Browser struct {
	tb     testing.TB
	Ctx    context.Context
	opts   Options
	cancel func()

	mu      sync.Mutex
	console []string
	network []string
	encoded float64 // bytes received, as sent (compressed), since ResetBytes
}

// ExecPath finds Chromium, or says how to install it.
func ExecPath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("browser: no chromium on PATH: `make install` (scripts/install.sh) installs Debian's chromium")
}

// New starts Chromium for tb; it is stopped at cleanup, after the
// screenshot of the page's last state is saved.
func New(tb testing.TB, opts Options) *Browser {
	tb.Helper()
	path, err := ExecPath()
	if err != nil {
		tb.Fatal(err)
	}
	if opts.Width == 0 {
		opts.Width, opts.Height = 1280, 900
	}
	allocOpts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.WindowSize(int(opts.Width), int(opts.Height)),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), allocOpts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &Browser{tb: tb, Ctx: ctx, opts: opts, cancel: func() { cancel(); acancel() }}
	// The first call starts the browser and lives as long as ctx: no timeout.
	if err := chromedp.Listen(ctx, b.listen); err != nil {
		b.cancel()
		tb.Fatalf("browser: start chromium (%s): %v", path, err)
	}
	err = chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
				return err
			}
			if _, err := cdp.Call(ctx, t, log.Enable, cdp.Empty{}); err != nil {
				return err
			}
			if _, err := cdp.Call(ctx, t, runtime.Enable, cdp.Empty{}); err != nil {
				return err
			}
			_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener})
			return err
		}),
		chromedp.EmulateViewport(opts.Width, opts.Height),
	)
	if err != nil {
		b.cancel()
		tb.Fatalf("browser: set up chromium (%s): %v", path, err)
	}
	tb.Cleanup(func() {
		b.screenshot()
		b.cancel()
	})
	return b
}

func (b *Browser) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, strings.Trim(string(a.Value), `"`)+a.Description)
			}
			b.console = append(b.console, "console."+string(e.Type)+": "+strings.Join(parts, " "))
		}
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.console = append(b.console, fmt.Sprintf("exception: %s (%s:%d)", msg, d.URL, d.LineNumber))
	case *log.EventEntryAdded:
		if e.Entry.Level != log.EntryLevelError {
			return
		}
		// A refused request (the API's 401 for a page without a session)
		// is the browser's network log, not the page's error: kept apart.
		if e.Entry.Source == log.EntrySourceNetwork {
			b.network = append(b.network, e.Entry.Text+" "+e.Entry.URL)
			return
		}
		b.console = append(b.console, fmt.Sprintf("log %s: %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL))
	case *network.EventLoadingFinished:
		b.encoded += e.EncodedDataLength
	}
}

// Run runs actions with a bound of timeout.
func (b *Browser) Run(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// MustRun is Run, failing the test on an error (with the console so far).
func (b *Browser) MustRun(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.tb.Helper()
	if err := b.Run(timeout, actions...); err != nil {
		b.fail(err)
	}
}

func (b *Browser) fail(err error) {
	b.tb.Helper()
	b.tb.Fatalf("browser: %v\nconsole: %q\nnetwork: %q", err, b.ConsoleErrors(), b.NetworkErrors())
}

// Eval evaluates expr in b's page (awaiting a promise) and returns its value.
func Eval[T any](b *Browser, expr string) T {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.fail(fmt.Errorf("evaluate %s: %w", expr, err))
	}
	return v
}

// WaitJS waits until expr is true in the page.
func (b *Browser) WaitJS(timeout time.Duration, expr string) {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		b.fail(fmt.Errorf("waiting for %s: %w", expr, err))
	}
}

// ConsoleErrors are the page's console errors, uncaught exceptions and
// non-network error log entries so far.
func (b *Browser) ConsoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// NetworkErrors are the requests the browser logged as failed (4xx/5xx).
func (b *Browser) NetworkErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.network...)
}

// Violation is one securitypolicyviolation event of the page.
type Violation struct {
	Directive, Blocked, Source, Sample string
	Line                               int
}

// CSPViolations are the page's CSP violations so far (of the current document).
func (b *Browser) CSPViolations() []Violation {
	b.tb.Helper()
	return Eval[[]Violation](b, `window.__cspViolations || []`)
}

// ResetBytes zeroes the byte count.
func (b *Browser) ResetBytes() {
	b.mu.Lock()
	b.encoded = 0
	b.mu.Unlock()
}

// Bytes returns the bytes received as sent (encoded, so compressed bytes)
// since ResetBytes.
func (b *Browser) Bytes() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.encoded
}

// ClearCache empties the browser's HTTP cache (a first visit).
func (b *Browser) ClearCache() {
	b.tb.Helper()
	b.MustRun(10*time.Second, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.ClearBrowserCache, cdp.Empty{})
		return err
	}))
}

// ThrottleUploads caps what the page sends at bytesPerSecond (a slow link,
// so an upload's progress can be watched); 0 lifts the cap.
func (b *Browser) ThrottleUploads(bytesPerSecond float64) {
	b.tb.Helper()
	up := bytesPerSecond
	if up <= 0 {
		up = -1
	}
	b.MustRun(10*time.Second, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
			MatchedNetworkConditions: []*network.Conditions{{DownloadThroughput: -1, UploadThroughput: up}},
		})
		return err
	}))
}

// SaveDownloads makes the browser save what the page downloads into dir,
// under the names the server gives (Content-Disposition).
func (b *Browser) SaveDownloads(dir string) {
	b.tb.Helper()
	b.MustRun(10*time.Second, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := cdp.Call(ctx, chromedp.FromContext(ctx).Browser, cdpbrowser.SetDownloadBehavior,
			cdpbrowser.SetDownloadBehaviorParams{Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir})
		return err
	}))
}

// screenshot saves a full-page PNG of the page as <ArtifactDir>/<test>.png.
func (b *Browser) screenshot() {
	if b.opts.ArtifactDir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.Ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.tb.Logf("browser: screenshot: %v", err)
		return
	}
	name := b.tb.Name()
	if b.opts.Label != "" {
		name += "-" + b.opts.Label
	}
	name = strings.NewReplacer("/", "_", " ", "_").Replace(name) + ".png"
	if err := os.MkdirAll(b.opts.ArtifactDir, 0o755); err != nil {
		b.tb.Logf("browser: %v", err)
		return
	}
	p := filepath.Join(b.opts.ArtifactDir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.tb.Logf("browser: %v", err)
		return
	}
	b.tb.Logf("browser: screenshot %s", p)
}

// Count counts the elements matching the CSS selector sel.
func (b *Browser) Count(sel string) int {
	b.tb.Helper()
	return Eval[int](b, fmt.Sprintf("document.querySelectorAll(%q).length", sel))
}
