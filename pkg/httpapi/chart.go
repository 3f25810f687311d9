package httpapi

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
)

// chart is an SVG chart laid out in Go and drawn by the "chart" template:
// the page needs no script, and every label goes through html/template's
// escaping like any other text.
type chart struct {
	ID, Class, Title, Label string
	// W and H are the viewBox; L, T, R and B the plot area's edges.
	W, H, L, T, R, B float64
	XTicks, YTicks   []tick
	Lines            []line
	Dots             []dot
	Bars             []bar
	Rule             *rule
	Legend           []legend
	XTitle, YTitle   string
	// Empty, when set, is drawn instead of the data.
	Empty string
}

type tick struct {
	X, Y  float64
	Label string
}

type line struct{ Class, Points string }

type dot struct {
	X, Y  float64
	Class string
	Title string
}

type bar struct {
	X, Y, W, H float64
	Title      string
}

// rule is a horizontal reference line, such as a threshold.
type rule struct {
	Y     float64
	Label string
}

type legend struct {
	X     float64
	Class string
	Label string
}

func newChart(id, class, title, label string) chart {
	return chart{ID: id, Class: class, Title: title, Label: label, W: 440, H: 250, L: 66, T: 16, R: 428, B: 208}
}

// px rounds a coordinate so the markup stays short.
func px(v float64) float64 { return math.Round(v*10) / 10 }

// timeScale maps the points' time range onto the plot's width.
type timeScale struct {
	t0, t1 time.Time
	l, r   float64
}

func newTimeScale(pts []report.Point, l, r float64) timeScale {
	t0, t1 := pts[0].Time, pts[0].Time
	for _, p := range pts[1:] {
		if p.Time.Before(t0) {
			t0 = p.Time
		}
		if p.Time.After(t1) {
			t1 = p.Time
		}
	}
	if !t1.After(t0) {
		t0, t1 = t0.Add(-time.Minute), t1.Add(time.Minute)
	}
	return timeScale{t0, t1, l, r}
}

func (s timeScale) x(t time.Time) float64 {
	return px(s.l + float64(t.Sub(s.t0))/float64(s.t1.Sub(s.t0))*(s.r-s.l))
}

var tickSteps = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour,
	6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour}

// ticks returns up to six round times in the range, labelled in UTC.
func (s timeScale) ticks() []tick {
	span := s.t1.Sub(s.t0)
	step := tickSteps[len(tickSteps)-1]
	for _, st := range tickSteps {
		if span/st <= 5 {
			step = st
			break
		}
	}
	layout := "15:04"
	switch {
	case step < time.Minute:
		layout = "15:04:05"
	case step >= 24*time.Hour:
		layout = "Jan 2"
	case span > 24*time.Hour:
		layout = "Jan 2 15:04"
	}
	var out []tick
	for t := s.t0.UTC().Truncate(step); !t.After(s.t1); t = t.Add(step) {
		if t.Before(s.t0) {
			continue
		}
		out = append(out, tick{X: s.x(t), Label: t.Format(layout)})
	}
	return out
}

// linearScale maps [lo, hi] onto the plot's height, bottom up.
type linearScale struct{ lo, hi, b, t float64 }

func (s linearScale) y(v float64) float64 {
	return px(s.b - (v-s.lo)/(s.hi-s.lo)*(s.b-s.t))
}

// niceStep is a 1, 2 or 5 times a power of ten near span/n.
func niceStep(span float64, n int) float64 {
	if span <= 0 || math.IsNaN(span) || math.IsInf(span, 0) {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// yTicks returns round values from lo to hi, each labelled by format.
func (s linearScale) ticks(step float64, format func(float64) string) []tick {
	var out []tick
	for v := s.lo; v <= s.hi+step/1e6; v += step {
		v := math.Round(v/step) * step
		out = append(out, tick{Y: s.y(v), Label: format(v)})
	}
	return out
}

func decimalsFor(step float64) int {
	if step >= 1 {
		return 0
	}
	return int(math.Ceil(-math.Log10(step) - 1e-9))
}

func points(xs, ys []float64) string {
	var b strings.Builder
	for i := range xs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(xs[i], 'f', -1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(ys[i], 'f', -1, 64))
	}
	return b.String()
}

func pointTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// agreementChart draws agreement per time bucket, with the verdict's
// minimum as a dashed rule. For a shadow with no class output the series is
// the share of pairs within the tolerance, and says so.
func agreementChart(id, model string, withinTol bool, pts []report.Point, minAgreement float64) chart {
	what := "agreement"
	c := newChart(id, "chart-agreement", "Agreement over time", "Agreement of "+model+" with the primary over time")
	if withinTol {
		what = "within tolerance"
		c.Title, c.Label = "Share within tolerance over time", "Share of pairs of "+model+" within the tolerance over time"
	}
	c.YTitle, c.XTitle = what, "time (UTC)"
	if len(pts) == 0 {
		c.Empty = "No compared pairs in this window yet."
		return c
	}
	lo := 1.0
	for _, p := range pts {
		lo = math.Min(lo, p.A)
	}
	if minAgreement > 0 {
		lo = math.Min(lo, minAgreement)
	}
	lo = math.Max(0, math.Min(0.9, math.Floor(lo*10-1e-9)/10))
	ys := linearScale{lo, 1, c.B, c.T}
	step := niceStep(1-lo, 4)
	c.YTicks = ys.ticks(step, func(v float64) string { return strconv.FormatFloat(v, 'f', max(1, decimalsFor(step)), 64) })
	xs := newTimeScale(pts, c.L, c.R)
	c.XTicks = xs.ticks()
	var lx, ly []float64
	for _, p := range pts {
		x, y := xs.x(p.Time), ys.y(p.A)
		lx, ly = append(lx, x), append(ly, y)
		c.Dots = append(c.Dots, dot{X: x, Y: y, Class: "s-shadow", Title: fmt.Sprintf("%s: %s %.4f over %.0f pairs", pointTime(p.Time), what, p.A, p.B)})
	}
	c.Lines = []line{{Class: "s-shadow", Points: points(lx, ly)}}
	if minAgreement > 0 && minAgreement <= 1 {
		c.Rule = &rule{Y: ys.y(minAgreement), Label: fmt.Sprintf("minimum %.2f", minAgreement)}
	}
	return c
}

// latencyChart draws the primary's and the shadow's p50 per time bucket.
func latencyChart(id, label string, pts []report.Point) chart {
	c := newChart(id, "chart-latency", "Latency over time (p50)", label)
	c.YTitle, c.XTitle = "p50 latency", "time (UTC)"
	if len(pts) == 0 {
		c.Empty = "No latencies in this window yet."
		return c
	}
	hi := 0.0
	for _, p := range pts {
		hi = math.Max(hi, math.Max(p.A, p.B))
	}
	step := niceStep(hi, 4)
	top := math.Max(step, math.Ceil(hi/step)*step)
	ys := linearScale{0, top, c.B, c.T}
	c.YTicks = ys.ticks(step, formatMicros)
	xs := newTimeScale(pts, c.L, c.R)
	c.XTicks = xs.ticks()
	var x, pa, pb []float64
	for _, p := range pts {
		xi := xs.x(p.Time)
		x, pa, pb = append(x, xi), append(pa, ys.y(p.A)), append(pb, ys.y(p.B))
		c.Dots = append(c.Dots,
			dot{X: xi, Y: ys.y(p.A), Class: "s-primary", Title: fmt.Sprintf("%s: primary p50 %s", pointTime(p.Time), formatMicros(p.A))},
			dot{X: xi, Y: ys.y(p.B), Class: "s-shadow", Title: fmt.Sprintf("%s: shadow p50 %s", pointTime(p.Time), formatMicros(p.B))})
	}
	c.Lines = []line{{Class: "s-primary", Points: points(x, pa)}, {Class: "s-shadow", Points: points(x, pb)}}
	c.Legend = []legend{{X: c.L + 10, Class: "s-primary", Label: "primary"}, {X: c.L + 86, Class: "s-shadow", Label: "shadow"}}
	return c
}

// diffChart draws the histogram of each pair's max |Δ|, one equal-width bar
// per bin whatever the bin's span, labelled with the bin edges.
func diffChart(id, label string, bins []report.Bin) chart {
	c := newChart(id, "chart-diff", "Histogram of max |Δ| per pair", label)
	c.YTitle, c.XTitle = "pairs", "max |Δ| between primary and shadow outputs"
	var hi int64
	for _, b := range bins {
		hi = max(hi, b.Count)
	}
	if len(bins) == 0 || hi == 0 {
		c.Empty = "No float outputs compared in this window."
		return c
	}
	step := math.Max(1, niceStep(float64(hi), 4))
	step = math.Ceil(step)
	top := math.Ceil(float64(hi)/step) * step
	ys := linearScale{0, top, c.B, c.T}
	c.YTicks = ys.ticks(step, func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) })
	w := (c.R - c.L) / float64(len(bins))
	every := max(1, (len(bins)+5)/6)
	for i, b := range bins {
		x := c.L + float64(i)*w
		y := ys.y(float64(b.Count))
		c.Bars = append(c.Bars, bar{X: px(x + 1), Y: y, W: px(math.Max(1, w-2)), H: px(c.B - y),
			Title: fmt.Sprintf("[%s, %s): %d pairs", formatEdge(b.Lo), formatEdge(b.Hi), b.Count)})
		if i%every == 0 {
			c.XTicks = append(c.XTicks, tick{X: px(x), Label: shortEdge(b.Lo)})
		}
	}
	// The last edge only where its label cannot run into the one before.
	if last := c.XTicks[len(c.XTicks)-1]; c.R-last.X >= 48 {
		c.XTicks = append(c.XTicks, tick{X: c.R, Label: shortEdge(bins[len(bins)-1].Hi)})
	}
	return c
}

func formatEdge(v float64) string {
	if v == 0 {
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// shortEdge labels an axis tick with two significant digits.
func shortEdge(v float64) string {
	if v == 0 {
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}
