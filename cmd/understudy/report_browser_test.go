package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/understudy-ml/understudy/pkg/report"
)

// chromiumPath finds a Chromium or Chrome binary, or returns "".
func chromiumPath() string {
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser starts a fresh headless Chromium and returns a tab's context. With
// no browser installed the test is skipped, unless UNDERSTUDY_REQUIRE_BROWSER=1
// (CI sets it) makes that a failure.
func browser(tb testing.TB) context.Context {
	tb.Helper()
	path := chromiumPath()
	if path == "" {
		msg := "no Chromium found (looked for /usr/bin/chromium and chromium, chromium-browser, google-chrome on PATH); install it with `apt-get install chromium` to run the browser test"
		if os.Getenv("UNDERSTUDY_REQUIRE_BROWSER") == "1" {
			tb.Fatal(msg + ", or unset UNDERSTUDY_REQUIRE_BROWSER")
		}
		tb.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 1000),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	tb.Cleanup(cancel)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tb.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(alloc)
	tb.Cleanup(cancelTab)
	return tab
}

// consoleLog collects everything the page writes to the console: calls of
// the console API, uncaught exceptions and browser log entries such as
// failed loads and CSP violations.
type consoleLog struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

func watchConsole(ctx context.Context) *consoleLog {
	c := &consoleLog{}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
		}
	}()
	return c
}

// errors returns the errors and exceptions seen so far.
func (c *consoleLog) errors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		if m.Type == chromedp.ConsoleError || m.IsException() {
			out = append(out, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
		}
	}
	return out
}

type holdoutRow struct {
	Input [][]float64 `json:"input"`
	Label int         `json:"label"`
}

func readHoldout(tb testing.TB) []holdoutRow {
	tb.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", "iris-holdout.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var rows []holdoutRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r holdoutRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			tb.Fatalf("iris-holdout.jsonl line %d: %v", len(rows)+1, err)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return rows
}

// waitForReport polls /api/report until the shadow has compared and
// labelled every request, as the shadow runs and the store's writes are
// asynchronous.
func waitForReport(tb testing.TB, base, shadow string, n int64) (*report.Report, *report.ShadowReport) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		r := testRequest(tb, "GET", base+"/api/report?window=1h", nil)
		last = fmt.Sprintf("%d %.300s", r.Status, r.Body)
		if r.Status == 503 {
			tb.Fatalf("GET /api/report: %s; is the report wired into httpapi.Server in serve.go?", last)
		}
		if r.Status == 200 {
			var rep report.Report
			if err := json.Unmarshal(r.Body, &rep); err != nil {
				tb.Fatalf("/api/report: %v", err)
			}
			for i := range rep.Shadows {
				s := &rep.Shadows[i]
				if s.Name == shadow && s.Classification != nil && s.Classification.Pairs == n && s.Accuracy != nil && s.Accuracy.Labelled == n {
					return &rep, s
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("the report never showed %d labelled pairs for %s; last answer: %s", n, shadow, last)
	return nil, nil
}

// Ensure the report works in a real browser: after the 45 held-out iris rows
// and their labels go through the server, /report shows the same numbers as
// /api/report and its three charts with no console error, a disagreement
// leads to its request's page with the request's inputs, and the promote
// button promotes with the admin token typed into the page.
func TestReportInBrowser(t *testing.T) {
	tab := browser(t)
	// Requests are sent back to back, so on a small machine shedding would
	// drop shadow jobs and the 45 pairs the page is checked against.
	m := startServerWith(t, demoDir(t), nil, "--primary", "iris-v1", "--admin-token", "admin-secret", "--shed-when-busy=false")
	t.Cleanup(func() { m.Close() })
	base := m.URL()

	rows := readHoldout(t)
	if len(rows) != 45 {
		t.Fatalf("%d held-out rows, want 45", len(rows))
	}
	ids := map[string]holdoutRow{}
	for i, row := range rows {
		id := fmt.Sprintf("holdout-%02d", i)
		ids[id] = row
		body, _ := json.Marshal(map[string]any{"id": id, "input": row.Input})
		if r := testRequest(t, "POST", base+"/predict", body); r.Status != 200 {
			t.Fatalf("predict %s: %d %s", id, r.Status, r.Body)
		}
	}
	for i, row := range rows {
		fb := fmt.Sprintf(`{"id": "holdout-%02d", "label": %d}`, i, row.Label)
		if r := testRequest(t, "POST", base+"/feedback", []byte(fb)); r.Status != 200 {
			t.Fatalf("feedback %d: %d %s", i, r.Status, r.Body)
		}
	}
	rep, sh := waitForReport(t, base, "iris-v2", int64(len(rows)))

	console := watchConsole(tab)

	// The page shows the API's numbers, formatted.
	if err := chromedp.Do(tab,
		chromedp.EmulateViewport(1280, 1660),
		chromedp.Navigate(base+"/report"),
		chromedp.WaitVisible(chromedp.CSS(`article.shadow .verdict .badge`)),
	); err != nil {
		t.Fatalf("load /report: %v", err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	cl := sh.Classification
	wantBadge := "NOT READY"
	if sh.Verdict.Ready {
		wantBadge = "READY"
	}
	for _, c := range []struct{ sel, want string }{
		{`article.shadow .verdict .badge`, wantBadge},
		{`article.shadow .value.agreement`, strconv.FormatFloat(cl.Agreement, 'f', 4, 64)},
		{`article.shadow .wilson-low`, strconv.FormatFloat(cl.WilsonLow, 'f', 4, 64)},
		{`article.shadow .wilson-high`, strconv.FormatFloat(cl.WilsonHigh, 'f', 4, 64)},
		{`article.shadow .kappa`, strconv.FormatFloat(cl.Kappa, 'f', 4, 64)},
		{`.masthead .sub strong:last-of-type`, strconv.FormatInt(rep.Requests, 10)},
	} {
		if got := text(c.sel); got != c.want {
			t.Errorf("%s on the page = %q, want %q", c.sel, got, c.want)
		}
	}
	// Each chart is drawn at a readable size and holds its marks: dots of
	// agreement, the two latency lines, histogram bars.
	charts, err := chromedp.Run(tab, chromedp.Evaluate[[]int](`["#chart-agreement-0 circle.dot", "#chart-latency-0 polyline", "#chart-diff-0 rect.bar"].map(
		s => { const n = document.querySelectorAll(s); return n.length && n[0].ownerSVGElement.getBoundingClientRect().width > 200 ? n.length : 0; })`))
	if err != nil {
		t.Fatal(err)
	}
	if len(charts) != 3 || charts[0] == 0 || charts[1] != 2 || charts[2] == 0 {
		t.Errorf("charts (agreement dots, latency lines, histogram bars) = %v, want three drawn charts", charts)
	}

	shot, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.TempDir(), "report.png")
	if os.Getenv("UNDERSTUDY_UPDATE_SCREENSHOT") == "1" {
		// The copy in the repository shows the report in the README.
		path = filepath.Join("..", "..", "web", "static", "screenshot.png")
		if len(shot) > 300<<10 {
			t.Errorf("screenshot is %d KiB, want < 300 KiB for the repository", len(shot)>>10)
		}
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d KiB)", path, len(shot)>>10)

	// A disagreement leads to its request's page.
	id := text(`table.pairs a.request-link`)
	if err := chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`table.pairs a.request-link`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`h1.request-id`)),
	); err != nil {
		t.Fatalf("follow a disagreement: %v", err)
	}
	row, ok := ids[id]
	if shown := text(`h1.request-id`); !ok || shown != id {
		t.Fatalf("followed %q to the page of %q, want one of the held-out ids", id, shown)
	}
	var parts []string
	for _, v := range row.Input[0] {
		parts = append(parts, strconv.FormatFloat(float64(float32(v)), 'g', -1, 32))
	}
	if got, want := text(`table.tensors td.data`), "[["+strings.Join(parts, ", ")+"]]"; got != want {
		t.Errorf("inputs on the request page = %q, want %q", got, want)
	}

	// Promote with the token typed into the page: the first press arms
	// the button, the second sends.
	button := chromedp.CSS(`form.promote[data-model="iris-v2"] button`)
	if err := chromedp.Do(tab,
		chromedp.Navigate(base+"/report"),
		chromedp.WaitVisible(chromedp.CSS(`#admin-token`)),
		chromedp.SendKeys(chromedp.CSS(`#admin-token`), "admin-secret"),
		chromedp.Click(button, chromedp.NodeVisible),
		chromedp.Click(button, chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`form.promote[data-model="iris-v2"] output.good`)),
	); err != nil {
		t.Fatalf("promote: %v", err)
	}
	if got := text(`form.promote[data-model="iris-v2"] output`); !strings.Contains(got, "iris-v2@"+sh.Version+" is the primary now") {
		t.Errorf("promote result = %q", got)
	}
	var models struct {
		Models []struct {
			Name string `json:"name"`
			Role string `json:"role"`
		} `json:"models"`
	}
	json.Unmarshal(testRequest(t, "GET", base+"/models", nil).Body, &models)
	for _, mi := range models.Models {
		if mi.Role == "primary" && mi.Name != "iris-v2" {
			t.Errorf("primary after promoting is %s, want iris-v2", mi.Name)
		}
	}

	// Give late messages (a failed load, a CSP report) a moment to arrive.
	time.Sleep(200 * time.Millisecond)
	if errs := console.errors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
