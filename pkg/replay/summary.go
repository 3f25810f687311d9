package replay

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"text/tabwriter"
	"time"
)

// Summary is what a replay did.
type Summary struct {
	// URL is the server's base URL and ReportURL its report page.
	URL       string
	ReportURL string
	// Total is how many predictions the run meant to send.
	Total int
	// Sent is how many predictions were started: OK + failed + Abandoned.
	Sent int
	// OK is how many predictions were answered with a 2xx status.
	OK int
	// Failed counts failed predictions by HTTP status; 0 means no answer
	// (refused connection, timeout).
	Failed map[int]int
	// Samples holds the first error message seen for each key of Failed.
	Samples map[int]string
	// Abandoned were in flight when the run was cancelled.
	Abandoned int
	// Labels is whether labels were posted to /feedback at all.
	Labels bool
	// Labelled is how many labels /feedback accepted.
	Labelled int
	// LabelFailed is how many labels /feedback refused or never answered,
	// and LabelSample the first reason.
	LabelFailed int
	LabelSample string
	// Skipped is how many rows of the file were unusable.
	Skipped int
	// Elapsed runs from the start to the last answer, and Span from the
	// first request sent to the last.
	Elapsed, Span time.Duration
	// P50 and P99 are the client-measured latencies of successful predictions.
	P50, P99 time.Duration
	// Interrupted is true if the run was cancelled before it finished.
	Interrupted bool
}

// FailedTotal is the number of failed predictions.
func (s *Summary) FailedTotal() int {
	n := 0
	for _, c := range s.Failed {
		n += c
	}
	return n
}

// Rate is the achieved rate in predictions per second: the gaps between
// requests sent, so that n requests at 20/s over (n-1)/20 s read as 20/s.
func (s *Summary) Rate() float64 {
	switch {
	case s.Sent > 1 && s.Span > 0:
		return float64(s.Sent-1) / s.Span.Seconds()
	case s.Elapsed > 0:
		return float64(s.Sent) / s.Elapsed.Seconds()
	}
	return 0
}

// Print writes the summary for people to read.
func (s *Summary) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if s.Interrupted {
		fmt.Fprintf(tw, "interrupted\tafter %d of %d predictions; %d in flight abandoned\n", s.Sent, s.Total, s.Abandoned)
	}
	fmt.Fprintf(tw, "sent\t%d in %v (%.1f/s)\n", s.Sent, s.Elapsed.Round(time.Millisecond), s.Rate())
	fmt.Fprintf(tw, "ok\t%d\n", s.OK)
	fmt.Fprintf(tw, "failed\t%d\n", s.FailedTotal())
	codes := make([]int, 0, len(s.Failed))
	for c := range s.Failed {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		name := "no answer"
		if c != 0 {
			name = fmt.Sprintf("%d %s", c, http.StatusText(c))
		}
		fmt.Fprintf(tw, "\t  %s: %d, first: %s\n", name, s.Failed[c], s.Samples[c])
	}
	if s.Labels {
		fmt.Fprintf(tw, "labelled\t%d\n", s.Labelled)
		if s.LabelFailed > 0 {
			fmt.Fprintf(tw, "label failures\t%d, first: %s\n", s.LabelFailed, s.LabelSample)
		} else {
			fmt.Fprintf(tw, "label failures\t0\n")
		}
	} else {
		fmt.Fprintf(tw, "labelled\toff\n")
	}
	if s.Skipped > 0 {
		fmt.Fprintf(tw, "bad rows skipped\t%d\n", s.Skipped)
	}
	if s.OK > 0 {
		fmt.Fprintf(tw, "latency\tp50 %v, p99 %v\n", roundDur(s.P50), roundDur(s.P99))
	}
	fmt.Fprintf(tw, "report\t%s\n", s.ReportURL)
	return tw.Flush()
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
