package httpapi

import (
	"bytes"
	"encoding/json"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file is how values read on the report pages: the functions the
// templates call (numbers, percentages, durations, sizes, times, p-values,
// ratios), which write "—" for a value that is missing or not finite, and
// the compact text of stored tensors for table cells.

func clipText(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

func safeRatio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
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
