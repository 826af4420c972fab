//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// The fault suite (issue 5) shares this harness: a workload that runs until told to stop and can
// ride out a PostgreSQL restart, the relay's JSON log parsed by message, its memory from /proc,
// and the slot's state. Every fault test ends with the same checks as the crash test:
// checkDelivery (every committed row present, per-channel commit order) and
// checkDuplicatesUnconfirmed (a row sent twice was not confirmed when its first sender died).

// faultWorkload is a workload whose writers run until stopped.
type faultWorkload struct {
	workload
	// Pad adds this many random (incompressible) characters to each payload, in a "pad" field
	// that the checks ignore.
	Pad int
	// Resilient writers survive a lost database connection: they reconnect, and settle whether
	// the interrupted transaction committed by looking for its tag, so that what they report as
	// committed stays exact across a PostgreSQL restart.
	Resilient bool
	// Pause is a writer's sleep after each transaction (a rate limit); 0 writes flat out.
	Pause time.Duration
}

// faultPayload is the payload of the fault workload: the checks decode it as a payload.
type faultPayload struct {
	payload
	Tag string `json:"tag"`
	Pad string `json:"pad,omitempty"`
}

// workloadRun is a running workload: each writer commits its share of Rows and then goes on
// until stop is called, so that faults injected for an unknown time all happen while rows
// are being written.
type workloadRun struct {
	got     *committedRows
	stopCh  chan struct{}
	stopped sync.Once
	done    chan error
	result  error
	waited  sync.Once
}

// startWorkload starts the writers; the end of the test stops them (before the tables go).
func startWorkload(t *testing.T, e outboxEnv, w faultWorkload) *workloadRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	r := &workloadRun{got: &committedRows{rows: map[string][]int64{}}, stopCh: make(chan struct{}), done: make(chan error, 1)}
	var wg sync.WaitGroup
	errs := make(chan error, w.Writers)
	for i := range w.Writers {
		quota := writerQuota(w.Rows, w.Writers, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := faultWriter(ctx, e, w, i, quota, r.stopCh, r.got); err != nil {
				errs <- fmt.Errorf("writer %d: %w", i, err)
				cancel() // one failure ends the run
			}
		}()
	}
	go func() {
		wg.Wait()
		close(errs)
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		r.done <- errors.Join(all...)
	}()
	t.Cleanup(func() {
		r.stop()
		cancel() // a test that ended early does not wait for the writers' quotas
		_ = r.finish()
	})
	return r
}

// stop lets the writers end once they have written their share.
func (r *workloadRun) stop() { r.stopped.Do(func() { close(r.stopCh) }) }

func (r *workloadRun) finish() error {
	r.waited.Do(func() { r.result = <-r.done })
	return r.result
}

// wait stops the writers, waits for them and returns what they committed.
func (r *workloadRun) wait(t *testing.T) *committedRows {
	t.Helper()
	r.stop()
	if err := r.finish(); err != nil {
		t.Fatalf("workload: %v", err)
	}
	return r.got
}

// committed is the number of rows committed so far.
func (r *workloadRun) committed() int {
	r.got.mu.Lock()
	defer r.got.mu.Unlock()
	return r.got.n
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// faultWriter is runWorkload's writer (same transactions: a counter bump per row, one in ten
// rolled back, one in ten touching another table only) that writes until its quota is met and
// stop is closed, and optionally survives a database restart.
func faultWriter(ctx context.Context, e outboxEnv, w faultWorkload, id, quota int, stop <-chan struct{}, got *committedRows) error {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	for seq := 0; quota > 0 || !isClosed(stop); seq++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if conn == nil {
			c, err := connectWriter(ctx, e.DatabaseURL, w.Resilient)
			if err != nil {
				return err
			}
			conn = c
		}
		kind := rng.IntN(10) // 0: rolled back, 1: other table only, else committed
		n := 1 + rng.IntN(w.MaxTxnRows)
		if kind > 1 && quota > 0 {
			n = min(n, quota)
		}
		tag := fmt.Sprintf("w%d-%d", id, seq)
		rows, err := writeTxn(ctx, conn, e, w, id, kind, n, tag, rng)
		if err != nil {
			if !w.Resilient || ctx.Err() != nil {
				return err
			}
			_ = conn.Close(context.Background())
			conn = nil
			committed, err := tagCommitted(ctx, e, tag)
			if err != nil {
				return err
			}
			if !committed {
				continue
			}
		}
		if w.Pause > 0 {
			time.Sleep(w.Pause)
		}
		if kind <= 1 {
			continue
		}
		for _, p := range rows {
			got.add(p)
		}
		quota -= n
	}
	return nil
}

// writeTxn runs one transaction of the workload and returns its outbox rows.
func writeTxn(ctx context.Context, conn *pgx.Conn, e outboxEnv, w faultWorkload, id, kind, n int, tag string, rng *rand.Rand) ([]payload, error) {
	other := fmt.Sprintf(`INSERT INTO %s_other (v) VALUES ($1)`, e.Name)
	if kind == 1 {
		_, err := conn.Exec(ctx, other, "only")
		return nil, err
	}
	bump := fmt.Sprintf(`UPDATE %s_counters SET n = n + 1 WHERE channel = $1 RETURNING n`, e.Name)
	insert := fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ($1, 'test.event', $2)`, e.Name)
	chans := make([]string, n)
	for i := range chans {
		chans[i] = fmt.Sprintf("ch-%d", rng.IntN(w.Channels))
	}
	slices.Sort(chans) // lock counter rows in one order: no deadlocks between writers
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var rows []payload
	for _, ch := range chans {
		p := faultPayload{payload: payload{Channel: ch, Writer: id, RolledBack: kind == 0}, Tag: tag, Pad: randomText(rng, w.Pad)}
		if err := tx.QueryRow(ctx, bump, ch).Scan(&p.Counter); err != nil {
			return nil, err
		}
		data, _ := json.Marshal(p)
		if _, err := tx.Exec(ctx, insert, ch, data); err != nil {
			return nil, err
		}
		rows = append(rows, p.payload)
	}
	if _, err := tx.Exec(ctx, other, "with outbox rows"); err != nil {
		return nil, err
	}
	if kind == 0 {
		return nil, tx.Rollback(ctx)
	}
	return rows, tx.Commit(ctx)
}

// randomText returns n random hexadecimal digits.
func randomText(rng *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	var r uint64
	for i := range b {
		if i%16 == 0 {
			r = rng.Uint64()
		}
		b[i] = digits[r&15]
		r >>= 4
	}
	return string(b)
}

// connectWriter connects; a resilient writer retries for as long as a restart may take.
func connectWriter(ctx context.Context, url string, retry bool) (*pgx.Conn, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := pgx.Connect(cctx, url)
		cancel()
		if err == nil || !retry || ctx.Err() != nil || time.Now().After(deadline) {
			return conn, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tagCommitted settles whether the transaction tagged tag committed: its rows are in the outbox.
func tagCommitted(ctx context.Context, e outboxEnv, tag string) (bool, error) {
	conn, err := connectWriter(ctx, e.DatabaseURL, true)
	if err != nil {
		return false, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var found bool
	err = conn.QueryRow(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE data->>'tag' = $1)`, e.Name), tag).Scan(&found)
	return found, err
}

// logEntries returns the relay's JSON log lines whose message starts with msg.
func (p *relayProc) logEntries(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.log.String()))
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

// infoTail returns the last n lines of the relay's log above debug level.
func (p *relayProc) infoTail(n int) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimRight(p.log.String(), "\n"), "\n") {
		if !strings.Contains(l, `"level":"debug"`) && !strings.Contains(l, `"level":"trace"`) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep[max(0, len(keep)-n):], "\n")
}

// startLSNs returns the start_lsn of each "streaming started" line of the relay's log.
func (p *relayProc) startLSNs(t *testing.T) []pglogrepl.LSN {
	t.Helper()
	var out []pglogrepl.LSN
	for _, m := range p.logEntries("streaming started") {
		s, _ := m["start_lsn"].(string)
		out = append(out, mustLSN(t, s))
	}
	return out
}

// running reports whether the process is still alive.
func (p *relayProc) running() bool { return !isClosed(p.done) }

// pid is the relay's process id.
func (p *relayProc) pid() int { return p.cmd.Process.Pid }

// procStatus returns a memory field of /proc/<pid>/status (VmRSS, VmHWM...) in bytes.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		return kb << 10, err
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// rssSampler samples a process's VmRSS until stopped.
type rssSampler struct {
	start  time.Time
	mu     sync.Mutex
	series []rssSample
	stopCh chan struct{}
	done   chan struct{}
}

type rssSample struct {
	at  time.Duration // since the sampling began
	rss int64
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{start: time.Now(), stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if rss, err := procStatus(pid, "VmRSS"); err == nil {
				s.mu.Lock()
				s.series = append(s.series, rssSample{at: time.Since(s.start), rss: rss})
				s.mu.Unlock()
			}
			select {
			case <-s.stopCh:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the samples.
func (s *rssSampler) stop() []rssSample {
	close(s.stopCh)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.series
}

// peakRSS is the largest sample taken in [from, to).
func peakRSS(series []rssSample, from, to time.Duration) int64 {
	var peak int64
	for _, s := range series {
		if s.at >= from && s.at < to {
			peak = max(peak, s.rss)
		}
	}
	return peak
}

// rssTrace summarises a series: the peak of each interval of the given length.
func rssTrace(series []rssSample, every time.Duration) string {
	if len(series) == 0 {
		return ""
	}
	var parts []string
	end := series[len(series)-1].at
	for from := time.Duration(0); from <= end; from += every {
		parts = append(parts, fmt.Sprintf("%s:%.0f", from, float64(peakRSS(series, from, from+every))/(1<<20)))
	}
	return strings.Join(parts, " ") + " (MiB)"
}

// queryRow runs a one-row query on a connection of its own, closed at once (the harness's
// connect keeps its connections until the test ends, too many for a polling loop).
func queryRow(ctx context.Context, url, sql string, args []any, dest ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	return conn.QueryRow(ctx, sql, args...).Scan(dest...)
}

// slotActivePID returns the pid of the walsender streaming the slot, 0 when none.
func slotActivePID(t *testing.T, url, slot string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pid int
	if err := queryRow(ctx, url, `SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1`, []any{slot}, &pid); err != nil {
		t.Fatalf("read slot %s: %v", slot, err)
	}
	return pid
}

// waitSlotInactive waits until no walsender streams the slot: after a relay's death its
// walsender notices the closed socket and exits, and from then on the slot's confirmed
// position cannot move until the next relay streams.
func waitSlotInactive(t *testing.T, url, slot string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for slotActivePID(t, url, slot) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("slot %s still active %s after its relay died", slot, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// topicEnd is the number of records in the topic (the sum of its partitions' end offsets).
func topicEnd(t *testing.T, e outboxEnv, partitions int) int64 {
	t.Helper()
	var n int64
	for _, end := range endOffsets(t, e, partitions) {
		n += end
	}
	return n
}

// waitTopicEnd waits until the topic holds at least n records.
func waitTopicEnd(t *testing.T, e outboxEnv, partitions int, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := topicEnd(t, e, partitions)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s holds %d records after %s, want %d", e.Name, got, timeout, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// finishDelivery waits until the slot is confirmed past everything written and the topic holds
// every committed row, and returns the topic's records.
func finishDelivery(t *testing.T, e outboxEnv, committed *committedRows, timeout time.Duration) []record {
	t.Helper()
	waitConfirmedPast(t, e, currentWAL(t, e.DatabaseURL), timeout)
	return waitRecords(t, e.Brokers, e.Name, committed.n, time.Minute)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
