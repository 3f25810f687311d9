// Package replay sends the rows of a CSV or JSON-lines file to a running
// Understudy server at a steady rate, posts their labels to /feedback, and
// summarises what happened.
//
// It owns the reading of those files, the client and its pacing, and the
// summary. It talks to the server over HTTP only, as any client would, and
// imports the standard library alone: never the server's packages, not even
// the domain, so that it cannot depend on anything a real client lacks.
package replay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNoServer means nothing answered at the server URL, so nothing was sent.
var ErrNoServer = errors.New("no server")

// Config is how a replay runs. The zero value of each field is usable.
type Config struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:8080.
	URL string
	// Rate is predictions per second; 0 sends as fast as Concurrency allows.
	Rate float64
	// Concurrency bounds the requests in flight; 0 means 1.
	Concurrency int
	// Labels posts each labelled row's label to /feedback, under the
	// prediction's id, once its prediction has succeeded.
	Labels bool
	// Repeat is how many times to replay the rows; 0 means 1.
	Repeat int
	// IDPrefix starts generated ids, <prefix>-<pass>-<line>; "" means
	// NewIDPrefix().
	IDPrefix string
	// Limit caps how many predictions are sent; 0 means no cap.
	Limit int
	// Timeout bounds each request; 0 means none.
	Timeout time.Duration
	// Client sends the requests; nil means NewClient(Concurrency).
	Client *http.Client
	// OnResult, if set, is called after each row is done. It is called from
	// several goroutines at once.
	OnResult func(Result)
}

// Result is what happened to one row.
type Result struct {
	// ID is the request id sent, and Line the row's line in the file.
	ID   string
	Line int
	// Status is the prediction's HTTP status, or 0 if there was no answer.
	Status int
	// Err describes a failed prediction; nil when Status is 2xx.
	Err error
	// Latency is the prediction's round trip as the client saw it.
	Latency time.Duration
	// Labelled is true if the label was accepted by /feedback.
	Labelled bool
	// Abandoned is true if the run was cancelled while the row was in flight.
	Abandoned bool
	// Start is when the prediction was sent.
	Start time.Time
}

// Total is the number of predictions a run of f with c will send.
func (c Config) Total(f *File) int {
	n := len(f.Rows) * max(c.Repeat, 1)
	if c.Limit > 0 && c.Limit < n {
		n = c.Limit
	}
	return n
}

// NewClient returns a client whose connections stay open between requests,
// with enough idle connections kept for concurrency workers.
func NewClient(concurrency int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = max(concurrency, 1) * 2
	t.MaxIdleConnsPerHost = max(concurrency, 1) * 2
	t.IdleConnTimeout = 90 * time.Second
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{Transport: t}
}

// NewIDPrefix returns a short prefix, from the time and 32 random bits, so
// that two replays never give the same request id.
func NewIDPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "rp" + strconv.FormatInt(time.Now().Unix(), 36) + "-" + hex.EncodeToString(b[:])
}

// BaseURL checks that raw is an http(s) URL and returns it without a
// trailing slash.
func BaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("server URL %q: want http://host:port, e.g. http://127.0.0.1:8080", raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

type job struct {
	row *Row
	id  string
}

type runner struct {
	cfg    Config
	base   string
	client *http.Client

	mu                  sync.Mutex
	sum                 *Summary
	lat                 []time.Duration
	firstSent, lastSent time.Time
}

// Run replays f's rows against the server and returns what happened. The
// k-th prediction is due at start + k/Rate, so the rate does not drift when
// some requests are slow; late ones are sent at once to catch up. Failed
// rows are counted, not fatal. When ctx is cancelled Run stops sending,
// abandons the requests in flight, and returns the summary so far with a nil
// error. The error is ErrNoServer if the server cannot be reached.
func Run(ctx context.Context, cfg Config, f *File) (*Summary, error) {
	base, err := BaseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.Rate < 0:
		return nil, fmt.Errorf("rate %g: want requests per second, or 0 for as fast as possible", cfg.Rate)
	case cfg.Concurrency < 0, cfg.Repeat < 0, cfg.Limit < 0, cfg.Timeout < 0:
		return nil, errors.New("concurrency, repeat, limit and timeout must not be negative")
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	cfg.Repeat = max(cfg.Repeat, 1)
	if cfg.IDPrefix == "" {
		cfg.IDPrefix = NewIDPrefix()
	}
	r := &runner{cfg: cfg, base: base, client: cfg.Client}
	if r.client == nil {
		r.client = NewClient(cfg.Concurrency)
	}
	r.sum = &Summary{
		URL:       base,
		ReportURL: base + "/report",
		Skipped:   len(f.Bad),
		Total:     cfg.Total(f),
		Labels:    cfg.Labels,
		Failed:    map[int]int{},
		Samples:   map[int]string{},
	}
	if err := r.ping(ctx); err != nil {
		return nil, err
	}

	jobs := make(chan job)
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for j := range jobs {
				r.do(ctx, j)
			}
		})
	}
	start := time.Now()
	r.dispatch(ctx, start, f, jobs)
	close(jobs)
	wg.Wait()

	s := r.sum
	s.Elapsed = time.Since(start)
	s.Span = r.lastSent.Sub(r.firstSent)
	s.Interrupted = ctx.Err() != nil && (s.Sent < s.Total || s.Abandoned > 0)
	slices.Sort(r.lat)
	s.P50, s.P99 = percentile(r.lat, 0.50), percentile(r.lat, 0.99)
	if s.Sent > 0 && s.OK == 0 && s.Failed[0] == s.Sent {
		return s, fmt.Errorf("%w answering at %s: every prediction failed without an answer, the first with: %s", ErrNoServer, base, s.Samples[0])
	}
	return s, nil
}

// dispatch hands jobs to the workers on schedule until done or cancelled.
func (r *runner) dispatch(ctx context.Context, start time.Time, f *File, jobs chan<- job) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	k := 0
	for pass := 1; pass <= r.cfg.Repeat; pass++ {
		for i := range f.Rows {
			if k >= r.sum.Total || ctx.Err() != nil {
				return
			}
			if r.cfg.Rate > 0 {
				due := start.Add(time.Duration(float64(k) / r.cfg.Rate * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					timer.Reset(d)
					select {
					case <-ctx.Done():
						return
					case <-timer.C:
					}
				}
			}
			row := &f.Rows[i]
			select {
			case <-ctx.Done():
				return
			case jobs <- job{row: row, id: r.requestID(row, pass)}:
			}
			k++
		}
	}
}

// requestID is the row's own id if it has one (suffixed by the pass when
// repeating), else <prefix>-<pass>-<line>.
func (r *runner) requestID(row *Row, pass int) string {
	if row.ID != "" {
		if r.cfg.Repeat == 1 {
			return row.ID
		}
		return row.ID + "-" + strconv.Itoa(pass)
	}
	return r.cfg.IDPrefix + "-" + strconv.Itoa(pass) + "-" + strconv.Itoa(row.Line)
}

// ping checks that something answers HTTP at the base URL.
func (r *runner) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return ctx.Err()
		}
		return fmt.Errorf("%w at %s: start it with `make run` (%v)", ErrNoServer, r.base, unwrapURLError(err))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// do sends one prediction and, if it succeeded and has a label, its label.
func (r *runner) do(ctx context.Context, j job) {
	res := Result{ID: j.id, Line: j.row.Line}
	body := withID(j.row.Body, j.id)
	start := time.Now()
	status, msg, err := r.post(ctx, "/predict", body)
	res.Latency = time.Since(start)
	res.Status = status
	res.Start = start
	switch {
	case err != nil && ctx.Err() != nil:
		res.Abandoned = true
	case err != nil:
		res.Err = err
	case status < 200 || status > 299:
		res.Err = fmt.Errorf("%d %s", status, msg)
	}
	if res.Err == nil && !res.Abandoned && r.cfg.Labels && j.row.Label != nil {
		fb, _ := json.Marshal(map[string]any{"id": j.id, "label": *j.row.Label})
		fstatus, fmsg, ferr := r.post(ctx, "/feedback", fb)
		switch {
		case ferr != nil && ctx.Err() != nil:
			// Cancelled: the label was not delivered, and that is no fault.
		case ferr != nil:
			r.labelFailed(ferr.Error())
		case fstatus < 200 || fstatus > 299:
			r.labelFailed(fmt.Sprintf("%d %s", fstatus, fmsg))
		default:
			res.Labelled = true
		}
	}
	r.record(res)
	if r.cfg.OnResult != nil {
		r.cfg.OnResult(res)
	}
}

// post sends body and returns the status, and the server's error message for
// statuses other than 2xx. err is set only when there was no answer.
func (r *runner) post(ctx context.Context, path string, body []byte) (int, string, error) {
	if r.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		if r.cfg.Timeout > 0 && errors.Is(err, context.DeadlineExceeded) {
			return 0, "", fmt.Errorf("no answer within %v (--timeout)", r.cfg.Timeout)
		}
		return 0, "", unwrapURLError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		// Drain so that the connection can be reused.
		_, err = io.Copy(io.Discard, resp.Body)
		if err != nil {
			return 0, "", fmt.Errorf("reading the answer: %w", unwrapURLError(err))
		}
		return resp.StatusCode, "", nil
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, errorMessage(data), nil
}

// errorMessage is the "code: error" of a JSON error body, else the start of
// the body.
func errorMessage(data []byte) string {
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		if e.Code != "" {
			return e.Code + ": " + e.Error
		}
		return e.Error
	}
	s := strings.TrimSpace(string(data))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// unwrapURLError drops the `Post "http://…":` that every client error
// repeats.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (r *runner) record(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sum
	s.Sent++
	if r.firstSent.IsZero() || res.Start.Before(r.firstSent) {
		r.firstSent = res.Start
	}
	if res.Start.After(r.lastSent) {
		r.lastSent = res.Start
	}
	switch {
	case res.Abandoned:
		s.Abandoned++
	case res.Err != nil:
		s.Failed[res.Status]++
		if _, ok := s.Samples[res.Status]; !ok {
			msg := res.Err.Error()
			if res.Status != 0 {
				msg = strings.TrimPrefix(msg, strconv.Itoa(res.Status)+" ")
			}
			s.Samples[res.Status] = fmt.Sprintf("%s (line %d)", msg, res.Line)
		}
	default:
		s.OK++
		r.lat = append(r.lat, res.Latency)
	}
	if res.Labelled {
		s.Labelled++
	}
}

func (r *runner) labelFailed(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sum.LabelFailed++
	if r.sum.LabelSample == "" {
		r.sum.LabelSample = msg
	}
}

// withID returns the object body with "id" added as its last key.
func withID(body []byte, id string) []byte {
	out := make([]byte, 0, len(body)+len(id)+8)
	out = append(out, body[:len(body)-1]...)
	if len(body) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"id":`...)
	out = append(out, jsonString(id)...)
	return append(out, '}')
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
