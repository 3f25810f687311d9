package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/understudy-ml/understudy/pkg/replay"
)

// ReplayConfig is everything `understudy replay` can be told. Each flag can
// also be set with UNDERSTUDY_REPLAY_<FLAG>, e.g. UNDERSTUDY_REPLAY_RATE.
type ReplayConfig struct {
	// URL is the server's base URL (UNDERSTUDY_REPLAY_URL, default http://127.0.0.1:8080).
	URL string
	// Rate is predictions per second, 0 for as fast as possible (UNDERSTUDY_REPLAY_RATE, default 20).
	Rate float64
	// Concurrency bounds the requests in flight (UNDERSTUDY_REPLAY_CONCURRENCY, default 4).
	Concurrency int
	// Labels posts labels to /feedback (UNDERSTUDY_REPLAY_LABELS, default: true if the file has labels).
	Labels optionalBool
	// LabelColumn is the CSV column or JSON-lines key of the label (UNDERSTUDY_REPLAY_LABEL_COLUMN, default label).
	LabelColumn string
	// InputName sends CSV rows as {"inputs": {NAME: …}} (UNDERSTUDY_REPLAY_INPUT_NAME, default: the "input" shorthand).
	InputName string
	// Repeat replays the file this many times (UNDERSTUDY_REPLAY_REPEAT, default 1).
	Repeat int
	// IDPrefix starts the request ids (UNDERSTUDY_REPLAY_ID_PREFIX, default: new for each run).
	IDPrefix string
	// Limit caps the predictions sent, 0 for all (UNDERSTUDY_REPLAY_LIMIT, default 0).
	Limit int
	// Timeout bounds each request (UNDERSTUDY_REPLAY_TIMEOUT, default 10s).
	Timeout time.Duration
	// Quiet hides the progress bar (UNDERSTUDY_REPLAY_QUIET, default false).
	Quiet bool
}

const replayUsage = `Usage: understudy replay [flags] FILE

Sends each row of FILE (CSV with a header row, or JSON lines) to POST /predict
at --rate, posts its label to POST /feedback once the prediction succeeds, and
prints a summary. Each flag has an UNDERSTUDY_REPLAY_<FLAG> environment
override, e.g. UNDERSTUDY_REPLAY_RATE=50.

Flags:
`

// maxBadRowsShown keeps a wholly broken file from flooding the terminal.
const maxBadRowsShown = 20

// runReplay is `understudy replay`.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := ReplayConfig{
		URL:         "http://127.0.0.1:8080",
		Rate:        20,
		Concurrency: 4,
		LabelColumn: "label",
		Repeat:      1,
		Timeout:     10 * time.Second,
	}
	fs := flag.NewFlagSet("understudy replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, replayUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.URL, "url", c.URL, "base URL of the running server")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "predictions per second; 0 sends as fast as --concurrency allows")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "requests in flight at most")
	fs.Var(&c.Labels, "labels", "post each row's label to /feedback after its prediction succeeds (default true if the file has labels)")
	fs.StringVar(&c.LabelColumn, "label-column", c.LabelColumn, "CSV column, or JSON-lines key, holding the label")
	fs.StringVar(&c.InputName, "input-name", c.InputName, `CSV only: send {"inputs": {NAME: [[…]]}} (default: the {"input": [[…]]} shorthand)`)
	fs.IntVar(&c.Repeat, "repeat", c.Repeat, "replay the file this many times; ids stay unique")
	fs.StringVar(&c.IDPrefix, "id-prefix", c.IDPrefix, "request ids are PREFIX-PASS-LINE (default: new for each run)")
	fs.IntVar(&c.Limit, "limit", c.Limit, "send at most this many predictions; 0 sends all")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "per-request timeout; 0 waits forever")
	fs.BoolVar(&c.Quiet, "quiet", c.Quiet, "no progress bar")
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("UNDERSTUDY_REPLAY")); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		return err
	}
	// Let flags follow the file too: `understudy replay data.csv --rate 50`.
	var files []string
	for rest := fs.Args(); len(rest) > 0; rest = fs.Args() {
		files = append(files, rest[0])
		if err := fs.Parse(rest[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return errUsage
			}
			return err
		}
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "understudy replay: want one FILE, got %d\n\n", len(files))
		fs.Usage()
		return errUsage
	}
	switch {
	case c.Rate < 0:
		return fmt.Errorf("--rate %g: want predictions per second, or 0 for as fast as possible", c.Rate)
	case c.Concurrency < 1:
		return fmt.Errorf("--concurrency %d: want at least 1", c.Concurrency)
	case c.Repeat < 1:
		return fmt.Errorf("--repeat %d: want at least 1", c.Repeat)
	case c.Limit < 0:
		return fmt.Errorf("--limit %d: want 0 (all rows) or more", c.Limit)
	case c.Timeout < 0:
		return fmt.Errorf("--timeout %v: want 0 (none) or more", c.Timeout)
	}
	if _, err := replay.BaseURL(c.URL); err != nil {
		return fmt.Errorf("--url: %w", err)
	}

	f, err := replay.ReadFile(files[0], replay.ReadOptions{LabelColumn: c.LabelColumn, InputName: c.InputName, MaxRows: c.Limit})
	if err != nil {
		return err
	}
	for i, b := range f.Bad {
		if i == maxBadRowsShown {
			fmt.Fprintf(stderr, "… and %d more bad rows\n", len(f.Bad)-i)
			break
		}
		fmt.Fprintf(stderr, "skipping %s\n", b)
	}
	if len(f.Rows) == 0 {
		return fmt.Errorf("%s: no rows to send (%d bad rows skipped)", f.Name, len(f.Bad))
	}
	labels := f.HasLabels()
	if c.Labels.set {
		if c.Labels.v && !labels {
			fmt.Fprintf(stderr, "warning: --labels is on but %s has no %q labels; nothing will be posted to /feedback\n", f.Name, c.LabelColumn)
		}
		labels = c.Labels.v
	}

	cfg := replay.Config{
		URL:         c.URL,
		Rate:        c.Rate,
		Concurrency: c.Concurrency,
		Labels:      labels,
		Repeat:      c.Repeat,
		IDPrefix:    c.IDPrefix,
		Limit:       c.Limit,
		Timeout:     c.Timeout,
	}
	var bar *progressbar.ProgressBar
	if !c.Quiet && isTerminal(stderr) {
		bar = progressbar.NewOptions(cfg.Total(f),
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("replay"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("req"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }),
		)
		cfg.OnResult = func(replay.Result) { _ = bar.Add(1) }
	}
	sum, err := replay.Run(ctx, cfg, f)
	if bar != nil && !bar.IsFinished() {
		_ = bar.Exit()
	}
	if sum != nil {
		if perr := sum.Print(stdout); perr != nil && err == nil {
			err = perr
		}
		// Scripts and CI check the exit code: any request or label that
		// failed fails the replay, after the summary says which.
		if err == nil && (sum.FailedTotal() > 0 || sum.LabelFailed > 0 || sum.Abandoned > 0) {
			err = fmt.Errorf("%d of %d predictions and %d labels failed or were abandoned; see the summary above", sum.FailedTotal()+sum.Abandoned, sum.Sent, sum.LabelFailed)
		}
	}
	return err
}

// optionalBool is a boolean flag that remembers whether it was given, so
// that its default can depend on the input.
type optionalBool struct {
	set, v bool
}

func (b *optionalBool) String() string {
	if b == nil || !b.set {
		return "auto"
	}
	return strconv.FormatBool(b.v)
}

func (b *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false, got %q", s)
	}
	b.set, b.v = true, v
	return nil
}

func (b *optionalBool) IsBoolFlag() bool { return true }

// isTerminal reports whether w is a terminal, where a progress bar belongs.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
