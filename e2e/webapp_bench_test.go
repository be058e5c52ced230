package e2e_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/audiomill/audiomill/e2e/browser"
)

// Targets of the page's first load (issue 19).
const (
	firstLoadBytesTarget = 150 * 1000
	firstLoadTTITarget   = 300 * time.Millisecond
)

// BenchmarkWebAppFirstLoad loads / through the edge in headless Chromium
// with an empty cache, several times, and prints the medians of the bytes
// transferred (encoded, as on the wire: CDP's encodedDataLength, so gzip
// counts) and of the time to interactive (from the navigation's start until
// the app marks itself ready, <html data-ready>), each beside its target.
func BenchmarkWebAppFirstLoad(b *testing.B) {
	e := webStack(b, false)
	br := newBrowser(b, 1280, 900)
	const loads = 9
	var bytes, tti []float64
	for range loads {
		br.MustRun(10*time.Second, chromedp.Navigate("about:blank"))
		br.ClearCache()
		br.ResetBytes()
		openPage(b, br, e.URL("/"))
		ms, _ := strconv.ParseFloat(browser.Eval[string](br, `document.documentElement.dataset.readyMs`), 64)
		n := br.Bytes()
		bytes = append(bytes, n)
		tti = append(tti, ms)
	}
	for b.Loop() {
		// The figures are the loads above; the loop only satisfies the harness.
	}
	median := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	mb, mt := median(bytes), median(tti)
	b.ReportMetric(mb/1000, "first-load-KB")
	b.ReportMetric(mb/firstLoadBytesTarget, "×-150KB-target")
	b.ReportMetric(mt, "tti-ms")
	b.ReportMetric(mt/float64(firstLoadTTITarget.Milliseconds()), "×-300ms-target")
	b.Logf("first load over %d loads: bytes %v, time to interactive (ms) %v", loads, bytes, tti)
}
