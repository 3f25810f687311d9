package httpapi

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file serves GET /api/pairs, the export of stored primary and shadow
// outputs side by side: its filters, and the CSV download named after what
// it holds.

// defaultPairsLimit and maxPairsLimit bound GET /api/pairs.
const (
	defaultPairsLimit = 1000
	maxPairsLimit     = 100000
)

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
	origin, err := parseOrigin(v)
	if err != nil {
		s.error(w, r, err)
		return
	}
	f.Origin = origin
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
	if f.Origin != "" && f.Origin != report.OriginAll {
		parts = append(parts, f.Origin)
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
