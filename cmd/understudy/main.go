// Command understudy serves ONNX models over HTTP and shadow-tests new ones
// against the primary.
//
// It owns the wiring and the command line: the serve, replay and version
// commands, the configuration with its flags and environment variables,
// and the one place where the adapters (ONNX Runtime, the SQLite store,
// HTTP, gRPC, metrics) are chosen and connected to the registry, the
// serving path and the mirror. It holds no domain logic of its own. It may
// import any package of the module except the test-only ones
// (internal/pgtest, store/storetest, report/reporttest), which only its
// tests may use; nothing imports it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "understudy:", err)
		}
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usage = `understudy: shadow-test ONNX models in one binary

Usage:
  understudy serve [flags]    serve the models in --models-dir
  understudy replay [flags] FILE
                              send a CSV or JSON-lines file's rows to a running server
  understudy backtest [flags] CANDIDATE.onnx
                              judge a model on stored traffic; exit 0 if ready, 1 if not, 2 on bad input
  understudy version          print the version and the ONNX Runtime version
  understudy help             this text

Run 'understudy serve -h' for the flags; each has an UNDERSTUDY_* environment override.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		m := NewMain()
		if err := m.ParseFlags(args[1:], stderr); err != nil {
			return err
		}
		if err := m.Run(ctx); err != nil {
			m.Close()
			return err
		}
		<-ctx.Done()
		// A second signal takes the default action and ends the process at
		// once, for when a graceful shutdown takes longer than one can wait.
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		m.Log.Info().Msg("shutting down: finishing in-flight requests; signal again to exit at once")
		return m.Close()
	case "replay":
		return runReplay(ctx, args[1:], stdout, stderr)
	case "backtest":
		return runBacktest(ctx, args[1:], stdout, stderr)
	case "version":
		return runVersion(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
	return errUsage
}
