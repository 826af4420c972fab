package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// streamingStarted is what the relay logs once its replication stream runs.
const streamingStarted = "streaming started"

// RelayProcess is a running `pgoutbox run`; its methods return errors (the benchmark's view).
// Relay is the same for a test.
type RelayProcess struct {
	Cmd *exec.Cmd
	// Log holds everything the process wrote, stdout and stderr.
	Log *SyncBuffer
	// Started is when the process was started.
	Started time.Time
	// Done is closed when the process has exited; Err is its exit error from then on.
	Done chan struct{}
	Err  error
}

// StartRelayProcess starts `bin run` with env; copyTo, when not nil, receives the output too.
// If this process dies without stopping the relay, the relay gets SIGKILL: an orphan would
// hold its slot (and pin WAL) forever.
func StartRelayProcess(bin string, env []string, copyTo io.Writer) (*RelayProcess, error) {
	cmd := exec.Command(bin, "run")
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &RelayProcess{Cmd: cmd, Log: NewSyncBuffer(streamingStarted), Done: make(chan struct{})}
	var out io.Writer = p.Log
	if copyTo != nil {
		out = io.MultiWriter(p.Log, copyTo)
	}
	cmd.Stdout, cmd.Stderr = out, out
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start relay: %w", err)
	}
	go func() { p.Err = cmd.Wait(); close(p.Done) }()
	return p, nil
}

// Terminate sends SIGTERM (drain, final status update) and requires a clean exit (status 0)
// within timeout; a relay still running then is killed. Calling it again returns the same.
func (p *RelayProcess) Terminate(timeout time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done:
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("relay did not exit within %s of SIGTERM; killed:\n%s", timeout, p.Log.Tail(20))
	}
	if p.Err != nil {
		return fmt.Errorf("relay exited with %w after SIGTERM; want status 0:\n%s", p.Err, p.Log.Tail(20))
	}
	return nil
}

// Kill ends the relay with SIGKILL: no drain, no final status update.
func (p *RelayProcess) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.Done
}

// Exited returns nil while the relay runs, and an error with its last lines once it exited.
func (p *RelayProcess) Exited() error {
	if p.Running() {
		return nil
	}
	return fmt.Errorf("relay exited (%s):\n%s", fmt.Sprint(p.Err), p.Log.Tail(20))
}

// Running reports whether the process is still alive.
func (p *RelayProcess) Running() bool { return !isClosed(p.Done) }

// Pid is the relay's process id.
func (p *RelayProcess) Pid() int { return p.Cmd.Process.Pid }

// PeakRSS is the relay's VmHWM: the most resident memory it has had since it started.
func (p *RelayProcess) PeakRSS() (int64, error) { return ProcStatus(p.Pid(), "VmHWM") }

// WaitLogged waits until the relay's log contains s; it gives up at once if the relay exits.
func (p *RelayProcess) WaitLogged(ctx context.Context, s string, timeout time.Duration) error {
	return Eventually(ctx, timeout, 50*time.Millisecond, func(context.Context) error {
		switch {
		case strings.Contains(p.Log.String(), s):
			return nil
		case !p.Running():
			return Stop(fmt.Errorf("relay exited (%s) before logging %q", fmt.Sprint(p.Err), s))
		}
		return fmt.Errorf("relay did not log %q", s)
	})
}

// WaitStreaming waits until the relay logs "streaming started".
func (p *RelayProcess) WaitStreaming(ctx context.Context, timeout time.Duration) error {
	select {
	case <-p.Log.Marked():
		return nil
	case <-p.Done:
		return fmt.Errorf("relay exited (%w) before streaming:\n%s", p.Err, p.Log.Tail(20))
	case <-time.After(timeout):
		return fmt.Errorf("relay not streaming after %s:\n%s", timeout, p.Log.Tail(20))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// StartupTime is how long the relay took from its start to "streaming started"; 0 if not yet.
func (p *RelayProcess) StartupTime() time.Duration {
	at, ok := p.Log.MarkedAt()
	if !ok {
		return 0
	}
	return at.Sub(p.Started)
}

// LogEntries returns the relay's JSON log lines whose message starts with msg.
func (p *RelayProcess) LogEntries(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.Log.String()))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		if s, _ := m["message"].(string); strings.HasPrefix(s, msg) {
			out = append(out, m)
		}
	}
	return out
}

// InfoTail returns the last n lines of the relay's log above debug level.
func (p *RelayProcess) InfoTail(n int) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimRight(p.Log.String(), "\n"), "\n") {
		if !strings.Contains(l, `"level":"debug"`) && !strings.Contains(l, `"level":"trace"`) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep[max(0, len(keep)-n):], "\n")
}

// Relay is a RelayProcess run by a test: its waits fail the test, and the test's end kills it
// if it still runs and checks its log lines (CheckLogLines).
type Relay struct {
	*RelayProcess
	t *testing.T
}

// StartRelay starts `pgoutbox run` (RelayBinary) for the outbox.
func (e Outbox) StartRelay(t *testing.T, extraEnv ...string) *Relay {
	t.Helper()
	return e.StartRelayWith(t, RelayBinary, extraEnv...)
}

// StartRelayWith is StartRelay with another build of the relay (StartRelay runs the race-built
// one). It is the only place tests start a relay.
func (e Outbox) StartRelayWith(t *testing.T, bin string, extraEnv ...string) *Relay {
	t.Helper()
	rp, err := StartRelayProcess(bin, append(e.Env(), extraEnv...), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &Relay{RelayProcess: rp, t: t}
	t.Cleanup(func() {
		if p.Running() {
			p.Kill()
		}
		CheckLogLines(t, "relay", p.Log.String())
		if t.Failed() {
			t.Logf("relay log (pid %d), info and above:\n%s\nlast lines:\n%s", p.Pid(), p.Log.Above("debug", 200), p.Log.Tail(20))
		}
	})
	return p
}

// Stop sends SIGTERM and requires a clean exit (status 0) within the timeout.
func (p *Relay) Stop(timeout time.Duration) {
	p.t.Helper()
	if err := p.Terminate(timeout); err != nil {
		p.t.Fatal(err)
	}
}

// WaitLog waits until the relay's log contains s.
func (p *Relay) WaitLog(s string, timeout time.Duration) {
	p.t.Helper()
	if err := p.WaitLogged(context.Background(), s, timeout); err != nil {
		p.t.Fatal(err)
	}
}

// WaitExit waits for the relay to exit and returns its exit status.
func (p *Relay) WaitExit(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.Done:
	case <-time.After(timeout):
		p.t.Fatalf("relay still running after %s", timeout)
	}
	var exit *exec.ExitError
	if errors.As(p.Err, &exit) {
		return exit.ExitCode()
	}
	if p.Err != nil {
		p.t.Fatalf("relay: %v", p.Err)
	}
	return 0
}

// StartLSNs returns the start_lsn of each "streaming started" line of the relay's log.
func (p *Relay) StartLSNs(t *testing.T) []pglogrepl.LSN {
	t.Helper()
	var out []pglogrepl.LSN
	for _, m := range p.LogEntries(streamingStarted) {
		s, _ := m["start_lsn"].(string)
		out = append(out, MustLSN(t, s))
	}
	return out
}
