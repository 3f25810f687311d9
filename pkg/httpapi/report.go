package httpapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/understudy"
	"github.com/understudy-ml/understudy/web"
)

// The report is public unless Server.ReportToken is set. Then the report
// pages and /api/* want the token, given either
//
//   - as Authorization: Bearer <token> (scripts, curl), or
//   - as the HttpOnly cookie understudy_report, which a browser gets by
//     opening any report page once with ?token=<token> (the server sets the
//     cookie and redirects to the page without the token, so the token stays
//     out of the address bar and of links), or by typing the token into the
//     form that a page shows without it (POST /report/login).
//
// The cookie holds a hash of the token, never the token. /static/ stays
// public: it holds no data.
const reportCookie = "understudy_report"

// defaultPairsLimit and maxPairsLimit bound GET /api/pairs.
const (
	defaultPairsLimit = 1000
	maxPairsLimit     = 100000
)

// pages holds every report template, parsed once at start.
var pages = template.Must(template.New("").Funcs(templateFuncs).ParseFS(web.Templates, "templates/*.html"))

func (s *Server) reportRoutes(r chi.Router) {
	static, err := fs.Sub(web.Static, "static")
	if err != nil {
		panic(err)
	}
	files := http.FileServerFS(static)
	r.Get("/static/*", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/static/")
		if name == "" || strings.HasSuffix(name, "/") {
			s.error(w, r, understudy.Errorf(understudy.ENOTFOUND, "no static file %q", r.URL.Path))
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.StripPrefix("/static", files).ServeHTTP(w, r)
	})
	// Browsers ask for /favicon.ico on pages without an icon link, such as
	// the JSON API's; a 404 there would show as a console error.
	r.Get("/favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		b, _ := fs.ReadFile(static, "favicon.svg")
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Header().Set("Cache-Control", "max-age=86400")
		w.Write(b)
	})
	r.Get("/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/report", http.StatusFound)
	})
	r.Post("/report/login", s.handleReportLogin)
	r.Group(func(r chi.Router) {
		r.Use(s.reportAuth(true))
		r.Get("/report", s.handleReportPage)
		r.Get("/report/requests/{id}", s.handleRequestPage)
	})
	r.Group(func(r chi.Router) {
		r.Use(s.reportAuth(false))
		r.Get("/api/report", s.handleReportJSON)
		r.Get("/api/pairs", s.handlePairs)
		r.Get("/api/requests/{id}", s.handleRequestJSON)
	})
}

// tokenHash is what the comparison and the cookie use instead of the token:
// hashing first makes comparisons independent of the guess's length, and
// the browser never stores the token itself.
func tokenHash(token string) [32]byte {
	return sha256.Sum256([]byte("understudy report token\x00" + token))
}

func (s *Server) reportTokenOK(given string) bool {
	want, got := tokenHash(s.ReportToken), tokenHash(given)
	return given != "" && subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

func (s *Server) reportCookieOK(r *http.Request) bool {
	c, err := r.Cookie(reportCookie)
	if err != nil {
		return false
	}
	got, err := hex.DecodeString(c.Value)
	want := tokenHash(s.ReportToken)
	return err == nil && subtle.ConstantTimeCompare(want[:], got) == 1
}

func (s *Server) setReportCookie(w http.ResponseWriter, r *http.Request) {
	h := tokenHash(s.ReportToken)
	http.SetCookie(w, &http.Cookie{Name: reportCookie, Value: hex.EncodeToString(h[:]), Path: "/",
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
}

// reportAuth lets a request through when no report token is configured or
// when it carries the token (see reportCookie). Pages answer a missing token
// with a form to type it in; the API answers 401 JSON.
func (s *Server) reportAuth(page bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if s.ReportToken == "" {
				next.ServeHTTP(w, r)
				return
			}
			if q := r.URL.Query(); page && q.Has("token") {
				given := q.Get("token")
				q.Del("token")
				without := (&url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: q.Encode()}).String()
				if !s.reportTokenOK(given) {
					s.authPage(w, r, without, "That token is not the report token.")
					return
				}
				s.setReportCookie(w, r)
				http.Redirect(w, r, without, http.StatusSeeOther)
				return
			}
			if auth := r.Header.Get("Authorization"); auth != "" {
				given, ok := strings.CutPrefix(auth, "Bearer ")
				if ok && s.reportTokenOK(given) {
					next.ServeHTTP(w, r)
					return
				}
				w.Header().Set("WWW-Authenticate", `Bearer realm="understudy", error="invalid_token"`)
				s.error(w, r, understudy.Errorf(understudy.EUNAUTHORIZED, "wrong token: the report wants Authorization: Bearer <report token>"))
				return
			}
			if s.reportCookieOK(r) {
				next.ServeHTTP(w, r)
				return
			}
			if page {
				s.authPage(w, r, r.URL.RequestURI(), "")
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="understudy"`)
			s.error(w, r, understudy.Errorf(understudy.EUNAUTHORIZED, "missing token: the report is protected by --report-token; send Authorization: Bearer <token>"))
		})
	}
}

type authView struct {
	Title, Next, Message string
}

func (s *Server) authPage(w http.ResponseWriter, r *http.Request, next, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="understudy"`)
	s.render(w, r, http.StatusUnauthorized, "auth", authView{Title: "Report token needed", Next: next, Message: msg})
}

// handleReportLogin takes the token from the form on the auth page, sets
// the cookie and goes back to the page the user asked for.
func (s *Server) handleReportLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		s.error(w, r, understudy.Errorf(understudy.EINVALID, "unreadable form: want token=<report token>"))
		return
	}
	next := r.PostForm.Get("next")
	// Only report pages: a login form must not redirect anywhere else.
	if !strings.HasPrefix(next, "/report") || strings.HasPrefix(next, "/report/login") {
		next = "/report"
	}
	if s.ReportToken == "" {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if !s.reportTokenOK(r.PostForm.Get("token")) {
		s.authPage(w, r, next, "That token is not the report token.")
		return
	}
	s.setReportCookie(w, r)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// parseReportQuery reads window, shadow, version and tolerance.
func parseReportQuery(v url.Values) (report.Query, error) {
	q := report.Query{Window: v.Get("window"), Shadow: v.Get("shadow"), Version: v.Get("version"), Tolerance: report.DefaultTolerance}
	if q.Window == "" {
		q.Window = "1h"
	}
	if _, ok := report.Windows[q.Window]; !ok {
		return q, understudy.Errorf(understudy.EINVALID, "window %q: want one of %s", clipText(q.Window, 40), strings.Join(report.WindowNames, ", "))
	}
	if t := v.Get("tolerance"); t != "" {
		f, err := parseTolerance(t)
		if err != nil {
			return q, err
		}
		q.Tolerance = f
	}
	if err := checkName("shadow", q.Shadow); err != nil {
		return q, err
	}
	return q, checkName("version", q.Version)
}

func parseTolerance(t string) (float64, error) {
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, understudy.Errorf(understudy.EINVALID, "tolerance %q: want a number ≥ 0, such as 0.0001", clipText(t, 40))
	}
	return f, nil
}

func checkName(what, v string) error {
	if len(v) > 200 || !utf8.ValidString(v) {
		return understudy.Errorf(understudy.EINVALID, "%s: want a model name or version of at most 200 characters", what)
	}
	return nil
}

func clipText(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// pathParam decodes a path parameter once. chi matches on RawPath when the
// path has escapes that Path cannot show (%2F), and then hands over the
// escaped text; otherwise it hands over Path's, already decoded, which a
// second unescape would corrupt ("%41" would become "A").
func pathParam(r *http.Request, v string) (string, error) {
	if r.URL.RawPath == "" {
		return v, nil
	}
	return url.PathUnescape(v)
}

// requestIDParam reads the {id} path parameter.
func requestIDParam(r *http.Request) (string, error) {
	raw := chi.URLParam(r, "id")
	id, err := pathParam(r, raw)
	if err != nil || id == "" || len(id) > 128 {
		return "", understudy.Errorf(understudy.EINVALID, "request id %q: want the id of an earlier /predict request (1 to 128 characters)", clipText(raw, 40))
	}
	return id, nil
}

func (s *Server) handleReportJSON(w http.ResponseWriter, r *http.Request) {
	if s.Report == nil {
		s.error(w, r, understudy.Errorf(understudy.EUNAVAILABLE, "the report needs the store, which is not configured"))
		return
	}
	q, err := parseReportQuery(r.URL.Query())
	if err != nil {
		s.error(w, r, err)
		return
	}
	rep, err := s.Report(r.Context(), q)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.writeJSONChecked(w, r, rep)
}

// writeJSONChecked encodes v before writing anything, so a value JSON cannot
// hold (NaN) becomes a clean 500 instead of a truncated body.
func (s *Server) writeJSONChecked(w http.ResponseWriter, r *http.Request, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		s.error(w, r, fmt.Errorf("encode %s: %w", r.URL.Path, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

func (s *Server) handlePairs(w http.ResponseWriter, r *http.Request) {
	if s.Pairs == nil {
		s.error(w, r, understudy.Errorf(understudy.EUNAVAILABLE, "pairs need the store, which is not configured"))
		return
	}
	v := r.URL.Query()
	f := report.PairFilter{Shadow: v.Get("shadow"), Version: v.Get("version"), Tolerance: report.DefaultTolerance, Limit: defaultPairsLimit}
	if err := checkName("shadow", f.Shadow); err != nil {
		s.error(w, r, err)
		return
	}
	if err := checkName("version", f.Version); err != nil {
		s.error(w, r, err)
		return
	}
	for name, dst := range map[string]*bool{"disagree": &f.DisagreeOnly, "largest": &f.Largest} {
		if d := v.Get(name); d != "" {
			b, err := strconv.ParseBool(d)
			if err != nil {
				s.error(w, r, understudy.Errorf(understudy.EINVALID, "%s %q: want true or false", name, clipText(d, 40)))
				return
			}
			*dst = b
		}
	}
	if t := v.Get("tolerance"); t != "" {
		tol, err := parseTolerance(t)
		if err != nil {
			s.error(w, r, err)
			return
		}
		f.Tolerance = tol
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxPairsLimit {
			s.error(w, r, understudy.Errorf(understudy.EINVALID, "limit %q: want 1 to %d", clipText(l, 40), maxPairsLimit))
			return
		}
		f.Limit = n
	}
	window := v.Get("window")
	if window == "" {
		window = "all"
	}
	d, ok := report.Windows[window]
	if !ok {
		s.error(w, r, understudy.Errorf(understudy.EINVALID, "window %q: want one of %s", clipText(window, 40), strings.Join(report.WindowNames, ", ")))
		return
	}
	if d > 0 {
		// From the same minute as the report's window, so that the CSV
		// holds what the page counted.
		f.Since = s.Now().Add(-d).Truncate(time.Minute)
	}
	format := v.Get("format")
	if format != "" && format != "json" && format != "csv" {
		s.error(w, r, understudy.Errorf(understudy.EINVALID, "format %q: want csv or json", clipText(format, 40)))
		return
	}
	pairs, err := s.Pairs(r.Context(), f)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if format != "csv" {
		if pairs == nil {
			pairs = []report.Pair{}
		}
		s.writeJSONChecked(w, r, map[string]any{"pairs": pairs, "count": len(pairs)})
		return
	}
	var buf bytes.Buffer
	if err := report.WriteCSV(&buf, pairs); err != nil {
		s.error(w, r, fmt.Errorf("write pairs csv: %w", err))
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+csvName(f, s.Now())+`"`)
	w.Write(buf.Bytes())
}

// csvName names the export after what it holds, in characters every file
// system and header parser accepts.
func csvName(f report.PairFilter, now time.Time) string {
	parts := []string{"understudy-pairs"}
	for _, p := range []string{f.Shadow, f.Version} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if f.DisagreeOnly {
		parts = append(parts, "disagreements")
	}
	if f.Largest {
		parts = append(parts, "largest")
	}
	parts = append(parts, now.UTC().Format("20060102T150405Z"))
	name := strings.Map(func(r rune) rune {
		if r < 128 && (r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, strings.Join(parts, "-"))
	return name + ".csv"
}

func (s *Server) handleRequestJSON(w http.ResponseWriter, r *http.Request) {
	d, err := s.requestDetail(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.writeJSONChecked(w, r, d)
}

func (s *Server) requestDetail(r *http.Request) (*report.RequestDetail, error) {
	if s.Request == nil {
		return nil, understudy.Errorf(understudy.EUNAVAILABLE, "stored requests need the store, which is not configured")
	}
	id, err := requestIDParam(r)
	if err != nil {
		return nil, err
	}
	d, err := s.Request(r.Context(), id)
	if err == nil && d == nil {
		err = understudy.Errorf(understudy.ENOTFOUND, "no stored request with id %q", id)
	}
	return d, err
}

// render executes a page template into memory first, so a template error
// becomes a clean 500 rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		s.error(w, r, fmt.Errorf("render %s: %w", name, err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type errorView struct {
	Title, Message, RequestID string
	Status                    int
}

// errorPage is s.error for browsers.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, err error) {
	_, status, id := s.classify(w, r, err)
	s.render(w, r, status, "error", errorView{Title: http.StatusText(status), Message: understudy.ErrorMessage(err), RequestID: id, Status: status})
}

// reportView is what the report page shows.
type reportView struct {
	Title   string
	R       *report.Report
	Query   report.Query
	Windows []navLink
	// ShadowOptions and VersionOptions fill the selector.
	ShadowOptions, VersionOptions []option
	// Tolerance is the tolerance field's value: empty unless the URL gave one.
	Tolerance string
	Cards     []shadowCard
	// NoTraffic says the window has no request at all.
	NoTraffic bool
	Examples  examples
	// AdminEnabled says promoting can work: admin routes are on.
	AdminEnabled bool
	JSONHref     string
}

type navLink struct {
	Label, Href string
	Current     bool
}

type option struct {
	Value, Label string
	Selected     bool
}

// examples are the commands the empty state suggests.
type examples struct {
	Predict, Feedback, Replay string
}

type shadowCard struct {
	*report.ShadowReport
	Key            string
	Confusion      *confusionView
	AgreementChart chart
	LatencyChart   chart
	DiffChart      chart
	Latest         []pairRow
	Largest        []pairRow
	SampledOutRate float64
	RatioP95       float64
	CSVHref        string
	AdminEnabled   bool
}

// pairsTable is one table of disagreements.
type pairsTable struct {
	Title, Class string
	Rows         []pairRow
}

type pairRow struct {
	report.Pair
	Href                                string
	Inputs, PrimaryOutput, ShadowOutput string
}

type confusionView struct {
	Classes []int64
	Rows    []confusionRow
}

type confusionRow struct {
	Class int64
	Cells []confusionCell
	Total int64
}

type confusionCell struct {
	Primary, Shadow int64
	Count           int64
	Diag            bool
	// Heat is 0 (empty) to 5 (the row's largest share), for shading.
	Heat int
}

func (s *Server) handleReportPage(w http.ResponseWriter, r *http.Request) {
	if s.Report == nil {
		s.errorPage(w, r, understudy.Errorf(understudy.EUNAVAILABLE, "the report needs the store, which is not configured"))
		return
	}
	q, err := parseReportQuery(r.URL.Query())
	if err != nil {
		s.errorPage(w, r, err)
		return
	}
	rep, err := s.Report(r.Context(), q)
	if err != nil {
		s.errorPage(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "report", s.reportView(r, rep))
}

func (s *Server) reportView(r *http.Request, rep *report.Report) reportView {
	in := r.URL.Query()
	q := rep.Query
	if q.Window == "" {
		q.Window = "1h"
	}
	v := reportView{
		Title:        "Understudy report",
		R:            rep,
		Query:        q,
		Tolerance:    in.Get("tolerance"),
		NoTraffic:    rep.Requests == 0 && len(rep.Shadows) == 0,
		AdminEnabled: s.Admin != nil && s.AdminToken != "",
	}
	if rep.Primary.Name != "" {
		v.Title = "Understudy · " + rep.Primary.Name
	}
	// link keeps the other selections and changes one.
	link := func(path string, set map[string]string) string {
		p := url.Values{}
		for _, k := range []string{"window", "shadow", "version", "tolerance"} {
			if in.Get(k) != "" {
				p.Set(k, in.Get(k))
			}
		}
		for k, val := range set {
			if val == "" {
				p.Del(k)
			} else {
				p.Set(k, val)
			}
		}
		if len(p) == 0 {
			return path
		}
		return path + "?" + p.Encode()
	}
	for _, w := range report.WindowNames {
		v.Windows = append(v.Windows, navLink{Label: w, Href: link("/report", map[string]string{"window": w}), Current: w == q.Window})
	}
	v.JSONHref = link("/api/report", nil)

	v.ShadowOptions = []option{{Value: "", Label: "all shadows", Selected: q.Shadow == ""}}
	v.VersionOptions = []option{{Value: "", Label: "all versions", Selected: q.Version == ""}}
	seenName, seenVersion := map[string]bool{}, map[string]bool{}
	for _, m := range rep.Versions {
		if !seenName[m.Name] {
			seenName[m.Name] = true
			v.ShadowOptions = append(v.ShadowOptions, option{Value: m.Name, Label: m.Name, Selected: m.Name == q.Shadow})
		}
		if (q.Shadow == "" || m.Name == q.Shadow) && !seenVersion[m.Version] {
			seenVersion[m.Version] = true
			v.VersionOptions = append(v.VersionOptions, option{Value: m.Version, Label: m.Name + "@" + m.Version, Selected: m.Version == q.Version})
		}
	}
	// A selection with no data in this window stays selectable.
	if q.Shadow != "" && !seenName[q.Shadow] {
		v.ShadowOptions = append(v.ShadowOptions, option{Value: q.Shadow, Label: q.Shadow, Selected: true})
	}
	if q.Version != "" && !seenVersion[q.Version] {
		v.VersionOptions = append(v.VersionOptions, option{Value: q.Version, Label: q.Version, Selected: true})
	}

	for i := range rep.Shadows {
		sr := &rep.Shadows[i]
		label := sr.Name + "@" + sr.Version
		c := shadowCard{
			ShadowReport:   sr,
			Key:            fmt.Sprintf("shadow-%d", i),
			AgreementChart: agreementChart(fmt.Sprintf("chart-agreement-%d", i), label, sr.Classification == nil && sr.Regression != nil, sr.Charts.Agreement, rep.Thresholds.MinAgreement),
			LatencyChart:   latencyChart(fmt.Sprintf("chart-latency-%d", i), "p50 latency of the primary and "+label+" over time", sr.Charts.Latency),
			DiffChart:      diffChart(fmt.Sprintf("chart-diff-%d", i), "Histogram of the largest absolute output difference per pair, "+label, sr.Charts.DiffHist),
			RatioP95:       safeRatio(sr.Latency.ShadowP95, sr.Latency.PrimaryP95),
			AdminEnabled:   v.AdminEnabled,
			CSVHref:        pairsHref(sr, q),
		}
		if sr.Traffic.Offered > 0 {
			c.SampledOutRate = float64(sr.Traffic.SampledOut) / float64(sr.Traffic.Offered)
		}
		if cl := sr.Classification; cl != nil && len(cl.Classes) > 0 {
			c.Confusion = newConfusion(cl)
		}
		c.Latest = pairRows(sr.Disagreements.Latest)
		c.Largest = pairRows(sr.Disagreements.Largest)
		v.Cards = append(v.Cards, c)
	}
	if v.NoTraffic {
		v.Examples = s.examples(r)
	}
	return v
}

// pairsHref links the CSV of a shadow's disagreements in the window.
func pairsHref(sr *report.ShadowReport, q report.Query) string {
	v := url.Values{"shadow": {sr.Name}, "version": {sr.Version}, "disagree": {"true"}, "window": {q.Window}, "format": {"csv"}}
	if q.Tolerance != report.DefaultTolerance {
		v.Set("tolerance", strconv.FormatFloat(q.Tolerance, 'g', -1, 64))
	}
	return "/api/pairs?" + v.Encode()
}

func safeRatio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func newConfusion(cl *report.Classification) *confusionView {
	cv := &confusionView{Classes: cl.Classes}
	for i, row := range cl.Confusion {
		if i >= len(cl.Classes) {
			break
		}
		cr := confusionRow{Class: cl.Classes[i]}
		var top int64
		for _, n := range row {
			cr.Total += n
			top = max(top, n)
		}
		for j, n := range row {
			if j >= len(cl.Classes) {
				break
			}
			heat := 0
			if n > 0 && top > 0 {
				heat = 1 + int(4*n/top)
			}
			cr.Cells = append(cr.Cells, confusionCell{Primary: cl.Classes[i], Shadow: cl.Classes[j], Count: n, Diag: i == j, Heat: min(heat, 5)})
		}
		cv.Rows = append(cv.Rows, cr)
	}
	return cv
}

func pairRows(ps []report.Pair) []pairRow {
	out := make([]pairRow, len(ps))
	for i, p := range ps {
		out[i] = pairRow{Pair: p, Href: "/report/requests/" + url.PathEscape(p.RequestID),
			Inputs: compactTensors(p.Inputs, 72), PrimaryOutput: compactTensors(p.PrimaryOutput, 72), ShadowOutput: compactTensors(p.ShadowOutput, 72)}
	}
	return out
}

// examples builds the commands that send traffic to this server, with an
// input of the primary's shape when it is small enough to type.
func (s *Server) examples(r *http.Request) examples {
	base := "http://" + r.Host
	body := `{"input": [[5.1, 3.5, 1.4, 0.2]]}`
	if s.Models != nil {
		for _, m := range s.Models.List() {
			if m.Role == understudy.RolePrimary && m.Signature != nil {
				if b, ok := exampleBody(m.Signature.Inputs); ok {
					body = b
				}
				break
			}
		}
	}
	return examples{
		Predict:  fmt.Sprintf("curl -s %s/predict -H 'Content-Type: application/json' -d '%s'", base, body),
		Feedback: fmt.Sprintf(`curl -s %s/feedback -d '{"id": "<id from the answer>", "label": 1}'`, base),
		Replay:   fmt.Sprintf("understudy replay --url %s testdata/iris-holdout.jsonl", base),
	}
}

// exampleBody writes a /predict body of zeros in the inputs' shapes, with
// dynamic dimensions as 1; false when it would be too long to be useful.
func exampleBody(inputs []understudy.TensorInfo) (string, bool) {
	zero := func(info understudy.TensorInfo) (string, bool) {
		var elem string
		switch {
		case info.DType == understudy.String:
			elem = `""`
		case info.DType == understudy.Bool:
			elem = "false"
		default:
			elem = "0"
		}
		n := 1
		for _, d := range info.Dims {
			n *= int(max(d, 1))
		}
		if n > 16 {
			return "", false
		}
		var build func(dims []int64) string
		build = func(dims []int64) string {
			if len(dims) == 0 {
				return elem
			}
			k := int(max(dims[0], 1))
			parts := make([]string, k)
			for i := range parts {
				parts[i] = build(dims[1:])
			}
			return "[" + strings.Join(parts, ", ") + "]"
		}
		return build(info.Dims), true
	}
	if len(inputs) == 1 {
		z, ok := zero(inputs[0])
		return `{"input": ` + z + `}`, ok
	}
	var parts []string
	for _, in := range inputs {
		z, ok := zero(in)
		if !ok {
			return "", false
		}
		name, _ := json.Marshal(in.Name)
		parts = append(parts, string(name)+": "+z)
	}
	return `{"inputs": {` + strings.Join(parts, ", ") + `}}`, len(parts) > 0
}

// storedTensor is one tensor as the store writes it.
type storedTensor struct {
	DType string          `json:"dtype"`
	Shape []int64         `json:"shape"`
	Data  json.RawMessage `json:"data"`
}

// compactTensors shortens stored tensors ({"name": {"dtype", "shape",
// "data"}}) to `name [[5.1, 3.5]]` with numbers at four significant digits,
// clipped to n characters, for table cells.
func compactTensors(stored string, n int) string {
	if stored == "" {
		return ""
	}
	var m map[string]*storedTensor
	if err := json.Unmarshal([]byte(stored), &m); err != nil {
		return clipText(stored, n)
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	var parts []string
	for _, k := range names {
		t := m[k]
		if t == nil {
			parts = append(parts, k+" null")
			continue
		}
		parts = append(parts, k+" "+roundJSON(t.Data, 4))
	}
	return clipText(strings.Join(parts, "  "), n)
}

// roundJSON rewrites numbers in a JSON value with digits significant digits
// (all of them when digits is 0) and a space after commas.
func roundJSON(raw json.RawMessage, digits int) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			b.WriteByte('[')
			for i, e := range x {
				if i > 0 {
					b.WriteString(", ")
				}
				walk(e)
			}
			b.WriteByte(']')
		case json.Number:
			f, err := x.Float64()
			if err != nil || digits == 0 {
				b.WriteString(x.String())
			} else {
				b.WriteString(strconv.FormatFloat(f, 'g', digits, 64))
			}
		case nil:
			b.WriteString("null")
		default:
			// The page escapes; JSON's own HTML escaping would show as \u003c.
			var e bytes.Buffer
			enc := json.NewEncoder(&e)
			enc.SetEscapeHTML(false)
			enc.Encode(x)
			b.Write(bytes.TrimSuffix(e.Bytes(), []byte("\n")))
		}
	}
	walk(v)
	return b.String()
}

// requestView is what the page of one request shows.
type requestView struct {
	Title    string
	D        *report.RequestDetail
	Inputs   []tensorView
	Outputs  []tensorView
	Shadows  []shadowView
	JSONHref string
}

type shadowView struct {
	*report.ShadowDetail
	Outputs []tensorView
}

type tensorView struct {
	Name, DType, Shape, Data string
}

// maxTensorText bounds one tensor's text on the page; the JSON has it all.
const maxTensorText = 20000

func tensorViews(stored string) []tensorView {
	if stored == "" {
		return nil
	}
	var m map[string]*storedTensor
	if err := json.Unmarshal([]byte(stored), &m); err != nil {
		return []tensorView{{Name: "(unparsed)", Data: clipText(stored, maxTensorText)}}
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([]tensorView, 0, len(names))
	for _, k := range names {
		t := m[k]
		if t == nil {
			out = append(out, tensorView{Name: k, Data: "null"})
			continue
		}
		shape := make([]string, len(t.Shape))
		for i, d := range t.Shape {
			shape[i] = strconv.FormatInt(d, 10)
		}
		out = append(out, tensorView{Name: k, DType: t.DType, Shape: "[" + strings.Join(shape, ", ") + "]", Data: clipText(roundJSON(t.Data, 0), maxTensorText)})
	}
	return out
}

func (s *Server) handleRequestPage(w http.ResponseWriter, r *http.Request) {
	d, err := s.requestDetail(r)
	if err != nil {
		s.errorPage(w, r, err)
		return
	}
	v := requestView{
		Title:    "Request " + d.RequestID,
		D:        d,
		Inputs:   tensorViews(d.Inputs),
		Outputs:  tensorViews(d.Outputs),
		JSONHref: "/api/requests/" + url.PathEscape(d.RequestID),
	}
	for i := range d.Shadows {
		v.Shadows = append(v.Shadows, shadowView{ShadowDetail: &d.Shadows[i], Outputs: tensorViews(d.Shadows[i].Outputs)})
	}
	s.render(w, r, http.StatusOK, "request", v)
}

var templateFuncs = template.FuncMap{
	"f4":      formatF4,
	"opt4":    func(p *float64) string { return optional(p, formatF4) },
	"pct":     formatPct,
	"count":   formatCount,
	"us":      formatMicros,
	"bytes":   formatBytes,
	"ratio":   formatRatio,
	"pval":    formatP,
	"optp":    func(p *float64) string { return optional(p, formatP) },
	"class":   func(p *int64) string { return optionalInt(p) },
	"label":   func(p *float64) string { return optional(p, formatNumber) },
	"num":     formatNumber,
	"clock":   func(t time.Time) string { return formatClock(t) },
	"iso":     func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"full":    formatFull,
	"since":   formatSince,
	"add":     func(a, b float64) float64 { return a + b },
	"sub":     func(a, b float64) float64 { return a - b },
	"mid":     func(a, b float64) float64 { return (a + b) / 2 },
	"ratioOf": func(a, b int64) float64 { return safeRatio(float64(a), float64(b)) },
	"fratio":  safeRatio,
	"psiNote": psiNote,
	"int64":   func(n int) int64 { return int64(n) },
	"pairsTable": func(title, class string, rows []pairRow) pairsTable {
		return pairsTable{Title: title, Class: class, Rows: rows}
	},
}

func bad(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) }

func formatF4(f float64) string {
	if bad(f) {
		return "—"
	}
	return strconv.FormatFloat(f, 'f', 4, 64)
}

func optional(p *float64, format func(float64) string) string {
	if p == nil {
		return "—"
	}
	return format(*p)
}

func optionalInt(p *int64) string {
	if p == nil {
		return "—"
	}
	return strconv.FormatInt(*p, 10)
}

// formatPct writes a fraction as a percentage with one decimal, or two
// below 1% so that small error rates do not read as zero.
func formatPct(f float64) string {
	switch {
	case bad(f):
		return "—"
	case f == 0:
		return "0%"
	case f < 0.01:
		return strconv.FormatFloat(f*100, 'f', 2, 64) + "%"
	}
	return strconv.FormatFloat(f*100, 'f', 1, 64) + "%"
}

// formatCount writes n with thousands separators.
func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func formatMicros(us float64) string {
	switch {
	case bad(us):
		return "—"
	case us < 1000:
		return strconv.FormatFloat(us, 'f', 0, 64) + " µs"
	case us < 1e6:
		return strconv.FormatFloat(us/1000, 'f', 2, 64) + " ms"
	}
	return strconv.FormatFloat(us/1e6, 'f', 2, 64) + " s"
}

func formatBytes(n int64) string {
	f := float64(n)
	switch {
	case n <= 0:
		return "—"
	case f < 1<<10:
		return strconv.FormatInt(n, 10) + " B"
	case f < 1<<20:
		return strconv.FormatFloat(f/(1<<10), 'f', 1, 64) + " KiB"
	case f < 1<<30:
		return strconv.FormatFloat(f/(1<<20), 'f', 1, 64) + " MiB"
	}
	return strconv.FormatFloat(f/(1<<30), 'f', 2, 64) + " GiB"
}

func formatRatio(f float64) string {
	if bad(f) || f <= 0 {
		return "—"
	}
	return strconv.FormatFloat(f, 'f', 2, 64) + "×"
}

// formatP writes a p-value with four decimals, and tiny ones as a bound.
func formatP(p float64) string {
	if bad(p) {
		return "—"
	}
	if p < 0.0001 {
		return "< 0.0001"
	}
	return strconv.FormatFloat(p, 'f', 4, 64)
}

func formatNumber(f float64) string {
	if bad(f) {
		return "—"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func formatClock(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("Jan 02 15:04:05")
}

func formatFull(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}

func formatSince(from, to time.Time) string {
	from, to = from.UTC(), to.UTC()
	if from.IsZero() {
		return "everything stored up to " + to.Format("2006-01-02 15:04 UTC")
	}
	if from.YearDay() == to.YearDay() && from.Year() == to.Year() {
		return from.Format("2006-01-02 15:04") + " – " + to.Format("15:04 UTC")
	}
	return from.Format("2006-01-02 15:04") + " – " + to.Format("2006-01-02 15:04 UTC")
}

// psiNote reads a population stability index by the usual rule of thumb.
func psiNote(p *float64) string {
	switch {
	case p == nil:
		return ""
	case *p < 0.1:
		return "stable"
	case *p < 0.25:
		return "moderate shift"
	}
	return "large shift"
}
