package reporttest

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/store/storetest"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure Pairs filters by shadow, time and disagreement, orders newest
// first or by |Δ|, and that WriteCSV writes one row per pair with the
// stored values.
func testPairsAndCSV(t *testing.T, open storetest.Opener) {
	db := open(t)
	reqs, runs := scenario()
	write(t, db, reqs, runs)
	ctx := context.Background()
	from := now.Add(-time.Hour).Truncate(time.Minute)

	got, err := report.Pairs(ctx, db, report.PairFilter{Shadow: "s1", Since: from, Until: now, DisagreeOnly: true, Tolerance: report.DefaultTolerance})
	if err != nil {
		t.Fatalf("Pairs: %v", err)
	}
	assertEqual(t, "disagreements", strings.Join(pairIDs(got), " "), "r35 r33 r29 r26 r18 r14 r11 r05 r01")

	got, err = report.Pairs(ctx, db, report.PairFilter{Shadow: "s2", Limit: 3})
	if err != nil {
		t.Fatalf("Pairs: %v", err)
	}
	assertEqual(t, "newest s2", strings.Join(pairIDs(got), " "), "outside-120100 r38 r36")

	got, err = report.Pairs(ctx, db, report.PairFilter{Largest: true, Limit: 2})
	if err != nil {
		t.Fatalf("Pairs: %v", err)
	}
	assertEqual(t, "largest", fmt.Sprintf("%v %s %g", pairIDs(got), got[0].Shadow, *got[0].MaxAbsDiff), "[outside-120100 outside-105959] s2 2000")

	got, err = report.Pairs(ctx, db, report.PairFilter{Shadow: "s1", Since: from.Add(95 * time.Second), Until: from.Add(3 * time.Minute)})
	if err != nil {
		t.Fatalf("Pairs: %v", err)
	}
	assertEqual(t, "in [11:01:35, 11:03)", strings.Join(pairIDs(got), " "), "r01")
	p := got[0]
	assertEqual(t, "Time", p.Time.Equal(from.Add(30*time.Second+85*time.Second+2*time.Second)), true)
	assertEqual(t, "classes", fmt.Sprint(*p.PrimaryClass, *p.ShadowClass, *p.Agreement, *p.Label), "1 2 0 2")

	var buf bytes.Buffer
	if err := report.WriteCSV(&buf, got); err != nil {
		t.Fatalf("WriteCSV: %v", err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("read CSV: %v", err)
	}
	assertEqual(t, "CSV rows", len(recs), 2)
	assertEqual(t, "header", strings.Join(recs[0], ","),
		"request_id,time,shadow,version,primary_model,primary_version,status,primary_class,shadow_class,agreement,max_abs_diff,label,inputs,primary_outputs,shadow_outputs,origin")
	row := recs[1]
	assertEqual(t, "row", strings.Join(row[:12], ","),
		fmt.Sprintf("r01,%s,s1,v1,iris,pv1,ok,1,2,0,%g,2", p.Time.UTC().Format(time.RFC3339Nano), *p.MaxAbsDiff))
	assertEqual(t, "inputs", row[12], p.Inputs)
	assertEqual(t, "outputs", row[13] != "" && row[14] != "", true)
	assertEqual(t, "origin", row[15], understudy.OriginLive)
}

// Ensure Request returns everything stored about a request, with the
// shadows by name, and ENOTFOUND for an unknown id.
func testRequest(t *testing.T, open storetest.Opener) {
	db := open(t)
	reqs, runs := scenario()
	write(t, db, reqs, runs)
	ctx := context.Background()

	d, err := report.Request(ctx, db, "r14")
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	r := reqs[14]
	assertEqual(t, "Model", d.Model+"/"+d.Version, "iris/pv1")
	assertEqual(t, "Time", d.Time.Equal(r.at), true)
	assertEqual(t, "LatencyUS", d.LatencyUS, float64(r.latency.Microseconds()))
	assertEqual(t, "CPUUS", d.CPUUS, float64(r.cpu.Microseconds()))
	assertEqual(t, "Status", d.Status, "ok")
	assertEqual(t, "Label", *d.Label, 2.0)
	assertEqual(t, "inputs", d.Inputs != "" && d.InputsSHA256 != "" && d.InputsSize == len(d.Inputs), true)
	assertEqual(t, "outputs", strings.Contains(d.Outputs, `"label"`), true)
	assertEqual(t, "shadows", len(d.Shadows), 2)
	s1, s2 := d.Shadows[0], d.Shadows[1]
	assertEqual(t, "shadow names", s1.Shadow+" "+s2.Shadow, "s1 s2")
	assertEqual(t, "s1 classes", fmt.Sprint(*s1.Comparison.PrimaryClass, *s1.Comparison.ShadowClass, *s1.Comparison.Agreement), "2 0 0")
	assertEqual(t, "s1 elements", s1.Comparison.Elements, 3)
	assertEqual(t, "s1 PrimaryLatencyUS", *s1.PrimaryLatencyUS, float64(r.latency.Microseconds()))
	for _, run := range runs {
		if run.req == r && run.shadow == "s1" {
			assertEqual(t, "s1 CPUUS", s1.CPUUS, float64(run.cpu.Microseconds()))
		}
	}
	assertEqual(t, "s2 CPUUS", s2.CPUUS, 0.0)
	assertEqual(t, "origins", s1.Origin+" "+s2.Origin, "live live")
	assertEqual(t, "s2 score", *s2.Comparison.ShadowScore, float64(r.value+0.0625*4-0.1))

	_, err = report.Request(ctx, db, "r07") // the primary failed: no shadows
	assertEqual(t, "failed prediction", err, nil)
	_, err = report.Request(ctx, db, "nope")
	assertEqual(t, "unknown id", understudy.ErrorCode(err), understudy.ENOTFOUND)
}
