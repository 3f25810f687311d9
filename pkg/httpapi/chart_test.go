package httpapi

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
)

// Ensure charts degrade to a message without data, draw a single point,
// name the series for shadows without a class output, and label histogram
// edges up to the largest float64 without overlapping the last two.
func TestCharts(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if c := agreementChart("a", "m@v", false, nil, 0.8); c.Empty == "" {
		t.Error("empty agreement chart has no message")
	}
	if c := latencyChart("l", "m@v", nil); c.Empty == "" {
		t.Error("empty latency chart has no message")
	}
	if c := diffChart("d", "m@v", []report.Bin{{Lo: 0, Hi: 1, Count: 0}}); c.Empty == "" {
		t.Error("histogram of zero counts has no message")
	}

	c := agreementChart("a", "m@v", false, []report.Point{{Time: t0, A: 0.95, B: 20}}, 0.8)
	if len(c.Dots) != 1 || c.Dots[0].X <= c.L || c.Dots[0].X >= c.R || c.Rule == nil || len(c.XTicks) == 0 {
		t.Errorf("single point: %+v", c)
	}
	if c.YTicks[0].Label != "0.7" || c.YTicks[len(c.YTicks)-1].Label != "1.0" {
		t.Errorf("y ticks %+v, want 0.7 to 1.0 so the 0.8 minimum shows", c.YTicks)
	}
	if c := agreementChart("a", "m@v", true, []report.Point{{Time: t0, A: 0.5, B: 3}}, 0.8); !strings.Contains(c.Title, "within tolerance") || !strings.Contains(c.Dots[0].Title, "within tolerance 0.5000") {
		t.Errorf("regression series is not named: %q %q", c.Title, c.Dots[0].Title)
	}

	pts := []report.Point{{Time: t0, A: 100, B: 900}, {Time: t0.Add(30 * time.Minute), A: 120, B: 1500}}
	c = latencyChart("l", "m@v", pts)
	if len(c.Lines) != 2 || c.YTicks[len(c.YTicks)-1].Label != "1.50 ms" {
		t.Errorf("latency chart: lines %d, top tick %+v", len(c.Lines), c.YTicks[len(c.YTicks)-1])
	}
	for _, d := range c.Dots {
		if d.Y < c.T || d.Y > c.B || d.X < c.L || d.X > c.R {
			t.Errorf("dot %+v outside the plot", d)
		}
	}

	bins := []report.Bin{{Lo: 0, Hi: 1e-12, Count: 4}, {Lo: 1e-12, Hi: 1e-3, Count: 0}, {Lo: 1e-3, Hi: 0.1, Count: 7}, {Lo: 1e12, Hi: math.MaxFloat64, Count: 1}}
	c = diffChart("d", "m@v", bins)
	if len(c.Bars) != 4 || c.Bars[1].H != 0 || !strings.Contains(c.Bars[3].Title, "1.8e+308") {
		t.Errorf("bars %+v", c.Bars)
	}
	for i := 1; i < len(c.XTicks); i++ {
		if c.XTicks[i].X-c.XTicks[i-1].X < 40 {
			t.Errorf("x tick labels %q and %q overlap", c.XTicks[i-1].Label, c.XTicks[i].Label)
		}
	}
}
