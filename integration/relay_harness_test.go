//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/segmentio/kafka-go"
)

// relayBinary is the pgoutbox binary under test, built once with the race detector: the relay
// tests run the real process, so that killing it is a real crash.
var relayBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgoutbox-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	relayBinary = filepath.Join(dir, "pgoutbox")
	build := exec.Command("go", "build", "-race", "-o", relayBinary, "../cmd/pgoutbox")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build pgoutbox: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// outboxEnv is one test's private outbox: table, publication, slot and topic share one name.
type outboxEnv struct {
	services
	Name string
}

// env returns the configuration of the relay for this outbox, as PGOUTBOX_* variables.
func (e outboxEnv) env() []string {
	return append(os.Environ(),
		"PGOUTBOX_DATABASE_URL="+e.DatabaseURL,
		"PGOUTBOX_KAFKA_BROKERS="+strings.Join(e.Brokers, ","),
		"PGOUTBOX_TABLE="+e.Name,
		"PGOUTBOX_SLOT="+e.Name,
		"PGOUTBOX_PUBLICATION="+e.Name,
		"PGOUTBOX_TOPIC="+e.Name,
		"PGOUTBOX_HTTP_ADDR=",
		"PGOUTBOX_LOG_LEVEL=debug",
	)
}

// newOutbox creates the outbox with `pgoutbox setup` (table, publication, slot, a topic of
// `partitions` partitions) and removes all of it when the test ends.
func newOutbox(t *testing.T, partitions int) outboxEnv {
	t.Helper()
	return newOutboxOn(t, needServices(t), partitions)
}

// newOutboxOn is newOutbox on the given services (e.g. a private Kafka broker); setupArgs are
// added to `pgoutbox setup` (e.g. --failover).
func newOutboxOn(t *testing.T, svc services, partitions int, setupArgs ...string) outboxEnv {
	t.Helper()
	e := outboxEnv{services: svc, Name: uniqueName(t)}
	dropSlotAtCleanup(t, e.DatabaseURL, e.Name)
	t.Cleanup(func() {
		exec0(t, e.DatabaseURL, fmt.Sprintf(`DROP PUBLICATION IF EXISTS %s`, e.Name))
		exec0(t, e.DatabaseURL, fmt.Sprintf(`DROP PUBLICATION IF EXISTS %s_recovery`, e.Name))
		exec0(t, e.DatabaseURL, fmt.Sprintf(`DROP TABLE IF EXISTS %s`, e.Name))
		deleteTopic(e.Brokers, e.Name)
	})
	out, err := e.pgoutbox(t, append([]string{"setup", "--partitions", fmt.Sprint(partitions)}, setupArgs...)...)
	if err != nil {
		t.Fatalf("pgoutbox setup: %v\n%s", err, out)
	}
	return e
}

// newOutboxWithDeadLetter is newOutbox with one partition, set up again with --on-bad-row
// dead-letter so that the dead-letter topic exists too; it returns that topic's name and
// deletes it when the test ends.
func newOutboxWithDeadLetter(t *testing.T) (e outboxEnv, dlq string) {
	t.Helper()
	e = newOutbox(t, 1)
	dlq = e.Name + ".dlq"
	if out, err := e.pgoutbox(t, "setup", "--partitions", "1", "--on-bad-row", "dead-letter"); err != nil {
		t.Fatalf("setup of the dead-letter topic: %v\n%s", err, out)
	}
	t.Cleanup(func() { deleteTopic(e.Brokers, dlq) })
	return e, dlq
}

// exec0 is execSQL for cleanups: it reports instead of stopping the test.
func exec0(t *testing.T, url, sql string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := execCtx(ctx, url, sql); err != nil {
		t.Errorf("cleanup %q: %v", sql, err)
	}
}

func deleteTopic(brokers []string, topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
}

// pgoutbox runs one command of the binary to completion and returns its combined output.
func (e outboxEnv) pgoutbox(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, relayBinary, args...)
	cmd.Env = e.env()
	out, err := cmd.CombinedOutput()
	checkLogLines(t, "pgoutbox "+strings.Join(args, " "), string(out))
	return string(out), err
}

// relayProc is a running `pgoutbox run`.
type relayProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error
}

// startRelay starts `pgoutbox run` for the outbox; the test's end stops it if still running.
func (e outboxEnv) startRelay(t *testing.T, extraEnv ...string) *relayProc {
	t.Helper()
	return e.startRelayWith(t, relayBinary, extraEnv...)
}

// startRelayWith is startRelay with another build of the relay (startRelay runs the race-built
// one). It is the only place tests start a relay.
func (e outboxEnv) startRelayWith(t *testing.T, bin string, extraEnv ...string) *relayProc {
	t.Helper()
	cmd := exec.Command(bin, "run")
	cmd.Env = append(e.env(), extraEnv...)
	// If the test process dies without its cleanups, the relay dies too: an orphan would hold
	// its slot (and pin WAL) forever.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &relayProc{t: t, cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start relay: %v", err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		checkLogLines(t, "relay", p.log.String())
		if t.Failed() {
			t.Logf("relay log (pid %d), info and above:\n%s\nlast lines:\n%s", cmd.Process.Pid, p.log.above("debug", 200), p.log.tail(20))
		}
	})
	return p
}

// stop sends SIGTERM and requires a clean exit (status 0) within the timeout.
func (p *relayProc) stop(timeout time.Duration) {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("relay did not exit within %s of SIGTERM", timeout)
	}
	if p.err != nil {
		p.t.Fatalf("relay exited with %v after SIGTERM; want status 0", p.err)
	}
}

// kill ends the relay with SIGKILL: no drain, no final status update.
func (p *relayProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// waitLog waits until the relay's log contains s.
func (p *relayProc) waitLog(s string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.log.String(), s) {
		select {
		case <-p.done:
			p.t.Fatalf("relay exited (%v) before logging %q", p.err, s)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("relay did not log %q within %s", s, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for the process's writers and the test's readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// above returns the last lines of a JSON log that are not at level (e.g. the debug lines, one
// per produce request, that would push everything else out of a tail).
func (b *syncBuffer) above(level string, lines int) string {
	var kept []string
	for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		if !strings.Contains(l, `"level":"`+level+`"`) {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept[max(0, len(kept)-lines):], "\n")
}

func (b *syncBuffer) tail(lines int) string {
	all := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// record is a consumed Kafka record with its headers by key.
type record struct {
	Partition int
	Offset    int64
	Key       string
	Value     []byte
	Headers   map[string]string
	Time      time.Time
}

// readTopic reads every record currently in the topic, partition by partition, in offset order.
func readTopic(ctx context.Context, brokers []string, topic string) ([]record, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return nil, fmt.Errorf("metadata of %s: %+v", topic, meta.Topics)
	}
	var out []record
	for _, p := range meta.Topics[0].Partitions {
		end, err := lastOffset(ctx, brokers, topic, p.ID)
		if err != nil {
			return nil, err
		}
		for off := int64(0); off < end; {
			res, err := client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: p.ID, Offset: off, MaxBytes: 16 << 20})
			if err != nil {
				return nil, err
			}
			if res.Error != nil {
				return nil, res.Error
			}
			for {
				r, err := res.Records.ReadRecord()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return nil, err
				}
				rec := record{Partition: p.ID, Offset: r.Offset, Time: r.Time, Headers: map[string]string{}}
				rec.Key, err = readBytes(r.Key)
				if err != nil {
					return nil, err
				}
				v, err := readBytes(r.Value)
				if err != nil {
					return nil, err
				}
				rec.Value = []byte(v)
				for _, h := range r.Headers {
					rec.Headers[h.Key] = string(h.Value)
				}
				if r.Offset >= off {
					out = append(out, rec)
					off = r.Offset + 1
				}
			}
		}
	}
	return out, nil
}

// waitRecords polls the topic until it holds at least n records.
func waitRecords(t *testing.T, brokers []string, topic string, n int, timeout time.Duration) []record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		recs, err := readTopic(ctx, brokers, topic)
		if err == nil && len(recs) >= n {
			return recs
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topic %s holds %d records after %s, want %d (last error: %v)", topic, len(recs), timeout, n, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// slotConfirmed returns the slot's confirmed_flush_lsn, on a short-lived connection (tests poll
// it in loops; a connection kept per call until the test's end would exhaust max_connections).
func slotConfirmed(t *testing.T, url, slot string) pglogrepl.LSN {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s string
	if err := queryRow(ctx, url, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, []any{slot}, &s); err != nil {
		t.Fatalf("read slot %s: %v", slot, err)
	}
	return mustLSN(t, s)
}

// readBytes reads a record's key or value; nil stays empty.
func readBytes(b kafka.Bytes) (string, error) {
	if b == nil {
		return "", nil
	}
	data, err := io.ReadAll(b)
	return string(data), err
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func mustLSN(t *testing.T, s string) pglogrepl.LSN {
	t.Helper()
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}
