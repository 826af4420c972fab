package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// startPerf samples the relay's CPU stacks with Linux perf until the returned function is
// called, which writes `perf report`'s summary next to the JSON results. The relay has no pprof
// endpoint; perf needs no change to it. Without perf it says so and records nothing.
func (b *bench) startPerf(p *relayProc) func() error {
	bin, err := exec.LookPath("perf")
	if err != nil {
		b.progress("  --perf: perf not found; no profile")
		return nil
	}
	dir := filepath.Dir(b.opts.out)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		b.progress("  --perf: %v", err)
		return nil
	}
	data := filepath.Join(dir, "relay-s1.perf.data")
	//nolint:gosec // perf, with our arguments
	rec := exec.CommandContext(context.Background(), bin, "record", "--quiet", "-F", "997", "-g", "-p", strconv.Itoa(p.Pid()), "-o", data)
	if err := rec.Start(); err != nil {
		b.progress("  --perf: %v", err)
		return nil
	}
	return func() error {
		_ = rec.Process.Signal(syscall.SIGINT)
		_ = rec.Wait()
		txt := filepath.Join(dir, "relay-s1.perf.txt")
		out, err := os.Create(txt) //nolint:gosec // our results directory
		if err != nil {
			return err
		}
		defer func() { _ = out.Close() }()
		//nolint:gosec // perf, with our arguments
		rep := exec.CommandContext(context.Background(), bin, "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol", "--percent-limit", "0.5", "-g", "none")
		rep.Stdout = out
		if err := rep.Run(); err != nil {
			return fmt.Errorf("perf report: %w", err)
		}
		b.res.PerfReport = txt
		b.progress("  perf profile of the relay: %s (raw: %s)", txt, data)
		return nil
	}
}
