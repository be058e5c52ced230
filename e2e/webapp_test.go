package e2e_test

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/audiomill/audiomill/e2e/browser"
	"github.com/audiomill/audiomill/e2e/stack"
	"github.com/audiomill/audiomill/platform/testenv"
)

// webStack runs auth, a gateway (the page and the session routes), the
// notifier (the verification email) and an edge of the test's own.
func webStack(tb testing.TB, withNotifier bool) *stack.Edge {
	tb.Helper()
	s := stack.New(tb)
	a := s.Start("auth", "BCRYPT_COST=10")
	authURL := "http://" + a.Addr
	if withNotifier {
		s.Start("notifier")
	}
	g := s.Start("gateway", "AUTH_URL="+authURL, "AUTH_JWKS_URL="+authURL+"/.well-known/jwks.json",
		"GATEWAY_LINK_KEY="+testenv.RandomHex(tb, 24))
	e := s.StartEdge()
	testenv.Eventually(tb, 15*time.Second, func() bool { return inUpstream(e, g.Addr) && inUpstream(e, a.Addr) },
		"the edge never routed to the stack's gateway and auth")
	return e
}

// newBrowser starts Chromium whose screenshot goes to var/test-artifacts
// (named after the test, and label when the test has several browsers).
func newBrowser(tb testing.TB, width, height int64, label ...string) *browser.Browser {
	tb.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	return browser.New(tb, browser.Options{Width: width, Height: height, ArtifactDir: filepath.Join(root, "var", "test-artifacts"),
		Label: strings.Join(label, "-")})
}

// openPage navigates to url and waits until the app is usable and knows
// whether a session is open (data-session "in" or "out").
func openPage(tb testing.TB, b *browser.Browser, url string) {
	tb.Helper()
	b.MustRun(30*time.Second, chromedp.Navigate(url))
	b.WaitJS(15*time.Second, `document.documentElement.dataset.ready === "1" && ["in","out"].includes(document.documentElement.dataset.session)`)
}

// pageClean: no CSP violation and no console error (exceptions included).
func pageClean(tb testing.TB, b *browser.Browser, when string) {
	tb.Helper()
	if v := b.CSPViolations(); len(v) != 0 {
		tb.Errorf("%s: CSP violations %+v", when, v)
	}
	if c := b.ConsoleErrors(); len(c) != 0 {
		tb.Errorf("%s: console errors %q", when, c)
	}
}

// noHorizontalScroll: the page fits the viewport's width.
func noHorizontalScroll(tb testing.TB, b *browser.Browser, when string) {
	tb.Helper()
	if over := browser.Eval[int](b, `document.documentElement.scrollWidth - document.documentElement.clientWidth`); over > 0 {
		tb.Errorf("%s: the page is %d px wider than the viewport", when, over)
	}
}

// The page through the edge: headers (the strict CSP exactly once, caching,
// gzip), the assets' versioned URLs, the JSON 404 for every other path, and
// in Chromium no CSP violation and no console error.
func TestWebAppLoadsUnderCSP(t *testing.T) {
	e := webStack(t, false)

	get := func(path string, gz bool) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, e.URL(path), nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r io.Reader = resp.Body
		if resp.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		b, _ := io.ReadAll(r)
		return resp, string(b)
	}
	resp, html := get("/", true)
	csp := resp.Header.Values("Content-Security-Policy")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		len(csp) != 1 || !strings.Contains(csp[0], "default-src 'none'") || !strings.Contains(csp[0], "script-src 'self'") ||
		!strings.Contains(csp[0], "frame-ancestors 'none'") || !strings.Contains(csp[0], "report-uri /api/v1/csp-reports") {
		t.Fatalf("GET / = %d %q CSP %q", resp.StatusCode, resp.Header.Get("Content-Type"), csp)
	}
	if resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("GET /: Cache-Control %q, Content-Encoding %q", resp.Header.Get("Cache-Control"), resp.Header.Get("Content-Encoding"))
	}
	if strings.Contains(html, "style=") || strings.Contains(html, "<script>") || regexp.MustCompile(`\son[a-z]+=`).MatchString(html) {
		t.Error("index.html holds inline style or script")
	}
	asset := regexp.MustCompile(`/app/[0-9a-f]{16}/main\.js`).FindString(html)
	if asset == "" {
		t.Fatalf("index.html names no versioned main.js:\n%s", html)
	}
	resp, js := get(asset, true)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" ||
		resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(js, "import") || resp.Header.Get("ETag") == "" {
		t.Errorf("GET %s = %d Cache-Control %q Content-Encoding %q ETag %q", asset, resp.StatusCode,
			resp.Header.Get("Cache-Control"), resp.Header.Get("Content-Encoding"), resp.Header.Get("ETag"))
	}
	// Another version's asset, and any other path: JSON 404s, as before.
	for _, p := range []string{"/app/0000000000000000/main.js", "/nope", "/index.html", "/app", "/verify/x"} {
		resp, body := get(p, false)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"not_found"`) {
			t.Errorf("GET %s = %d %s, want a JSON 404", p, resp.StatusCode, body)
		}
	}
	// The API's answers keep the edge's own policy.
	resp, _ = get("/api/v1/jobs", false)
	if got := resp.Header.Values("Content-Security-Policy"); len(got) != 1 || got[0] != "frame-ancestors 'none'" {
		t.Errorf("GET /api/v1/jobs: CSP %q", got)
	}

	b := newBrowser(t, 1280, 900)
	openPage(t, b, e.URL("/"))
	if s := browser.Eval[string](b, `document.documentElement.dataset.session`); s != "out" {
		t.Errorf("a first visit: session %q, want out", s)
	}
	if n := b.Count("#login-form input[name=email]") + b.Count("#signup-form input[name=password]"); n != 2 {
		t.Errorf("the forms' inputs: %d of 2", n)
	}
	pageClean(t, b, "first load")
}

// A person's way through the page: sign up, the email's link opened in the
// browser (the edge hands a browser's visit to the page, which confirms the
// token), log in, reload (the cookie restores the session; no token in web
// storage), log out (the refresh is refused then), Chinese, all on a 360 px
// wide screen without horizontal scrolling.
func TestWebAppAccount(t *testing.T) {
	e := webStack(t, true)
	b := newBrowser(t, 360, 780)
	openPage(t, b, e.URL("/"))
	noHorizontalScroll(t, b, "logged out")

	email := fmt.Sprintf("web-%d@example.com", time.Now().UnixNano())
	const password = "a web password 1"
	b.MustRun(20*time.Second,
		chromedp.SendKeys(chromedp.ID("signup-email"), email),
		chromedp.SendKeys(chromedp.ID("signup-password"), password),
		chromedp.Click(chromedp.CSS("#signup-form button[type=submit]")),
	)
	b.WaitJS(15*time.Second, `!document.getElementById('signup-done').hidden`)

	link := verificationPath(t, email)
	b.MustRun(30*time.Second, chromedp.Navigate(e.URL(link)))
	b.WaitJS(15*time.Second, `document.documentElement.dataset.ready === "1" && !document.getElementById('verify-result').hidden`)
	if got := browser.Eval[string](b, `document.getElementById('verify-result').dataset.i18n + ' ' + location.pathname + location.search`); got != "verified /" {
		t.Fatalf("after the link: %q, want verified at / (the token gone from the address)", got)
	}

	b.MustRun(20*time.Second,
		chromedp.SendKeys(chromedp.ID("login-email"), email),
		chromedp.SendKeys(chromedp.ID("login-password"), password),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
	)
	b.WaitJS(15*time.Second, `document.documentElement.dataset.session === "in"`)
	if got := browser.Eval[string](b, `document.getElementById('user-email').textContent`); got != email {
		t.Errorf("logged in as %q, want %q", got, email)
	}
	if !browser.Eval[bool](b, `document.getElementById('unverified').hidden && !document.getElementById('drop-zone').hidden && !document.getElementById('logout').hidden`) {
		t.Error("a verified user's page does not offer uploads and logout")
	}
	noHorizontalScroll(t, b, "logged in")

	// Reload: the HttpOnly cookie restores the session; no token anywhere
	// a script could read.
	openPage(t, b, e.URL("/"))
	if s := browser.Eval[string](b, `document.documentElement.dataset.session`); s != "in" {
		t.Fatalf("after a reload: session %q, want in", s)
	}
	storage := browser.Eval[string](b, `JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage), document.cookie])`)
	if strings.Contains(storage, "eyJ") || strings.Contains(storage, "audiomill_refresh") || strings.Contains(strings.ToLower(storage), "token") {
		t.Errorf("web storage or document.cookie holds a token: %s", storage)
	}

	// Chinese: the visible strings and <html lang> change, and stay after a reload.
	b.MustRun(10*time.Second, chromedp.SetValue(chromedp.ID("lang"), "zh"))
	browser.Eval[bool](b, `document.getElementById('lang').dispatchEvent(new Event('change')), true`)
	if got := browser.Eval[string](b, `document.documentElement.lang + ' ' + document.getElementById('logout').textContent`); got != "zh-CN 退出登录" {
		t.Errorf("in Chinese: %q", got)
	}
	noHorizontalScroll(t, b, "in Chinese")
	openPage(t, b, e.URL("/"))
	if got := browser.Eval[string](b, `document.documentElement.lang + ' ' + document.getElementById('upload-title').textContent`); got != "zh-CN 上传视频" {
		t.Errorf("Chinese after a reload: %q", got)
	}

	// Log out: the page says so, and the cookie no longer refreshes.
	b.MustRun(10*time.Second, chromedp.Click(chromedp.ID("logout")))
	b.WaitJS(15*time.Second, `document.documentElement.dataset.session === "out"`)
	st := browser.Eval[int](b, `fetch('/api/v1/session/refresh', {method: 'POST', headers: {'X-Audiomill-CSRF': '1'}}).then((r) => r.status)`)
	if st != http.StatusUnauthorized {
		t.Errorf("refresh after logout = %d, want 401", st)
	}
	openPage(t, b, e.URL("/"))
	if s := browser.Eval[string](b, `document.documentElement.dataset.session`); s != "out" {
		t.Errorf("after logout and a reload: session %q, want out", s)
	}
	pageClean(t, b, "end")
}
