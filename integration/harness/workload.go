package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Payload is what the test writers store in the outbox's data column.
type Payload struct {
	Channel    string `json:"channel"`
	Counter    int64  `json:"counter"`
	Writer     int    `json:"writer"`
	RolledBack bool   `json:"rolled_back"`
}

// Workload describes concurrent writers: each transaction bumps a per-channel counter row and
// stores the counter in the payload, so the counter order IS the commit order of the channel.
type Workload struct {
	Writers, Rows, Channels, MaxTxnRows int
}

// CommittedRows is what the writers committed: channel → counters.
type CommittedRows struct {
	mu   sync.Mutex
	Rows map[string][]int64
	N    int
}

// Add notes a committed row.
func (c *CommittedRows) Add(p Payload) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Rows[p.Channel] = append(c.Rows[p.Channel], p.Counter)
	c.N++
}

// PrepareWorkload creates the counter and the unrelated tables of an outbox.
func PrepareWorkload(t *testing.T, e Outbox, channels int) {
	t.Helper()
	ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`CREATE TABLE %s_counters (channel text PRIMARY KEY, n bigint NOT NULL DEFAULT 0)`, e.Name))
	ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s_counters SELECT 'ch-' || g FROM generate_series(0, $1::int - 1) g`, e.Name), channels)
	ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`CREATE TABLE %s_other (id bigserial PRIMARY KEY, v text)`, e.Name))
	t.Cleanup(func() {
		ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP TABLE IF EXISTS %s_counters, %s_other`, e.Name, e.Name))
	})
}

// RunWorkload runs the writers to completion: w.Rows committed outbox rows in transactions of
// 1..MaxTxnRows rows, about one in ten rolled back and one in ten touching only another table.
func RunWorkload(t *testing.T, e Outbox, w Workload) *CommittedRows {
	t.Helper()
	got := &CommittedRows{Rows: map[string][]int64{}}
	var wg sync.WaitGroup
	errs := make(chan error, w.Writers)
	for i := range w.Writers {
		quota := WriterQuota(w.Rows, w.Writers, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- writer(e, w, i, quota, got)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	}
	return got
}

// WriterQuota splits rows over writers; the first takes the remainder.
func WriterQuota(rows, writers, i int) int {
	if i == 0 {
		return rows/writers + rows%writers
	}
	return rows / writers
}

func writer(e Outbox, w Workload, id, quota int, got *CommittedRows) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.DatabaseURL)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }()
	rng := rand.New(rand.NewPCG(uint64(id), 42))
	bump := fmt.Sprintf(`UPDATE %s_counters SET n = n + 1 WHERE channel = $1 RETURNING n`, e.Name)
	insert := fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ($1, 'test.event', $2)`, e.Name)
	other := fmt.Sprintf(`INSERT INTO %s_other (v) VALUES ($1)`, e.Name)

	for quota > 0 {
		kind := rng.IntN(10) // 0: rolled back, 1: other table only, else committed
		if kind == 1 {
			if _, err := conn.Exec(ctx, other, "only"); err != nil {
				return err
			}
			continue
		}
		n := 1 + rng.IntN(w.MaxTxnRows)
		if kind != 0 {
			n = min(n, quota)
		}
		chans := make([]string, n)
		for i := range chans {
			chans[i] = fmt.Sprintf("ch-%d", rng.IntN(w.Channels))
		}
		slices.Sort(chans) // lock counter rows in one order: no deadlocks between writers
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		var rows []Payload
		for _, ch := range chans {
			p := Payload{Channel: ch, Writer: id, RolledBack: kind == 0}
			if err := tx.QueryRow(ctx, bump, ch).Scan(&p.Counter); err != nil {
				return err
			}
			data, _ := json.Marshal(p)
			if _, err := tx.Exec(ctx, insert, ch, data); err != nil {
				return err
			}
			rows = append(rows, p)
		}
		if _, err := tx.Exec(ctx, other, "with outbox rows"); err != nil {
			return err
		}
		if kind == 0 {
			if err := tx.Rollback(ctx); err != nil {
				return err
			}
			continue
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		for _, p := range rows {
			got.Add(p)
		}
		quota -= n
	}
	return nil
}

// BigChannels is the number of channels CommitRows spreads its rows over.
const BigChannels = 10

// CommitBigTxn commits one transaction of rows outbox rows on channels big-0 .. big-9, in one
// statement (about a second per 100,000 rows, however loaded the writers are), and adds them to
// got.
func CommitBigTxn(t *testing.T, e Outbox, got *CommittedRows, first int64, rows int) {
	t.Helper()
	CommitRows(t, e, got, "big-", first, rows)
}

// CommitRows commits one transaction of rows outbox rows on channels <prefix>0 .. <prefix>9
// with counters first, first+1... (first >= 1; the counter of a channel grows in commit order as long as
// each call starts above the last) and adds them to got.
func CommitRows(t *testing.T, e Outbox, got *CommittedRows, prefix string, first int64, rows int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	last := first + int64(rows) - 1
	err := Exec(ctx, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s (channel, name, data)
		SELECT $3 || (k %% %d), 'big', jsonb_build_object('channel', $3 || (k %% %d), 'counter', k)
		FROM generate_series($1::bigint, $2::bigint) k ORDER BY k`, e.Name, BigChannels, BigChannels), first, last, prefix)
	if err != nil {
		t.Fatalf("commit a transaction of %d rows: %v", rows, err)
	}
	for k := first; k <= last; k++ {
		got.Add(Payload{Channel: fmt.Sprintf("%s%d", prefix, k%BigChannels), Counter: k})
	}
}
