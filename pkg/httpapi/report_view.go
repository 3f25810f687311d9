package httpapi

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is the view model of the report page and of the request page:
// what a report.Report or a report.RequestDetail becomes before the templates
// in web/templates see it (cards, selectors, links, confusion matrices,
// tables of pairs, tensors as text) and the example commands of the empty
// state.

// reportView is what the report page shows.
type reportView struct {
	Title   string
	R       *report.Report
	Query   report.Query
	Windows []navLink
	// ShadowOptions, VersionOptions and OriginOptions fill the selector.
	ShadowOptions, VersionOptions, OriginOptions []option
	// Tolerance is the tolerance field's value: empty unless the URL gave one.
	Tolerance string
	Cards     []shadowCard
	// NoTraffic says the window has no request at all.
	NoTraffic bool
	Examples  examples
	// AdminEnabled says promoting can work: admin routes are on.
	AdminEnabled bool
	JSONHref     string
}

type navLink struct {
	Label, Href string
	Current     bool
}

type option struct {
	Value, Label string
	Selected     bool
}

// examples are the commands the empty state suggests.
type examples struct {
	Predict, Feedback, Replay string
}

type shadowCard struct {
	*report.ShadowReport
	Key            string
	Confusion      *confusionView
	AgreementChart chart
	LatencyChart   chart
	DiffChart      chart
	Latest         []pairRow
	Largest        []pairRow
	SampledOutRate float64
	// BackfillRate and PendingRate are shares of the offered jobs, like
	// the other rates of the traffic panel.
	BackfillRate, PendingRate float64
	// DropReasons break Dropped down, largest first.
	DropReasons []dropReason
	// OriginFilter is the query's origin filter, which the comparison's
	// figures follow.
	OriginFilter string
	RatioP95     float64
	CSVHref      string
	AdminEnabled bool
}

// pairsTable is one table of disagreements.
type pairsTable struct {
	Title, Class string
	Rows         []pairRow
}

type dropReason struct {
	Reason, Label string
	N             int64
}

// dropLabels say what each reason of a drop means on the page.
var dropLabels = map[string]string{
	understudy.DropShed:        "shed, no backlog",
	understudy.DropBacklogFull: "backlog full",
	understudy.DropNoInputs:    "inputs not stored",
	understudy.DropExpired:     "expired in the backlog",
	understudy.DropUnloaded:    "shadow unloaded",
}

// originLabels name the origin filter's choices.
var originLabels = map[string]string{
	report.OriginAll:          "all pairs",
	understudy.OriginLive:     "live",
	understudy.OriginBackfill: "backfilled",
	understudy.OriginBacktest: "backtested",
}

type pairRow struct {
	report.Pair
	Href                                string
	Inputs, PrimaryOutput, ShadowOutput string
}

type confusionView struct {
	Classes []int64
	Rows    []confusionRow
}

type confusionRow struct {
	Class int64
	Cells []confusionCell
	Total int64
}

type confusionCell struct {
	Primary, Shadow int64
	Count           int64
	Diag            bool
	// Heat is 0 (empty) to 5 (the row's largest share), for shading.
	Heat int
}

func (s *Server) reportView(r *http.Request, rep *report.Report) reportView {
	in := r.URL.Query()
	q := rep.Query
	if q.Window == "" {
		q.Window = "1h"
	}
	if q.Origin == "" {
		q.Origin = report.OriginAll
	}
	v := reportView{
		Title:        "Understudy report",
		R:            rep,
		Query:        q,
		Tolerance:    in.Get("tolerance"),
		NoTraffic:    rep.Requests == 0 && len(rep.Shadows) == 0,
		AdminEnabled: s.Admin != nil && s.AdminToken != "",
	}
	if rep.Primary.Name != "" {
		v.Title = "Understudy · " + rep.Primary.Name
	}
	// link keeps the other selections and changes one.
	link := func(path string, set map[string]string) string {
		p := url.Values{}
		for _, k := range []string{"window", "shadow", "version", "tolerance", "origin"} {
			if in.Get(k) != "" {
				p.Set(k, in.Get(k))
			}
		}
		for k, val := range set {
			if val == "" {
				p.Del(k)
			} else {
				p.Set(k, val)
			}
		}
		if len(p) == 0 {
			return path
		}
		return path + "?" + p.Encode()
	}
	for _, w := range report.WindowNames {
		v.Windows = append(v.Windows, navLink{Label: w, Href: link("/report", map[string]string{"window": w}), Current: w == q.Window})
	}
	v.JSONHref = link("/api/report", nil)

	for _, o := range report.OriginNames {
		v.OriginOptions = append(v.OriginOptions, option{Value: o, Label: originLabels[o], Selected: o == q.Origin})
	}
	v.ShadowOptions = []option{{Value: "", Label: "all shadows", Selected: q.Shadow == ""}}
	v.VersionOptions = []option{{Value: "", Label: "all versions", Selected: q.Version == ""}}
	seenName, seenVersion := map[string]bool{}, map[string]bool{}
	for _, m := range rep.Versions {
		if !seenName[m.Name] {
			seenName[m.Name] = true
			v.ShadowOptions = append(v.ShadowOptions, option{Value: m.Name, Label: m.Name, Selected: m.Name == q.Shadow})
		}
		if (q.Shadow == "" || m.Name == q.Shadow) && !seenVersion[m.Version] {
			seenVersion[m.Version] = true
			v.VersionOptions = append(v.VersionOptions, option{Value: m.Version, Label: m.Name + "@" + m.Version, Selected: m.Version == q.Version})
		}
	}
	// A selection with no data in this window stays selectable.
	if q.Shadow != "" && !seenName[q.Shadow] {
		v.ShadowOptions = append(v.ShadowOptions, option{Value: q.Shadow, Label: q.Shadow, Selected: true})
	}
	if q.Version != "" && !seenVersion[q.Version] {
		v.VersionOptions = append(v.VersionOptions, option{Value: q.Version, Label: q.Version, Selected: true})
	}

	for i := range rep.Shadows {
		sr := &rep.Shadows[i]
		label := sr.Name + "@" + sr.Version
		c := shadowCard{
			ShadowReport:   sr,
			Key:            fmt.Sprintf("shadow-%d", i),
			AgreementChart: agreementChart(fmt.Sprintf("chart-agreement-%d", i), label, sr.Classification == nil && sr.Regression != nil, sr.Charts.Agreement, rep.Thresholds.MinAgreement),
			LatencyChart:   latencyChart(fmt.Sprintf("chart-latency-%d", i), "p50 latency of the primary and "+label+" over time, "+latencyPairs(sr)+" pairs", sr.Charts.Latency),
			DiffChart:      diffChart(fmt.Sprintf("chart-diff-%d", i), "Histogram of the largest absolute output difference per pair, "+label, sr.Charts.DiffHist),
			RatioP95:       safeRatio(sr.Latency.ShadowP95, sr.Latency.PrimaryP95),
			AdminEnabled:   v.AdminEnabled,
			CSVHref:        pairsHref(sr, q),
			OriginFilter:   q.Origin,
		}
		if t := &sr.Traffic; t.Offered > 0 {
			c.SampledOutRate = float64(t.SampledOut) / float64(t.Offered)
			c.BackfillRate = float64(t.Backfill) / float64(t.Offered)
			c.PendingRate = float64(t.Pending) / float64(t.Offered)
		}
		c.DropReasons = dropReasons(sr.Traffic.DropReasons)
		if cl := sr.Classification; cl != nil && len(cl.Classes) > 0 {
			c.Confusion = newConfusion(cl)
		}
		c.Latest = pairRows(sr.Disagreements.Latest)
		c.Largest = pairRows(sr.Disagreements.Largest)
		v.Cards = append(v.Cards, c)
	}
	if v.NoTraffic {
		v.Examples = s.examples(r)
	}
	return v
}

// latencyPairs names the origin of the latency figures: live unless an
// offline report asked otherwise.
func latencyPairs(sr *report.ShadowReport) string {
	if sr.Latency.Origin == "" {
		return understudy.OriginLive
	}
	return sr.Latency.Origin
}

// dropReasons lists the reasons of drops, largest first, then by name.
func dropReasons(m map[string]int64) []dropReason {
	var out []dropReason
	for reason, n := range m {
		label := dropLabels[reason]
		if label == "" {
			label = strings.ReplaceAll(reason, "_", " ")
		}
		out = append(out, dropReason{Reason: reason, Label: label, N: n})
	}
	slices.SortFunc(out, func(a, b dropReason) int {
		return cmp.Or(cmp.Compare(b.N, a.N), strings.Compare(a.Reason, b.Reason))
	})
	return out
}

// pairsHref links the CSV of a shadow's disagreements in the window, of
// the origins the card shows.
func pairsHref(sr *report.ShadowReport, q report.Query) string {
	v := url.Values{"shadow": {sr.Name}, "version": {sr.Version}, "disagree": {"true"}, "window": {q.Window}, "format": {"csv"}}
	if q.Origin != "" && q.Origin != report.OriginAll {
		v.Set("origin", q.Origin)
	}
	if q.Tolerance != report.DefaultTolerance {
		v.Set("tolerance", strconv.FormatFloat(q.Tolerance, 'g', -1, 64))
	}
	return "/api/pairs?" + v.Encode()
}

func newConfusion(cl *report.Classification) *confusionView {
	cv := &confusionView{Classes: cl.Classes}
	for i, row := range cl.Confusion {
		if i >= len(cl.Classes) {
			break
		}
		cr := confusionRow{Class: cl.Classes[i]}
		var top int64
		for _, n := range row {
			cr.Total += n
			top = max(top, n)
		}
		for j, n := range row {
			if j >= len(cl.Classes) {
				break
			}
			heat := 0
			if n > 0 && top > 0 {
				heat = 1 + int(4*n/top)
			}
			cr.Cells = append(cr.Cells, confusionCell{Primary: cl.Classes[i], Shadow: cl.Classes[j], Count: n, Diag: i == j, Heat: min(heat, 5)})
		}
		cv.Rows = append(cv.Rows, cr)
	}
	return cv
}

func pairRows(ps []report.Pair) []pairRow {
	out := make([]pairRow, len(ps))
	for i, p := range ps {
		out[i] = pairRow{Pair: p, Href: "/report/requests/" + url.PathEscape(p.RequestID),
			Inputs: compactTensors(p.Inputs, 72), PrimaryOutput: compactTensors(p.PrimaryOutput, 72), ShadowOutput: compactTensors(p.ShadowOutput, 72)}
	}
	return out
}

// examples builds the commands that send traffic to this server, with an
// input of the primary's shape when it is small enough to type.
func (s *Server) examples(r *http.Request) examples {
	base := "http://" + r.Host
	body := `{"input": [[5.1, 3.5, 1.4, 0.2]]}`
	if s.Models != nil {
		for _, m := range s.Models.List() {
			if m.Role == understudy.RolePrimary && m.Signature != nil {
				if b, ok := exampleBody(m.Signature.Inputs); ok {
					body = b
				}
				break
			}
		}
	}
	return examples{
		Predict:  fmt.Sprintf("curl -s %s/predict -H 'Content-Type: application/json' -d '%s'", base, body),
		Feedback: fmt.Sprintf(`curl -s %s/feedback -d '{"id": "<id from the answer>", "label": 1}'`, base),
		Replay:   fmt.Sprintf("understudy replay --url %s testdata/iris-holdout.jsonl", base),
	}
}

// exampleBody writes a /predict body of zeros in the inputs' shapes, with
// dynamic dimensions as 1; false when it would be too long to be useful.
func exampleBody(inputs []understudy.TensorInfo) (string, bool) {
	zero := func(info understudy.TensorInfo) (string, bool) {
		var elem string
		switch {
		case info.DType == understudy.String:
			elem = `""`
		case info.DType == understudy.Bool:
			elem = "false"
		default:
			elem = "0"
		}
		n := 1
		for _, d := range info.Dims {
			n *= int(max(d, 1))
		}
		if n > 16 {
			return "", false
		}
		var build func(dims []int64) string
		build = func(dims []int64) string {
			if len(dims) == 0 {
				return elem
			}
			k := int(max(dims[0], 1))
			parts := make([]string, k)
			for i := range parts {
				parts[i] = build(dims[1:])
			}
			return "[" + strings.Join(parts, ", ") + "]"
		}
		return build(info.Dims), true
	}
	if len(inputs) == 1 {
		z, ok := zero(inputs[0])
		return `{"input": ` + z + `}`, ok
	}
	var parts []string
	for _, in := range inputs {
		z, ok := zero(in)
		if !ok {
			return "", false
		}
		name, _ := json.Marshal(in.Name)
		parts = append(parts, string(name)+": "+z)
	}
	return `{"inputs": {` + strings.Join(parts, ", ") + `}}`, len(parts) > 0
}

// requestView is what the page of one request shows.
type requestView struct {
	Title    string
	D        *report.RequestDetail
	Inputs   []tensorView
	Outputs  []tensorView
	Shadows  []shadowView
	JSONHref string
}

type shadowView struct {
	*report.ShadowDetail
	Outputs []tensorView
}

type tensorView struct {
	Name, DType, Shape, Data string
}

// maxTensorText bounds one tensor's text on the page; the JSON has it all.
const maxTensorText = 20000

func tensorViews(stored string) []tensorView {
	if stored == "" {
		return nil
	}
	var m map[string]*storedTensor
	if err := json.Unmarshal([]byte(stored), &m); err != nil {
		return []tensorView{{Name: "(unparsed)", Data: clipText(stored, maxTensorText)}}
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([]tensorView, 0, len(names))
	for _, k := range names {
		t := m[k]
		if t == nil {
			out = append(out, tensorView{Name: k, Data: "null"})
			continue
		}
		shape := make([]string, len(t.Shape))
		for i, d := range t.Shape {
			shape[i] = strconv.FormatInt(d, 10)
		}
		out = append(out, tensorView{Name: k, DType: t.DType, Shape: "[" + strings.Join(shape, ", ") + "]", Data: clipText(roundJSON(t.Data, 0), maxTensorText)})
	}
	return out
}
