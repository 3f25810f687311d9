package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// This file serves Go's pprof profiles on --debug-addr, a listener of
// its own.

// serveDebug serves pprof on its own listener, so that profiles are never
// reachable through the public address and its tokens.
func (m *Main) serveDebug(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--debug-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.debugSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go m.debugSrv.Serve(ln)
	m.Log.Warn().Str("addr", ln.Addr().String()).Msg("pprof profiles served; do not expose this address")
	return nil
}
