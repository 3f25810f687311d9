package httpapi_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/httpapi"
)

// Ensure the report is public without a report token, and with one wants
// it as a bearer header, a cookie from ?token= or the login form; static
// files stay public.
func TestReportToken(t *testing.T) {
	open := newReportServer(t, nil)
	for _, path := range []string{"/report", "/api/report", "/api/pairs", "/report/requests/req-2"} {
		if r := get(t, open.URL+path); r.status != 200 {
			t.Errorf("no token configured: %s = %d, want 200", path, r.status)
		}
	}

	rs := newReportServer(t, func(s *httpapi.Server) { s.ReportToken = "s3cret" })
	for _, path := range []string{"/api/report", "/api/pairs?format=csv", "/api/requests/req-2"} {
		r := get(t, rs.URL+path)
		if r.status != 401 || !strings.Contains(r.body, "Bearer") || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s without token: %d %.200s, want 401 JSON", path, r.status, r.body)
		}
		if r := get(t, rs.URL+path, "Authorization", "Bearer wrong"); r.status != 401 {
			t.Errorf("%s with a wrong token: %d, want 401", path, r.status)
		}
		if r := get(t, rs.URL+path, "Authorization", "Bearer s3cret"); r.status != 200 {
			t.Errorf("%s with the token: %d, want 200", path, r.status)
		}
	}
	r := get(t, rs.URL+"/report?window=24h")
	if r.status != 401 || !strings.Contains(r.body, `action="/report/login"`) || !strings.Contains(r.body, `value="/report?window=24h"`) {
		t.Errorf("page without token: %d %.300s, want 401 with the login form", r.status, r.body)
	}
	if r := get(t, rs.URL+"/static/report.css"); r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/css") {
		t.Errorf("static: %d %q, want 200 CSS", r.status, r.header.Get("Content-Type"))
	}

	// ?token= sets the cookie and redirects to the page without it.
	r = get(t, rs.URL+"/report?window=24h&token=s3cret")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/report?window=24h" {
		t.Fatalf("?token=: %d to %q, want 303 to /report?window=24h", r.status, r.header.Get("Location"))
	}
	cookie := (&http.Response{Header: r.header}).Cookies()
	if len(cookie) != 1 || !cookie[0].HttpOnly || strings.Contains(cookie[0].Value, "s3cret") {
		t.Fatalf("cookie = %+v, want one HttpOnly cookie without the token in it", cookie)
	}
	c := cookie[0].Name + "=" + cookie[0].Value
	for _, path := range []string{"/report", "/report/requests/req-2", "/api/pairs?format=csv"} {
		if r := get(t, rs.URL+path, "Cookie", c); r.status != 200 {
			t.Errorf("%s with the cookie: %d, want 200", path, r.status)
		}
	}
	if r := get(t, rs.URL+"/report", "Cookie", cookie[0].Name+"=00ff"); r.status != 401 {
		t.Errorf("forged cookie: %d, want 401", r.status)
	}
	if r := get(t, rs.URL+"/report?token=nope"); r.status != 401 || !strings.Contains(r.body, "not the report token") {
		t.Errorf("wrong ?token=: %d, want 401 saying so", r.status)
	}

	// The login form.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		token, next    string
		status         int
		location       string
		wantCookieSet  bool
		wantInResponse string
	}{
		{"s3cret", "/report/requests/req-2", 303, "/report/requests/req-2", true, ""},
		{"s3cret", "https://evil.example/", 303, "/report", true, ""},
		{"wrong", "/report", 401, "", false, "not the report token"},
	} {
		resp, err := client.PostForm(rs.URL+"/report/login", url.Values{"token": {tt.token}, "next": {tt.next}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location || (len(resp.Cookies()) == 1) != tt.wantCookieSet || !strings.Contains(string(b), tt.wantInResponse) {
			t.Errorf("login %q next %q: %d to %q, cookies %v; want %d to %q", tt.token, tt.next, resp.StatusCode, resp.Header.Get("Location"), resp.Cookies(), tt.status, tt.location)
		}
	}
}

// Ensure the ?token= redirect keeps an escaped slash in the path.
func TestTokenRedirectKeepsTheEscapedPath(t *testing.T) {
	rs := newReportServer(t, func(s *httpapi.Server) { s.ReportToken = "s3cret" })
	r := get(t, rs.URL+"/report/requests/a%2Fb?token=s3cret")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/report/requests/a%2Fb" {
		t.Errorf("?token=: %d to %q, want 303 to /report/requests/a%%2Fb", r.status, r.header.Get("Location"))
	}
}
