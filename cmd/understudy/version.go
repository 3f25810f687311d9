package main

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/peterbourgon/ff/v3"

	"github.com/understudy-ml/understudy/pkg/onnx"
)

// This file is `understudy version` and the Version a build stamps in.

// Version is set at build time with -ldflags "-X main.Version=…".
var Version = "dev"

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("understudy version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lib := fs.String("ort-lib", "", "ONNX Runtime shared library (UNDERSTUDY_ORT_LIB)")
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("UNDERSTUDY")); err != nil {
		return err
	}
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v = "dev-" + s.Value[:12]
			}
		}
	}
	fmt.Fprintf(stdout, "understudy %s\n", v)
	path, err := findORTLib(*lib)
	if err != nil {
		return err
	}
	rt, err := onnx.Open(path)
	if err != nil {
		return err
	}
	defer rt.Close()
	fmt.Fprintf(stdout, "onnxruntime %s (%s)\n", rt.Version(), path)
	return nil
}
