// Package report computes the comparison report between the primary and each
// shadow: traffic, agreement, accuracy on labelled requests, latency, drift,
// resource use and a verdict. The same values feed GET /report (HTML) and
// GET /api/report (JSON).
//
// It reads through the store contract (pkg/store) and must not import a
// backend such as pkg/sqlite: cmd wires one in. Its figures on a fixed set
// of rows are checked on every backend by report/reporttest, which each
// backend's tests run (go test ./pkg/sqlite runs them on SQLite).
package report

import (
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Windows are the selectable time windows, by name.
var Windows = map[string]time.Duration{
	"15m": 15 * time.Minute,
	"1h":  time.Hour,
	"24h": 24 * time.Hour,
	"7d":  7 * 24 * time.Hour,
	"all": 0,
}

// WindowNames lists the windows in display order.
var WindowNames = []string{"15m", "1h", "24h", "7d", "all"}

// Query selects what a report covers.
type Query struct {
	// Window is one of WindowNames; default "1h".
	Window string `json:"window"`
	// Shadow limits the report to one shadow name; "" means every shadow.
	Shadow string `json:"shadow,omitempty"`
	// Version limits it to one shadow version; "" means every version.
	Version string `json:"version,omitempty"`
	// Tolerance is the |Δ| under which a float output counts as matching.
	Tolerance float64 `json:"tolerance"`
	// Origin selects the pairs that agreement, regression error,
	// accuracy, McNemar, drift, the error check and the disagreement lists
	// use: one of OriginNames; "" is "all". The traffic section counts
	// every origin whatever it says.
	Origin string `json:"origin"`
	// LatencyOrigin is the origin of the pairs that latency and CPU per
	// inference are judged on; "" is live, the only origin whose run
	// times are those of serving. An offline tool sets it to backtest to
	// judge latency on backtest runs, which are CPU times per run on
	// stored traffic.
	LatencyOrigin string `json:"-"`
	// Primary is the model serving now, which the server knows; zero takes
	// the model of the newest stored prediction.
	Primary understudy.ModelRef `json:"-"`
	// ExactMaxPairs, if positive, replaces ExactMaxPairs, so that tests can
	// take the histogram path without filling 200,000 pairs.
	ExactMaxPairs int64 `json:"-"`
}

// Thresholds decide the verdict. They are configurable on the server.
type Thresholds struct {
	// MinPairs is the least number of compared pairs before any verdict.
	MinPairs int64 `json:"min_pairs"`
	// MinAgreement is the least Wilson lower bound of agreement.
	MinAgreement float64 `json:"min_agreement"`
	// MaxLatencyRatio is the largest shadow/primary p99 latency ratio.
	MaxLatencyRatio float64 `json:"max_latency_ratio"`
	// MaxErrorRateIncrease is how much higher the shadow's error rate may
	// be than the primary's (absolute, e.g. 0.001).
	MaxErrorRateIncrease float64 `json:"max_error_rate_increase"`
	// Alpha is the significance level of McNemar's test for "accuracy not
	// significantly worse".
	Alpha float64 `json:"alpha"`
}

// DefaultThresholds are used when the server is not told otherwise.
var DefaultThresholds = Thresholds{MinPairs: 30, MinAgreement: 0.8, MaxLatencyRatio: 1.5, MaxErrorRateIncrease: 0.001, Alpha: 0.05}

// StoreHealth is what one replica's store writer says about itself.
type StoreHealth struct {
	Replica string `json:"replica"`
	// Lost counts rows handed to the store that it could not write: queue
	// full, a failed batch, or dropped past its buffer while the database
	// was unreachable. Counted since the process started.
	Lost int64 `json:"lost"`
	// Degraded says why the store cannot write now, "" when it can.
	Degraded string `json:"degraded,omitempty"`
}

// ReplicaReport is one replica's share of the window's traffic.
type ReplicaReport struct {
	Replica  string    `json:"replica"`
	Requests int64     `json:"requests"`
	Errors   int64     `json:"errors"`
	Pairs    int64     `json:"pairs"`
	Share    float64   `json:"share"` // of the window's requests
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
}

// Report is the whole comparison for a window.
type Report struct {
	GeneratedAt time.Time  `json:"generated_at"`
	Query       Query      `json:"query"`
	From        time.Time  `json:"from"` // zero for "all"
	To          time.Time  `json:"to"`
	Thresholds  Thresholds `json:"thresholds"`
	// Primary is the model serving now.
	Primary understudy.ModelRef `json:"primary"`
	// Requests is the number of primary predictions in the window, and
	// PrimaryErrors how many of them failed.
	Requests      int64 `json:"requests"`
	PrimaryErrors int64 `json:"primary_errors"`
	// Shadows has one entry per shadow name and version seen in the window.
	Shadows []ShadowReport `json:"shadows"`
	// Replicas breaks the window's traffic down by the replica that
	// served and stored it, when several share the store.
	Replicas []ReplicaReport `json:"replicas"`
	// Store is the health of the store as the replica that built the
	// report sees it: rows it could not store are missing from every
	// figure above. Nil when unknown.
	Store *StoreHealth `json:"store,omitempty"`
	// Versions lists every shadow version with data, for the selector.
	Versions []understudy.ModelRef `json:"versions"`
	// Events are the latest lifecycle events.
	Events []understudy.Event `json:"events"`
	// ElapsedMS is how long the report took to compute.
	ElapsedMS float64 `json:"elapsed_ms"`
}

// ShadowReport compares one shadow version with the primary.
type ShadowReport struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// PrimaryVersions are the primary versions it was compared against.
	PrimaryVersions []understudy.ModelRef `json:"primary_versions"`

	Traffic        Traffic         `json:"traffic"`
	Classification *Classification `json:"classification,omitempty"`
	Regression     *Regression     `json:"regression,omitempty"`
	Accuracy       *Accuracy       `json:"accuracy,omitempty"`
	Latency        Latency         `json:"latency"`
	Drift          Drift           `json:"drift"`
	Resources      Resources       `json:"resources"`
	Charts         Charts          `json:"charts"`
	Disagreements  Disagreements   `json:"disagreements"`
	Verdict        Verdict         `json:"verdict"`
	// Canary is its canary part of the window, when it was a canary.
	Canary *CanaryReport `json:"canary,omitempty"`
}

// Traffic counts what happened to the shadow jobs of the window's requests,
// by the request's time. The breakdown by origin, the skips and the
// backlog ignore the origin filter: they say where the evidence came from.
// Mirrored, OK, Errors and Timeouts, and their rates, count the pairs of
// the origin filter, those the comparison uses.
type Traffic struct {
	Requests int64 `json:"requests"` // primary predictions in the window
	// Live, Backfill and Backtest count the shadow runs stored (ok, error
	// or timeout) of each origin.
	Live     int64 `json:"live_pairs"`
	Backfill int64 `json:"backfill_pairs"`
	Backtest int64 `json:"backtest_pairs"`
	// SampledOut were not mirrored because of the sampling rate.
	SampledOut int64 `json:"sampled_out"`
	// Deferred were deferred by shedding into the backlog: each then ran
	// (a backfill pair), is Pending, or was dropped.
	Deferred int64 `json:"deferred"`
	// Pending are deferred jobs still in the backlog.
	Pending int64 `json:"pending"`
	// Dropped are jobs of live traffic finally dropped, for the reasons
	// in DropReasons (understudy.Drop*), which add up to it.
	Dropped     int64            `json:"dropped"`
	DropReasons map[string]int64 `json:"drop_reasons"`
	// NotBacktestable counts stored requests a backtest could not run
	// (inputs over the cap). They were never live traffic offered to the
	// shadow, so they are neither in Dropped nor in Offered.
	NotBacktestable int64 `json:"not_backtestable"`
	// Offered is Live + Backfill + SampledOut + Dropped + Pending: the
	// successful primary predictions this version was offered live.
	// Requests counts the whole window, including the primary's errors
	// (never mirrored) and the time before this version was loaded, so
	// the rates are over Offered. Backtest pairs were not offered.
	Offered int64 `json:"offered"`
	// Coverage is (Live + Backfill) ÷ Offered: the share of the offered
	// jobs that have a pair. LiveCoverage is Live ÷ Offered.
	Coverage     float64 `json:"coverage"`
	LiveCoverage float64 `json:"live_coverage"`
	// Mirrored counts the stored shadow runs of the origin filter, of
	// which OK, Errors and Timeouts.
	Mirrored int64 `json:"mirrored"`
	OK       int64 `json:"ok"`
	Errors   int64 `json:"errors"`
	Timeouts int64 `json:"timeouts"`
	// MirrorRate is Coverage, kept under its old name; DropRate is
	// Dropped ÷ Offered.
	MirrorRate float64 `json:"mirror_rate"`
	DropRate   float64 `json:"drop_rate"`
	// ErrorRate and TimeoutRate are fractions of Mirrored.
	ErrorRate   float64 `json:"error_rate"`
	TimeoutRate float64 `json:"timeout_rate"`
	// PrimaryErrorRate is the primary's error rate over the same requests.
	PrimaryErrorRate float64 `json:"primary_error_rate"`
}

// Classification compares predicted classes (the first class output).
type Classification struct {
	Output    string  `json:"output"`
	Pairs     int64   `json:"pairs"` // compared rows
	Agree     int64   `json:"agree"`
	Agreement float64 `json:"agreement"`
	// WilsonLow and WilsonHigh bound Agreement at 95%.
	WilsonLow  float64 `json:"wilson_low"`
	WilsonHigh float64 `json:"wilson_high"`
	Kappa      float64 `json:"kappa"`
	// Classes label the rows (primary) and columns (shadow) of Confusion.
	Classes   []int64   `json:"classes"`
	Confusion [][]int64 `json:"confusion"`
}

// Regression compares float outputs (the first float output), element-wise.
type Regression struct {
	Output    string  `json:"output"`
	Pairs     int64   `json:"pairs"`
	Elements  int64   `json:"elements"`
	MAE       float64 `json:"mae"`
	RMSE      float64 `json:"rmse"`
	MaxAbs    float64 `json:"max_abs"`
	Tolerance float64 `json:"tolerance"`
	// WithinTol is the share of pairs whose every element is within
	// Tolerance.
	WithinTol float64 `json:"within_tol"`
	// Exact is false when WithinTol comes from the histogram of per-pair
	// max|Δ| (large windows); then only pairs within a factor 1.047 of
	// Tolerance can be misjudged.
	Exact bool `json:"exact"`
}

// Accuracy compares both models on the same labelled requests.
type Accuracy struct {
	Labelled int64 `json:"labelled"` // labelled requests with an ok shadow result
	// Compared is how many of them the comparison below is over: all of
	// them for class labels, those with both scores for numeric labels,
	// and 0 when the labels fit neither.
	Compared int64 `json:"compared"`
	// For class labels:
	PrimaryCorrect int64   `json:"primary_correct"`
	ShadowCorrect  int64   `json:"shadow_correct"`
	PrimaryAcc     float64 `json:"primary_accuracy"`
	ShadowAcc      float64 `json:"shadow_accuracy"`
	// B: primary right and shadow wrong; C: primary wrong and shadow right.
	B        int64   `json:"b"`
	C        int64   `json:"c"`
	McNemarP float64 `json:"mcnemar_p"`
	// For numeric labels (regression), mean absolute error of each.
	Numeric    bool    `json:"numeric"`
	PrimaryMAE float64 `json:"primary_mae,omitempty"`
	ShadowMAE  float64 `json:"shadow_mae,omitempty"`
}

// Latency summarises run times in microseconds, over the ok pairs of one
// origin, live unless Query.LatencyOrigin says otherwise: only live runs
// are timed as served, so the origin filter does not apply.
type Latency struct {
	// Origin is the origin of the pairs it is over.
	Origin     string  `json:"origin"`
	N          int64   `json:"n"`
	PrimaryP50 float64 `json:"primary_p50_us"`
	PrimaryP95 float64 `json:"primary_p95_us"`
	PrimaryP99 float64 `json:"primary_p99_us"`
	ShadowP50  float64 `json:"shadow_p50_us"`
	ShadowP95  float64 `json:"shadow_p95_us"`
	ShadowP99  float64 `json:"shadow_p99_us"`
	RatioP50   float64 `json:"ratio_p50"`
	RatioP99   float64 `json:"ratio_p99"`
	// Exact is false when percentiles come from histograms (large windows).
	Exact bool `json:"exact"`
}

// Drift compares the distributions of the two models' outputs.
type Drift struct {
	// PSI of the predicted-class distribution, shadow against primary.
	PSI *float64 `json:"psi,omitempty"`
	// KS compares the score distributions (the first row's top score of the
	// first float output) of the two models.
	KSD       *float64 `json:"ks_d,omitempty"`
	KSP       *float64 `json:"ks_p,omitempty"`
	KSSamples int      `json:"ks_samples,omitempty"`
}

// Resources are per-model costs.
type Resources struct {
	PrimaryFileSize int64 `json:"primary_file_size"`
	ShadowFileSize  int64 `json:"shadow_file_size"`
	// Memory added to the process when the model was loaded, in bytes.
	PrimaryMemory int64 `json:"primary_memory"`
	ShadowMemory  int64 `json:"shadow_memory"`
	// CPU time per inference, in microseconds; the shadow's over the pairs
	// of the latency's origin (live), whatever the origin filter.
	PrimaryCPUUS float64 `json:"primary_cpu_us"`
	ShadowCPUUS  float64 `json:"shadow_cpu_us"`
}

// Charts hold the series the page draws.
type Charts struct {
	Agreement []Point `json:"agreement"`      // per bucket: agreement and pairs
	Latency   []Point `json:"latency"`        // per bucket: primary and shadow p50 (µs)
	DiffHist  []Bin   `json:"diff_histogram"` // of per-pair max |Δ|
}

// Point is one time bucket of a series.
type Point struct {
	Time time.Time `json:"t"`
	A    float64   `json:"a"` // agreement, or primary latency
	B    float64   `json:"b"` // pairs, or shadow latency
}

// Bin is one histogram bar over [Lo, Hi).
type Bin struct {
	Lo    float64 `json:"lo"`
	Hi    float64 `json:"hi"`
	Count int64   `json:"count"`
}

// Disagreements are the pairs worth looking at.
type Disagreements struct {
	// Latest are the newest 20 pairs whose shadow run failed or timed out,
	// whose classes disagree (agreement < 1), or, without a class output,
	// whose max|Δ| is above the tolerance.
	Latest []Pair `json:"latest"`
	// Largest are the 20 pairs with the largest max|Δ| (among equal ones,
	// which are listed is unspecified).
	Largest []Pair `json:"largest"`
}

// Pair is one stored primary/shadow pair.
type Pair struct {
	RequestID      string    `json:"request_id"`
	Time           time.Time `json:"time"`
	Shadow         string    `json:"shadow"`
	Version        string    `json:"version"`
	PrimaryModel   string    `json:"primary_model"`
	PrimaryVersion string    `json:"primary_version"`
	PrimaryClass   *int64    `json:"primary_class,omitempty"`
	ShadowClass    *int64    `json:"shadow_class,omitempty"`
	Agreement      *float64  `json:"agreement,omitempty"`
	MaxAbsDiff     *float64  `json:"max_abs_diff,omitempty"`
	Status         string    `json:"status"`
	Label          *float64  `json:"label,omitempty"`
	// Origin is one of understudy.Origins.
	Origin string `json:"origin"`
	// Inputs and the two outputs, as stored (JSON).
	Inputs        string `json:"inputs,omitempty"`
	PrimaryOutput string `json:"primary_outputs,omitempty"`
	ShadowOutput  string `json:"shadow_outputs,omitempty"`
}

// Verdict says whether the shadow is ready to promote, with every reason.
type Verdict struct {
	Ready  bool    `json:"ready"`
	Checks []Check `json:"checks"`
	// Pairs counts the stored shadow runs the verdict judges (those of
	// the origin filter), LivePairs the live ones among them, and
	// LiveShare is LivePairs ÷ Pairs (0 without pairs). They inform; no
	// check fails on them.
	Pairs     int64   `json:"pairs"`
	LivePairs int64   `json:"live_pairs"`
	LiveShare float64 `json:"live_share"`
	// Evidence says the same in a sentence, with the origin of the
	// latency figures.
	Evidence string `json:"evidence"`
}

// Check is one condition of the verdict.
type Check struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}
