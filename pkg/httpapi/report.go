package httpapi

import (
	"bytes"
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
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/understudy"
	"github.com/understudy-ml/understudy/web"
)

// This file routes the report (its pages, its JSON API, the static files)
// and serves the pages and the JSON: the query parameters they share and
// the rendering of a page through the templates. The token guard is in
// report_auth.go, the pairs export in report_pairs.go, what the pages show
// in report_view.go and how values read in report_format.go.

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

// parseReportQuery reads window, shadow, version, tolerance and origin.
func parseReportQuery(v url.Values) (report.Query, error) {
	q := report.Query{Window: v.Get("window"), Shadow: v.Get("shadow"), Version: v.Get("version"), Tolerance: report.DefaultTolerance}
	if q.Window == "" {
		q.Window = "1h"
	}
	if _, ok := report.Windows[q.Window]; !ok {
		return q, understudy.Errorf(understudy.EINVALID, "window %q: want one of %s", clipText(q.Window, 40), strings.Join(report.WindowNames, ", "))
	}
	var err error
	if q.Origin, err = parseOrigin(v); err != nil {
		return q, err
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

// parseOrigin reads the origin filter; "" (absent) is all, which the
// report fills in.
func parseOrigin(v url.Values) (string, error) {
	o := v.Get("origin")
	if o != "" && !slices.Contains(report.OriginNames, o) {
		return "", understudy.Errorf(understudy.EINVALID, "origin %q: want one of %s", clipText(o, 40), strings.Join(report.OriginNames, ", "))
	}
	return o, nil
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
	s.withCanaries(rep)
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
	s.withCanaries(rep)
	s.render(w, r, http.StatusOK, "report", s.reportView(r, rep))
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
