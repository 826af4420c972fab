package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// relayProc is one `pgoutbox run` process. Each scenario starts its own, so that its peak
// resident memory (VmHWM) is the scenario's.
type relayProc struct {
	cmd     *exec.Cmd
	log     *lineLog
	metrics string   // host:port of /metrics
	logFile *os.File // a copy of the log, with --relay-logs
	started time.Time
	done    chan struct{}
	err     error
}

// startRelay starts the relay on o with /metrics on a free port.
func (b *bench) startRelay(o *outbox, extraEnv ...string) (*relayProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.CommandContext(context.Background(), b.relayBin, "run") //nolint:gosec // our binary
	cmd.Env = o.env(append([]string{"PGOUTBOX_HTTP_ADDR=" + addr}, extraEnv...)...)
	// If the benchmark dies without its cleanups, the relay dies too, so that the slot can be dropped.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &relayProc{cmd: cmd, log: newLineLog(200, "streaming started"), metrics: addr, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if b.opts.relayLogs != "" {
		if err := os.MkdirAll(b.opts.relayLogs, 0o750); err != nil {
			return nil, err
		}
		f, err := os.Create(filepath.Join(b.opts.relayLogs, o.name+".log"))
		if err != nil {
			return nil, err
		}
		p.logFile = f
		cmd.Stdout, cmd.Stderr = io.MultiWriter(p.log, f), io.MultiWriter(p.log, f)
	}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start relay: %w", err)
	}
	go func() {
		p.err = cmd.Wait()
		if p.logFile != nil {
			_ = p.logFile.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// startup is how long the relay took from its start to "streaming started"; 0 if not yet.
func (p *relayProc) startup() time.Duration {
	select {
	case <-p.log.marker:
		return p.log.markerAt.Sub(p.started)
	default:
		return 0
	}
}

// waitStreaming waits until the relay logs "streaming started".
func (p *relayProc) waitStreaming(ctx context.Context, timeout time.Duration) error {
	select {
	case <-p.log.marker:
		return nil
	case <-p.done:
		return fmt.Errorf("relay exited (%w) before streaming:\n%s", p.err, p.log.tail(20))
	case <-time.After(timeout):
		return fmt.Errorf("relay not streaming after %s:\n%s", timeout, p.log.tail(20))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// alive returns an error when the relay has exited.
func (p *relayProc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("relay exited (%w):\n%s", p.err, p.log.tail(20))
	default:
		return nil
	}
}

// peakRSS reads the relay's VmHWM: the most resident memory it has had since it started.
func (p *relayProc) peakRSS() (int64, error) {
	kb, err := procField(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid), "VmHWM")
	return kb << 10, err
}

// stop ends the relay with SIGTERM (drain, final status update) and kills it if it takes
// longer than a minute.
func (p *relayProc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("relay did not stop within a minute of SIGTERM; killed")
	}
	if p.err != nil {
		return fmt.Errorf("relay exited with %w:\n%s", p.err, p.log.tail(20))
	}
	return nil
}

// scrape reads /metrics into series → value ("name" or "name{labels}").
func (p *relayProc) scrape(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.metrics+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = res.Body.Close() }()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(res.Body); err != nil {
		return nil, err
	}
	return parseMetrics(buf.String()), nil
}

// parseMetrics parses Prometheus' text format, which is all this needs: "series value" lines.
func parseMetrics(text string) map[string]float64 {
	m := make(map[string]float64)
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

func freePort() (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lineLog keeps the last lines a process wrote and notes when a line first contains marker.
type lineLog struct {
	mu       sync.Mutex
	partial  []byte
	lines    []string
	keep     int
	want     string
	marker   chan struct{}
	markerAt time.Time
}

func newLineLog(keep int, marker string) *lineLog {
	return &lineLog{keep: keep, want: marker, marker: make(chan struct{})}
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		if l.markerAt.IsZero() && strings.Contains(line, l.want) {
			l.markerAt = time.Now()
			close(l.marker)
		}
		l.lines = append(l.lines, line)
		if len(l.lines) > 2*l.keep {
			l.lines = append(l.lines[:0], l.lines[len(l.lines)-l.keep:]...)
		}
	}
	return len(p), nil
}

func (l *lineLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(0, len(l.lines)-n):], "\n")
}
