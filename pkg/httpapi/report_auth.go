package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file guards the report pages and /api/* with Server.ReportToken: the
// bearer token check, the cookie a browser keeps instead of the token, and
// the login form a page shows without it.

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
