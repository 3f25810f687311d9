package report

import (
	"context"
	"encoding/csv"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// DefaultTolerance is the |Δ| above which a pair without a class output
// counts as a disagreement when a PairFilter sets no Tolerance.
const DefaultTolerance = 1e-4

// PairFilter selects stored pairs for GET /api/pairs, newest first.
type PairFilter struct {
	// Shadow and Version "" select every one.
	Shadow, Version string
	// Since bounds the pairs' time from below and Until from above
	// (exclusive); zero values leave that side open.
	Since, Until time.Time
	// DisagreeOnly keeps pairs whose shadow run failed or timed out, whose
	// classes disagree, or, without a class output, whose max|Δ| is above
	// Tolerance.
	DisagreeOnly bool
	// Tolerance is for DisagreeOnly. 0 is a tolerance like any other: any
	// difference at all counts; callers wanting the default pass
	// DefaultTolerance.
	Tolerance float64
	// Largest orders by max|Δ|, largest first, and keeps only pairs with a
	// float output, instead of newest first.
	Largest bool
	// Limit is the most pairs returned; 0 means 100.
	Limit int
	// Origin keeps the pairs of one of understudy.Origins; "" and "all"
	// keep every one.
	Origin string
}

// Pairs returns the stored pairs that f selects, with their inputs, both
// outputs and the label. DisagreeOnly and Largest stay fast on millions of
// pairs: the rollups say which minutes can hold a match.
func Pairs(ctx context.Context, db store.Reader, f PairFilter) ([]Pair, error) {
	if f.Origin != "" && !slices.Contains(OriginNames, f.Origin) {
		return nil, understudy.Errorf(understudy.EINVALID, "origin %q: want one of %s", f.Origin, strings.Join(OriginNames, ", "))
	}
	order := store.ByTime
	if f.Largest {
		order = store.ByDiff
	}
	snap, err := db.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	recs, err := snap.Origin(storeOrigin(f.Origin)).Pairs(ctx, store.PairFilter{Shadow: f.Shadow, Version: f.Version, Since: f.Since, Until: f.Until,
		DisagreeOnly: f.DisagreeOnly, Tolerance: f.Tolerance, Order: order, Limit: f.Limit})
	if err != nil {
		return nil, err
	}
	return pairs(recs), nil
}

// WriteCSV writes pairs as CSV with a header row. Absent values are empty;
// times are RFC 3339 in UTC; tensors are the stored JSON.
func WriteCSV(w io.Writer, pairs []Pair) error {
	f := func(p *float64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatFloat(*p, 'g', -1, 64)
	}
	i := func(p *int64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatInt(*p, 10)
	}
	cw := csv.NewWriter(w)
	cw.Write([]string{"request_id", "time", "shadow", "version", "primary_model", "primary_version", "status",
		"primary_class", "shadow_class", "agreement", "max_abs_diff", "label", "inputs", "primary_outputs", "shadow_outputs", "origin"})
	for _, p := range pairs {
		cw.Write([]string{cell(p.RequestID), p.Time.UTC().Format(time.RFC3339Nano), cell(p.Shadow), cell(p.Version), cell(p.PrimaryModel), cell(p.PrimaryVersion), p.Status,
			i(p.PrimaryClass), i(p.ShadowClass), f(p.Agreement), f(p.MaxAbsDiff), f(p.Label), p.Inputs, p.PrimaryOutput, p.ShadowOutput, p.Origin})
	}
	cw.Flush()
	return cw.Error()
}

// cell keeps a client's text from running as a spreadsheet formula: Excel,
// LibreOffice and Sheets evaluate a cell that starts with = + - @ or a tab
// or carriage return, and a request id is whatever the client sent (OWASP's
// CSV injection advice: prefix a quote).
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// RequestDetail is everything stored about one request, for the request
// page. The prediction's fields are empty, and PredictionMissing set, when
// only shadow rows survive (a lost or deleted prediction row).
type RequestDetail struct {
	RequestID         string    `json:"request_id"`
	PredictionMissing bool      `json:"prediction_missing,omitempty"`
	Time              time.Time `json:"time"`
	Model             string    `json:"model"`
	Version           string    `json:"version"`
	Status            string    `json:"status"`
	Error             string    `json:"error,omitempty"`
	LatencyUS         float64   `json:"latency_us"`
	CPUUS             float64   `json:"cpu_us,omitempty"` // 0 if not measured
	// Inputs and Outputs are the tensors as stored (JSON); Inputs is empty
	// when they were over the input cap.
	Inputs       string         `json:"inputs,omitempty"`
	InputsSHA256 string         `json:"inputs_sha256"`
	InputsSize   int            `json:"inputs_size"`
	Outputs      string         `json:"outputs,omitempty"`
	Label        *float64       `json:"label,omitempty"`
	LabelTime    time.Time      `json:"label_time,omitzero"`
	Shadows      []ShadowDetail `json:"shadows"`
}

// ShadowDetail is one shadow's stored answer to a request.
type ShadowDetail struct {
	Shadow         string    `json:"shadow"`
	Version        string    `json:"version"`
	PrimaryModel   string    `json:"primary_model"`
	PrimaryVersion string    `json:"primary_version"`
	Time           time.Time `json:"time"`
	Status         string    `json:"status"`
	Error          string    `json:"error,omitempty"`
	LatencyUS      float64   `json:"latency_us"`
	// PrimaryLatencyUS is the primary's latency on this request, as stored
	// with the pair; nil for rows stored without it.
	PrimaryLatencyUS *float64              `json:"primary_latency_us,omitempty"`
	CPUUS            float64               `json:"cpu_us,omitempty"` // 0 if not measured
	Outputs          string                `json:"outputs,omitempty"`
	Comparison       understudy.Comparison `json:"comparison"`
	// Origin is one of understudy.Origins: when and why the shadow ran.
	Origin string `json:"origin"`
}

// Request returns everything stored about a request, or an ENOTFOUND error.
func Request(ctx context.Context, db store.Reader, requestID string) (*RequestDetail, error) {
	snap, err := db.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	st, err := snap.Request(ctx, requestID)
	if err != nil {
		return nil, err
	}
	d := &RequestDetail{RequestID: requestID, PredictionMissing: st.Prediction == nil, Shadows: make([]ShadowDetail, 0, len(st.Shadows))}
	if p := st.Prediction; p != nil {
		d.Time, d.Model, d.Version, d.Status, d.Error = p.Time, p.Model, p.Version, p.Status, p.Error
		d.LatencyUS, d.CPUUS = us(p.Latency), us(p.CPU)
		d.Inputs, d.InputsSHA256, d.InputsSize, d.Outputs = p.Inputs, p.InputsSHA256, p.InputsSize, p.Outputs
		d.Label, d.LabelTime = p.Label, p.LabelTime
	}
	for _, s := range st.Shadows {
		sd := ShadowDetail{Shadow: s.Shadow, Version: s.Version, PrimaryModel: s.PrimaryModel, PrimaryVersion: s.PrimaryVersion,
			Time: s.Time, Status: s.Status, Error: s.Error, LatencyUS: us(s.Latency), CPUUS: us(s.CPU), Outputs: s.Outputs, Comparison: s.Compare,
			Origin: understudy.StoredOrigin(s.Origin)}
		if s.PrimaryLatency != nil {
			v := us(*s.PrimaryLatency)
			sd.PrimaryLatencyUS = &v
		}
		d.Shadows = append(d.Shadows, sd)
	}
	return d, nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
