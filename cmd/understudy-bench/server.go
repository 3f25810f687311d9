package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// This file runs the real understudy binary for a section: on a fresh models
// directory and database, on free ports, until it is ready, and stops it.

type server struct {
	cmd  *exec.Cmd
	url  string
	grpc string // the OIP gRPC address
	dir  string
	log  *bytes.Buffer
}

// startServer runs the real binary on a fresh models directory and database.
func startServer(files map[string][]byte, primary string, extra ...string) (*server, error) {
	return launchServer(files, primary, false, extra...)
}

// launchServer is startServer; with logFile the server writes its output
// to a file in its directory instead of a pipe that this process copies
// from, for runs that log every request.
func launchServer(files map[string][]byte, primary string, logFile bool, extra ...string) (*server, error) {
	dir, err := os.MkdirTemp("", "understudy-bench-")
	if err != nil {
		return nil, err
	}
	models := filepath.Join(dir, "models")
	os.Mkdir(models, 0o755)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(models, name+".onnx"), data, 0o644); err != nil {
			return nil, err
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--addr", addr, "--grpc-addr", grpcAddr, "--models-dir", models, "--primary", primary,
		"--db", filepath.Join(dir, "bench.db"), "--ort-lib", *ortLib, "--log-level", "warn"}, extra...)
	cmd := exec.Command(*binPath, args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	logPath := filepath.Join(dir, "server.log")
	if logFile {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		defer f.Close() // the server has its own copy
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w (run make build)", *binPath, err)
	}
	s := &server{cmd: cmd, url: "http://" + addr, grpc: grpcAddr, dir: dir, log: &log}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
	}
	if logFile {
		b, _ := os.ReadFile(logPath)
		log.Write(b)
	}
	s.stop()
	return nil, fmt.Errorf("server not ready: %s", log.String())
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	os.RemoveAll(s.dir)
}
