package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The fault suite (issue 5) shares this harness: a workload that runs until told to stop and can
// ride out a PostgreSQL restart, the relay's JSON log parsed by message, its memory from /proc,
// and the slot's state. Every fault test ends with the same checks as the crash test:
// checkDelivery (every committed row present, per-channel commit order) and
// checkDuplicatesUnconfirmed (a row sent twice was not confirmed when its first sender died).

// FaultWorkload is a workload whose writers run until stopped.
type FaultWorkload struct {
	Workload
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

// FaultPayload is the payload of the fault workload: the checks decode it as a payload.
type FaultPayload struct {
	Payload
	Tag string `json:"tag"`
	Pad string `json:"pad,omitempty"`
}

// WorkloadRun is a running workload: each writer commits its share of Rows and then goes on
// until stop is called, so that faults injected for an unknown time all happen while rows
// are being written.
type WorkloadRun struct {
	Got     *CommittedRows
	stopCh  chan struct{}
	stopped sync.Once
	done    chan error
	result  error
	waited  sync.Once
}

// StartWorkload starts the writers; the end of the test stops them (before the tables go).
func StartWorkload(t *testing.T, e Outbox, w FaultWorkload) *WorkloadRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	r := &WorkloadRun{Got: &CommittedRows{Rows: map[string][]int64{}}, stopCh: make(chan struct{}), done: make(chan error, 1)}
	var wg sync.WaitGroup
	errs := make(chan error, w.Writers)
	for i := range w.Writers {
		quota := WriterQuota(w.Rows, w.Writers, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := faultWriter(ctx, e, w, i, quota, r.stopCh, r.Got); err != nil {
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
		r.Stop()
		cancel() // a test that ended early does not wait for the writers' quotas
		_ = r.Finish()
	})
	return r
}

// Stop lets the writers end once they have written their share.
func (r *WorkloadRun) Stop() { r.stopped.Do(func() { close(r.stopCh) }) }

// Finish waits for the writers to end and returns their errors.
func (r *WorkloadRun) Finish() error {
	r.waited.Do(func() { r.result = <-r.done })
	return r.result
}

// Wait stops the writers, waits for them and returns what they committed.
func (r *WorkloadRun) Wait(t *testing.T) *CommittedRows {
	t.Helper()
	r.Stop()
	if err := r.Finish(); err != nil {
		t.Fatalf("workload: %v", err)
	}
	return r.Got
}

// Committed is the number of rows committed so far.
func (r *WorkloadRun) Committed() int {
	r.Got.mu.Lock()
	defer r.Got.mu.Unlock()
	return r.Got.N
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
func faultWriter(ctx context.Context, e Outbox, w FaultWorkload, id, quota int, stop <-chan struct{}, got *CommittedRows) error {
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
			got.Add(p)
		}
		quota -= n
	}
	return nil
}

// writeTxn runs one transaction of the workload and returns its outbox rows.
func writeTxn(ctx context.Context, conn *pgx.Conn, e Outbox, w FaultWorkload, id, kind, n int, tag string, rng *rand.Rand) ([]Payload, error) {
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
	var rows []Payload
	for _, ch := range chans {
		p := FaultPayload{Payload: Payload{Channel: ch, Writer: id, RolledBack: kind == 0}, Tag: tag, Pad: randomText(rng, w.Pad)}
		if err := tx.QueryRow(ctx, bump, ch).Scan(&p.Counter); err != nil {
			return nil, err
		}
		data, _ := json.Marshal(p)
		if _, err := tx.Exec(ctx, insert, ch, data); err != nil {
			return nil, err
		}
		rows = append(rows, p.Payload)
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
	connect := func(ctx context.Context) (*pgx.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return pgx.Connect(ctx, url)
	}
	if !retry {
		return connect(ctx)
	}
	var conn *pgx.Conn
	err := Eventually(ctx, 2*time.Minute, 200*time.Millisecond, func(ctx context.Context) error {
		var err error
		conn, err = connect(ctx)
		return err
	})
	return conn, err
}

// tagCommitted settles whether the transaction tagged tag committed: its rows are in the outbox.
func tagCommitted(ctx context.Context, e Outbox, tag string) (bool, error) {
	conn, err := connectWriter(ctx, e.DatabaseURL, true)
	if err != nil {
		return false, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var found bool
	err = conn.QueryRow(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE data->>'tag' = $1)`, e.Name), tag).Scan(&found)
	return found, err
}

// FinishDelivery waits until the slot is confirmed past everything written and the topic holds
// every committed row, and returns the topic's records.
func FinishDelivery(t *testing.T, e Outbox, committed *CommittedRows, timeout time.Duration) []Record {
	t.Helper()
	WaitConfirmedPast(t, e, CurrentWAL(t, e.DatabaseURL), timeout)
	return WaitRecords(t, e.Brokers, e.Name, committed.N, time.Minute)
}
