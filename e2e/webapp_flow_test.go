package e2e_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/audiomill/audiomill/e2e/browser"
	"github.com/audiomill/audiomill/e2e/stack"
	"github.com/audiomill/audiomill/platform/testenv"
)

// browserLogin logs u in through the page's form, with the keyboard only:
// the address, Tab to the password, Enter.
func browserLogin(tb testing.TB, b *browser.Browser, u user) {
	tb.Helper()
	b.MustRun(20*time.Second,
		chromedp.Focus(chromedp.ID("login-email")),
		chromedp.KeyEvent(u.email),
		chromedp.KeyEvent(kb.Tab),
		chromedp.KeyEvent(u.password),
		chromedp.KeyEvent(kb.Enter),
	)
	b.WaitJS(15*time.Second, `document.documentElement.dataset.session === "in" && document.getElementById('jobs').dataset.loaded === "1"`)
}

// watchPage records, from now on, every value an upload's progress bar
// takes (window.__progress) and every status a job row shows
// (window.__statuses, "id status"), and marks the document so a reload
// would show (window.__mark).
const watchPage = `(() => {
  window.__mark = 1; window.__progress = []; window.__statuses = [];
  new MutationObserver((changes) => {
    for (const c of changes) {
      const el = c.target;
      if (el.matches('#uploads progress') && c.attributeName === 'value') window.__progress.push(Number(el.value));
      if (el.matches('li.job') && c.attributeName === 'data-status') window.__statuses.push(el.dataset.jobId + ' ' + el.dataset.status);
    }
  }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['value', 'data-status']});
  return true;
})()`

// writeFile writes b to a file named name in a directory of tb's own.
func writeFile(tb testing.TB, name string, b []byte) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// uploadedJob picks path in the page's file input and waits until the
// upload of name completed; it returns the job the gateway made of it.
func uploadedJob(tb testing.TB, b *browser.Browser, path, name string, within time.Duration) string {
	tb.Helper()
	b.MustRun(10*time.Second, chromedp.SetUploadFiles(chromedp.ID("file-input"), []string{path}))
	row := fmt.Sprintf(`document.querySelector('#uploads li.upload[data-name=%q]')`, name)
	b.WaitJS(within, row+`?.dataset.jobId && !`+row+`.querySelector('button.cancel')`)
	return browser.Eval[string](b, row+`.dataset.jobId`)
}

// A person's whole way through the page on the running stack: log in
// (keyboard only), upload a ~10 s video over a slow link (the progress bar
// moves, with bytes, speed and time left), the job's row goes from queued
// or converting to done by itself (server-sent events, no reload) and the
// live region announces it, the MP3 downloads through the page's link and
// ffprobe reads it, the player loads it, one email arrives; a second
// person's page shows none of it and the API refuses them the job; the
// first deletes the job from the page.
func TestWebAppConvertsAVideo(t *testing.T) {
	edge := edgeURL(t)
	alice := signUpUser(t, edge)
	clip := video(t, 10, true)
	name := fmt.Sprintf("clip-%d.mp4", time.Now().UnixNano())
	path := writeFile(t, name, clip)

	b := newBrowser(t, 1280, 900)
	openPage(t, b, edge+"/")
	browserLogin(t, b, alice)
	browser.Eval[bool](b, watchPage)
	// A slow link: the upload takes about two seconds.
	b.ThrottleUploads(float64(len(clip)) / 2)
	job := uploadedJob(t, b, path, name, 60*time.Second)
	b.ThrottleUploads(0)

	progress := browser.Eval[[]float64](b, `window.__progress`)
	var between int
	for i, v := range progress {
		if i > 0 && v < progress[i-1] {
			t.Errorf("the progress bar went back: %v", progress)
			break
		}
		if v > 0 && v < float64(len(clip)) {
			between++
		}
	}
	if between < 2 || progress[len(progress)-1] != float64(len(clip)) {
		t.Errorf("the progress bar did not move through the upload to its end (%d bytes): %v", len(clip), progress)
	}
	stats := browser.Eval[[]string](b, `[...document.querySelectorAll('#uploads li.upload .stats span')].map((s) => s.textContent)`)
	if len(stats) != 4 || !strings.Contains(stats[0], "(100%)") || stats[1] == "" || stats[2] == "" {
		t.Errorf("the upload's bytes, speed, time left and state: %q", stats)
	}

	// The job's row reaches done without a reload.
	jobRow := fmt.Sprintf(`document.querySelector('li.job[data-job-id=%q]')`, job)
	b.WaitJS(120*time.Second, jobRow+`?.dataset.status === "done" && `+jobRow+`.querySelector('a.job-download')?.href.includes('sig=')`)
	if browser.Eval[int](b, `window.__mark || 0`) != 1 {
		t.Fatal("the page was reloaded")
	}
	// The live region told a screen reader.
	b.WaitJS(5*time.Second, fmt.Sprintf(`document.getElementById('announcer').textContent === %q`, name+": Done"))
	statuses := browser.Eval[[]string](b, `window.__statuses`)
	if len(statuses) < 2 || statuses[0] == job+" done" || statuses[len(statuses)-1] != job+" done" {
		t.Errorf("the row's statuses %q: want an earlier one, then done, as they happened", statuses)
	}

	// Download through the page's link; ffprobe reads an MP3 of ~10 s.
	dir := t.TempDir()
	b.SaveDownloads(dir)
	b.MustRun(10*time.Second, chromedp.Click(chromedp.CSS(fmt.Sprintf(`li.job[data-job-id=%q] a.job-download`, job))))
	var mp3 string
	testenv.Eventually(t, 30*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "*.mp3"))
		if len(files) == 1 {
			mp3 = files[0]
		}
		return mp3 != ""
	}, "no MP3 was downloaded into %s", dir)
	probe, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=format_name,duration", "-of", "json", mp3).Output()
	var info struct {
		Format struct {
			Name     string `json:"format_name"`
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err != nil || json.Unmarshal(probe, &info) != nil {
		t.Fatalf("ffprobe %s: %v %s", mp3, err, probe)
	}
	if d, _ := strconv.ParseFloat(info.Format.Duration, 64); info.Format.Name != "mp3" || d < 9 || d > 11 {
		t.Errorf("the download is %s of %ss, want an MP3 of ~10 s", info.Format.Name, info.Format.Duration)
	}
	// The link names the file and serves ranges; the page's player loads it.
	href := browser.Eval[string](b, jobRow+`.querySelector('a.job-download').href`)
	st, body, hdr := call(t, http.MethodGet, href, "", nil, "Range", "bytes=0-99")
	if st != http.StatusPartialContent || len(body) != 100 || !strings.HasPrefix(hdr.Get("Content-Disposition"), "attachment") ||
		!strings.Contains(hdr.Get("Content-Disposition"), ".mp3") {
		t.Errorf("GET the link with a Range = %d, %d bytes, Content-Disposition %q", st, len(body), hdr.Get("Content-Disposition"))
	}
	played := browser.Eval[float64](b, `new Promise((resolve) => {
	  const a = `+jobRow+`.querySelector('audio');
	  a.addEventListener('loadedmetadata', () => resolve(a.duration), {once: true});
	  a.addEventListener('error', () => resolve(-1), {once: true});
	  a.preload = 'metadata'; a.load();
	})`)
	if played < 9 || played > 11 {
		t.Errorf("the page's player: duration %v, want ~10 s", played)
	}
	if mails := emailsTo(t, alice.email, 1); len(mails) != 1 {
		t.Errorf("emails to %s: %d, want 1", alice.email, len(mails))
	}

	// Another person sees nothing of it.
	bob := signUpUser(t, edge)
	b2 := newBrowser(t, 390, 844, "second-user")
	openPage(t, b2, edge+"/")
	browserLogin(t, b2, bob)
	if n := b2.Count("li.job"); n != 0 {
		t.Errorf("the second user's page lists %d jobs", n)
	}
	if st, b, _ := call(t, http.MethodGet, edge+"/api/v1/jobs/"+job, bob.token, nil); st != http.StatusNotFound {
		t.Errorf("the second user GET the job = %d %s, want 404", st, b)
	}
	if st, b, _ := call(t, http.MethodPost, edge+"/api/v1/jobs/"+job+"/link", bob.token, nil); st != http.StatusNotFound {
		t.Errorf("the second user POST the job's link = %d %s, want 404", st, b)
	}
	pageClean(t, b2, "the second user")

	// Delete from the page: the row goes, and so does the job.
	b.MustRun(10*time.Second, chromedp.Click(chromedp.CSS(fmt.Sprintf(`li.job[data-job-id=%q] button.job-delete`, job))))
	b.WaitJS(15*time.Second, `!`+jobRow)
	if st, body, _ := call(t, http.MethodGet, edge+"/api/v1/jobs/"+job, alice.token, nil); st != http.StatusNotFound {
		t.Errorf("GET the deleted job = %d %s, want 404", st, body)
	}
	pageClean(t, b, "end")
}

// uploadStack is auth, filestorage on the disk backend (a directory the
// test reads), a gateway (its own database and broker virtual host: no
// converter takes its jobs) and an edge of the test's own.
func uploadStack(t *testing.T) (*stack.Edge, string) {
	t.Helper()
	s := stack.New(t)
	secret := testenv.RandomHex(t, 16)
	a := s.Start("auth", "BCRYPT_COST=10", "SERVICE_CLIENTS=gateway:"+secret+":"+testenv.ServiceAccountScope(t, "gateway"))
	authURL := "http://" + a.Addr
	jwks := "AUTH_JWKS_URL=" + authURL + "/.well-known/jwks.json"
	dir := t.TempDir()
	f := s.Start("filestorage", "FILESTORAGE_BACKEND=disk", "FILESTORAGE_DIR="+dir, jwks)
	g := s.Start("gateway", "AUTH_URL="+authURL, jwks, "SERVICE_CLIENT_SECRET="+secret,
		"FILESTORAGE_URL=http://"+f.Addr, "AMQP_URL="+testenv.VHost(t), "GATEWAY_LINK_KEY="+testenv.RandomHex(t, 24))
	e := s.StartEdge()
	testenv.Eventually(t, 15*time.Second, func() bool { return inUpstream(e, g.Addr) && inUpstream(e, a.Addr) },
		"the edge never routed to the stack's gateway and auth")
	return e, dir
}

// resume is a resumed upload's set-up: uploadStack, a proxy of the test's
// own in front of its edge (the page is opened through it), a verified user
// logged in, and a 64 MiB file of random bytes.
type resume struct {
	b               *browser.Browser
	proxy           *testenv.Proxy
	page, dir, name string
	path            string
	data            []byte
	u               user
}

func startResume(t *testing.T, prefix string) resume {
	t.Helper()
	e, dir := uploadStack(t)
	proxy := testenv.StartProxy(t, strings.TrimPrefix(e.URL(""), "http://"))
	r := resume{proxy: proxy, page: "http://" + proxy.Addr, dir: dir, u: signUpUser(t, e.URL("")),
		name: fmt.Sprintf("%s-%d.mp4", prefix, time.Now().UnixNano())}
	r.data, r.path = randomFile(t, r.name, 64<<20)
	r.b = newBrowser(t, 1280, 900)
	openPage(t, r.b, r.page+"/")
	browserLogin(t, r.b, r.u)
	return r
}

// A 64 MiB upload from the page whose connection drops halfway (a proxy
// the test controls, between the browser and the edge, closes every
// connection after 32 MiB) resumes where the gateway stands: the browser
// sends well under one more copy, and the stored video holds exactly the
// file's bytes; its job is listed.
func TestWebAppResumesAfterADroppedConnection(t *testing.T) {
	r := startResume(t, "big")
	b, proxy, data, name, path, u := r.b, r.proxy, r.data, r.name, r.path, r.u
	browser.Eval[bool](b, watchPage)
	start := proxy.Sent()
	dropped := proxy.DropAfter(int64(len(data)) / 2)
	job := uploadedJob(t, b, path, name, 120*time.Second)
	select {
	case <-dropped:
	default:
		t.Fatal("the proxy never dropped the connections")
	}
	sent := proxy.Sent() - start
	if sent < int64(len(data)) || sent > int64(len(data))+12<<20 {
		t.Errorf("the browser sent %d bytes for %d: it did not resume where it stopped", sent, len(data))
	}
	progress := browser.Eval[[]float64](b, `window.__progress`)
	if len(progress) == 0 || progress[len(progress)-1] != float64(len(data)) {
		t.Errorf("the progress bar ends at %v, want %d", progress[len(progress)-1:], len(data))
	}

	t.Logf("%d bytes sent through the proxy for a %d-byte upload dropped at half", sent, len(data))
	checkStored(t, r.dir, u, job, data)
	b.WaitJS(15*time.Second, fmt.Sprintf(`document.querySelector('li.job[data-job-id=%q]')?.dataset.status === "queued"`, job))
	pageClean(t, b, "end")
}

// randomFile writes n random bytes to a file named name and returns them
// and its path.
func randomFile(t *testing.T, name string, n int) ([]byte, string) {
	t.Helper()
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	return data, writeFile(t, name, data)
}

// checkStored: the video of u's job in the disk backend's directory holds
// exactly data.
func checkStored(t *testing.T, dir string, u user, job string, data []byte) {
	t.Helper()
	stored, err := os.ReadFile(filepath.Join(dir, "videos", subjectOf(t, u.token), job))
	if err != nil {
		t.Fatalf("the stored video: %v", err)
	}
	if !bytes.Equal(stored, data) {
		t.Fatalf("the stored video (%d bytes) is not the file (%d bytes)", len(stored), len(data))
	}
}

// An upload whose tab is closed at about a third goes on, when the page is
// opened again and the same file chosen, from where the gateway stands
// (tus-js-client keeps the upload's URL in localStorage): the browser
// sends well under two copies in all, and the stored video is the file.
func TestWebAppResumesAfterTheTabCloses(t *testing.T) {
	r := startResume(t, "tab")
	b, proxy, data, name, path, u, page := r.b, r.proxy, r.data, r.name, r.path, r.u, r.page
	b.ThrottleUploads(16 << 20) // about 4 s for the whole file
	start := proxy.Sent()
	b.MustRun(10*time.Second, chromedp.SetUploadFiles(chromedp.ID("file-input"), []string{path}))
	b.WaitJS(30*time.Second, `(() => { const p = document.querySelector('#uploads progress'); return p && p.value / p.max > 0.3; })()`)
	b.MustRun(10*time.Second, chromedp.Navigate("about:blank")) // the tab goes, mid-upload
	b.ThrottleUploads(0)
	cut := proxy.Sent() - start
	if cut >= int64(len(data)) {
		t.Fatalf("the whole file (%d bytes) was sent before the tab closed", cut)
	}

	openPage(t, b, page+"/")
	b.WaitJS(15*time.Second, `document.documentElement.dataset.session === "in"`)
	job := uploadedJob(t, b, path, name, 120*time.Second)
	sent := proxy.Sent() - start
	if sent > int64(len(data))+cut/2+12<<20 {
		t.Errorf("the browser sent %d bytes for %d (%d before the tab closed): it did not resume", sent, len(data), cut)
	}
	t.Logf("%d bytes sent in all for a %d-byte upload whose tab closed after %d", sent, len(data), cut)
	checkStored(t, r.dir, u, job, data)
	pageClean(t, b, "end")
}

// Several files at once, dropped on the page (a drop event carrying them,
// as a person's drag does): each gets its own row; the small one completes
// and becomes a job, the large one is cancelled half-way, its row goes and
// the server keeps nothing of it (tus DELETE): one job, one stored video.
func TestWebAppDropsSeveralAndCancelsOne(t *testing.T) {
	r := startResume(t, "drop")
	b, u := r.b, r.u
	b.ThrottleUploads(8 << 20) // the large one takes about 8 s
	names := browser.Eval[[]string](b, fmt.Sprintf(`(() => {
	  const dt = new DataTransfer();
	  dt.items.add(new File([new Uint8Array(256 * 1024).fill(7)], 'small-%[1]d.mp4', {type: 'video/mp4'}));
	  dt.items.add(new File([new Uint8Array(64 << 20).fill(9)], 'large-%[1]d.mp4', {type: 'video/mp4'}));
	  const zone = document.getElementById('drop-zone');
	  zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
	  zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
	  return [...dt.files].map((f) => f.name);
	})()`, time.Now().UnixNano()))
	small := fmt.Sprintf(`document.querySelector('#uploads li.upload[data-name=%q]')`, names[0])
	large := fmt.Sprintf(`document.querySelector('#uploads li.upload[data-name=%q]')`, names[1])
	b.WaitJS(30*time.Second, small+`?.dataset.jobId && `+large+` !== null`)
	job := browser.Eval[string](b, small+`.dataset.jobId`)
	b.WaitJS(30*time.Second, `(() => { const p = `+large+`?.querySelector('progress'); return p && p.value / p.max > 0.2; })()`)
	b.MustRun(10*time.Second, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#uploads li.upload[data-name=%q] button.cancel`, names[1]))))
	b.WaitJS(15*time.Second, large+` === null`)
	b.ThrottleUploads(0)

	b.WaitJS(15*time.Second, fmt.Sprintf(`document.querySelectorAll('li.job').length === 1 && document.querySelector('li.job[data-job-id=%q]') !== null`, job))
	st, body, _ := call(t, http.MethodGet, r.page+"/api/v1/jobs", u.token, nil)
	var list struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	if st != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Jobs) != 1 || list.Jobs[0].ID != job {
		t.Errorf("the user's jobs = %d %s, want only %s", st, body, job)
	}
	// filestorage keeps the small one's video and nothing of the other.
	stored, _ := filepath.Glob(filepath.Join(r.dir, "videos", subjectOf(t, u.token), "*"))
	if len(stored) != 1 || filepath.Base(stored[0]) != job {
		t.Errorf("stored videos %v, want only the job's", stored)
	}
	pageClean(t, b, "end")
}
