package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Admin changes what is deployed.
type Admin interface {
	Promote(name, version string, force bool, actor string) (understudy.ModelRef, error)
	Rollback(actor string) (understudy.ModelRef, error)
	Configure(name string, p understudy.SettingsPatch, actor string) (understudy.ShadowSettings, error)
	Primary() (understudy.ModelRef, bool)
}

// requireToken guards a route with a bearer token compared in constant time.
// With no token configured the route is off, and says how to turn it on.
func requireToken(token, what, enable string, s *Server) func(http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if token == "" {
				s.error(w, r, understudy.Errorf(understudy.EFORBIDDEN, "%s endpoints are disabled: start the server with %s", what, enable))
				return
			}
			auth := r.Header.Get("Authorization")
			given, ok := strings.CutPrefix(auth, "Bearer ")
			if !ok || given == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="understudy"`)
				s.error(w, r, understudy.Errorf(understudy.EUNAUTHORIZED, "missing token: send Authorization: Bearer <token>"))
				return
			}
			// Hashing first makes the comparison independent of the length
			// of the guess.
			got := sha256.Sum256([]byte(given))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="understudy", error="invalid_token"`)
				s.error(w, r, understudy.Errorf(understudy.EUNAUTHORIZED, "wrong token"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// modelName reads and checks the {name} path parameter: names are file
// stems and can never reach outside the models directory.
func modelName(r *http.Request) (string, error) {
	raw := chi.URLParam(r, "name")
	name, err := pathParam(r, raw)
	if err != nil || !understudy.ValidModelName(name) {
		return "", understudy.Errorf(understudy.EINVALID, "invalid model name %q: a name is a file stem in the models directory, without / \\ or ..", raw)
	}
	return name, nil
}

func (s *Server) adminRoutes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(requireToken(s.AdminToken, "admin", "--admin-token or UNDERSTUDY_ADMIN_TOKEN", s))
		r.Post("/models/rollback", s.handleRollback)
		r.Post("/models/{name}/promote", s.handlePromote)
		r.Put("/models/{name}", s.handleConfigure)
	})
}

func (s *Server) handlePromote(w http.ResponseWriter, r *http.Request) {
	name, err := modelName(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	from, _ := s.Admin.Primary()
	to, err := s.Admin.Promote(name, r.URL.Query().Get("version"), force, "admin")
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, map[string]any{"primary": to, "previous": from})
}

func (s *Server) handleRollback(w http.ResponseWriter, r *http.Request) {
	from, _ := s.Admin.Primary()
	to, err := s.Admin.Rollback("admin")
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, map[string]any{"primary": to, "previous": from})
}

const settingsShape = `{"sampling": 0.25, "timeout_ms": 200, "paused": false}`

func (s *Server) handleConfigure(w http.ResponseWriter, r *http.Request) {
	name, err := modelName(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var p understudy.SettingsPatch
	if err := decodeJSON(body, &p, settingsShape); err != nil {
		s.error(w, r, err)
		return
	}
	set, err := s.Admin.Configure(name, p, "admin")
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, map[string]any{"name": name, "settings": set})
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if s.Events == nil {
		s.error(w, r, understudy.Errorf(understudy.EUNAVAILABLE, "events need the store, which is not configured"))
		return
	}
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			s.error(w, r, understudy.Errorf(understudy.EINVALID, "limit %q: want 1 to 10000", v))
			return
		}
		limit = n
	}
	evs, err := s.Events(r.Context(), q.Get("model"), limit)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, map[string]any{"events": evs})
}
