//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/jackc/pgx/v5"
)

// failoverVersion is the PostgreSQL of the failover tests: failover slots are new in 17.
const failoverVersion = "17"

// The failover tests' outbox: its topic's partitions, and the channels its writers use.
const failoverPartitions, failoverChannels = 3, 20

// TestFailover_PromotedStandby: a primary and a streaming physical standby (PostgreSQL 17), the
// slot created with `setup --failover` and synchronized to the standby (sync_replication_slots),
// and synchronized_standby_slots on the primary so that the relay never receives changes the
// standby lacks. Writers commit while the relay streams through a multi-host URL with
// target_session_attrs=read-write; the primary is killed, the standby promoted, and writers and
// relay carry on against it. Every row in the new primary's outbox table is in Kafka once at
// least, in per-channel commit order, and Kafka holds no row the new primary lacks.
func TestFailover_PromotedStandby(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	primary, standby, multi, e := startFailoverPair(t, "it_failover_standby")
	var failover bool
	if err := harness.QueryRow(ctx, primary.URL, `SELECT failover FROM pg_replication_slots WHERE slot_name = $1`, []any{e.Name}, &failover); err != nil || !failover {
		t.Fatalf("setup --failover made slot %s with failover=%v (%v)", e.Name, failover, err)
	}

	relay := e.StartRelay(t, "PGOUTBOX_RECONNECT_MAX=1s")
	relay.WaitLog("streaming started", time.Minute)
	writers := startFailoverWriters(t, multi, e.Name, 4, failoverChannels)
	waitSlotSynced(t, standby, e.Name, 2*time.Minute)
	time.Sleep(3 * time.Second) // writes flow through the relay

	killed := time.Now()
	primary.Script("kill")
	standby.Script("promote")
	promoted := time.Since(killed)
	waitStreamingAgain(t, relay) // from the promoted standby
	takeover := time.Since(killed)
	time.Sleep(3 * time.Second) // writes on the new primary
	acked, errs := writers.stop()

	// The truth is the new primary's table: it holds every acknowledged commit (synchronous
	// replication) and those whose COMMIT reply the primary's death cut off, if they committed.
	truth, rows := tableRows(t, standby.URL, e.Name)
	if missing := acked - rows; missing > 0 {
		t.Errorf("%d acknowledged rows are not in the new primary's table (synchronous replication should keep them)", missing)
	}
	end := harness.CurrentWAL(t, standby.URL)
	harness.WaitConfirmedPast(t, harness.Outbox{Services: harness.Services{DatabaseURL: standby.URL}, Name: e.Name}, end, 2*time.Minute)
	recs := harness.WaitRecords(t, e.Brokers, e.Name, rows, 2*time.Minute)
	relay.Stop(30 * time.Second)
	dups := checkDelivery(t, recs, truth, failoverPartitions)
	t.Logf("rows %d (acknowledged %d, writer errors during the failover %d), records in Kafka %d, lost 0 unless reported above, duplicates %d; "+
		"promotion done %s after the kill, relay streaming again %s after it",
		rows, acked, errs, len(recs), dups, promoted.Round(time.Millisecond), takeover.Round(time.Millisecond))
}

// newStandby makes a physical standby of primary from a cold copy of its data directory (Debian's
// pg_basebackup 15 refuses newer servers), streaming through the physical slot, with slot

// waitStreamingAgain waits for the relay's second "streaming started": after the primary's death,
// it streams from the promoted standby.
func waitStreamingAgain(t *testing.T, relay *harness.Relay) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for strings.Count(relay.Log.String(), "streaming started") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not stream again within 3 minutes of the primary's death")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startFailoverPair starts a primary (failoverVersion) and a streaming physical standby on the
// physical slot standbySlot. Commits wait for the standby (synchronous_standby_names, so an
// acknowledged commit survives a failover), and logical decoding never runs ahead of it
// (synchronized_standby_slots, so Kafka never holds what the standby lacks). It creates an
// outbox of 3 partitions through the multi-host URL it returns, its slot made by
// `setup --failover`, and a table <outbox>_counters of channels ch-0 … ch-19.
func startFailoverPair(t *testing.T, standbySlot string) (primary, standby *harness.PrivatePostgres, multi string, e harness.Outbox) {
	t.Helper()
	primary = harness.StartPrivatePostgresVersion(t, failoverVersion)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := primary.Superuser(t).Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, standbySlot); err != nil {
		t.Fatal(err)
	}
	standby = newStandby(t, primary, standbySlot)
	primary.SetConf(t, "synchronous_standby_names", standbySlot)
	primary.SetConf(t, "synchronized_standby_slots", standbySlot)
	waitStandbyStreaming(t, primary, standbySlot)

	multi = fmt.Sprintf("postgres://pgoutbox:pgoutbox@127.0.0.1:%d,127.0.0.1:%d/pgoutbox?target_session_attrs=read-write",
		primary.Port, standby.Port)
	e = harness.NewOutboxOn(t, harness.Services{DatabaseURL: multi, Brokers: harness.NeedKafka(t)}, failoverPartitions, "--failover")
	harness.ExecSQL(t, multi, fmt.Sprintf(`CREATE TABLE %s_counters (channel text PRIMARY KEY, n bigint NOT NULL DEFAULT 0)`, e.Name))
	harness.ExecSQL(t, multi, fmt.Sprintf(`INSERT INTO %s_counters SELECT 'ch-' || g FROM generate_series(0, %d) g`, e.Name, failoverChannels-1))
	return primary, standby, multi, e
}

// synchronization on, and starts both.
func newStandby(t *testing.T, primary *harness.PrivatePostgres, slot string) *harness.PrivatePostgres {
	t.Helper()
	standby := harness.NewPrivatePostgres(t, primary.Version)
	primary.Stop()
	src, dst := filepath.Join(primary.State, primary.Dir), filepath.Join(standby.State, standby.Dir)
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy the primary's cluster: %v\n%s", err, out)
	}
	data := filepath.Join(dst, "data")
	for _, f := range []string{"postmaster.pid", "postmaster.opts"} {
		_ = os.Remove(filepath.Join(data, f))
	}
	_ = os.Remove(filepath.Join(dst, "postgres.log"))
	conf := fmt.Sprintf(`
# --- standby of 127.0.0.1:%d (TestFailover) ---
unix_socket_directories = '%s'
primary_conninfo = 'host=127.0.0.1 port=%d user=pgoutbox password=pgoutbox dbname=pgoutbox application_name=%s'
primary_slot_name = '%s'
hot_standby_feedback = on
sync_replication_slots = on
`, primary.Port, standby.SocketDir(), primary.Port, slot, slot)
	appendOwned(t, filepath.Join(data, "postgresql.auto.conf"), conf)
	appendOwned(t, filepath.Join(data, "standby.signal"), "")
	primary.Start()
	standby.Start()
	return standby
}

// appendOwned appends to a file of the data directory, keeping it owned by the directory's owner
// (the postgres user, when the tests run as root).
func appendOwned(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Dir(path)); err == nil {
		if uid, gid, ok := fileOwner(st); ok {
			_ = os.Chown(path, uid, gid)
		}
	}
}

func fileOwner(st os.FileInfo) (uid, gid int, ok bool) {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(s.Uid), int(s.Gid), true
}

func waitStandbyStreaming(t *testing.T, primary *harness.PrivatePostgres, name string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	su := primary.Superuser(t)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var n int
		err := su.QueryRow(ctx, `SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'`, name).Scan(&n)
		cancel()
		if err == nil && n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby %s not streaming after a minute (%v); primary's log:\n%s", name, err, primary.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitSlotSynced waits until the standby holds the slot as a synchronized failover slot.
func waitSlotSynced(t *testing.T, standby *harness.PrivatePostgres, slot string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var synced bool
		err := harness.QueryRow(ctx, standby.URL, `SELECT synced AND NOT temporary FROM pg_replication_slots WHERE slot_name = $1`, []any{slot}, &synced)
		cancel()
		if err == nil && synced {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s not synchronized to the standby after %s (%v); standby log:\n%s", slot, timeout, err, standby.Log())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// failoverWriters commit outbox rows through the multi-host URL, reconnecting when the server
// goes away, until stopped.
type failoverWriters struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	acked  atomic.Int64
	errs   atomic.Int64
}

func startFailoverWriters(t *testing.T, url, name string, n, channels int) *failoverWriters {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &failoverWriters{cancel: cancel}
	for id := range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run(ctx, url, name, id, channels)
		}()
	}
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *failoverWriters) run(ctx context.Context, url, name string, id, channels int) {
	rng := rand.New(rand.NewPCG(uint64(id), 17))
	bump := fmt.Sprintf(`UPDATE %s_counters SET n = n + 1 WHERE channel = $1 RETURNING n`, name)
	insert := fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ($1, 'failover', $2)`, name)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			c, err := pgx.Connect(ctx, url)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			conn = c
		}
		chans := make([]string, 1+rng.IntN(3))
		for i := range chans {
			chans[i] = fmt.Sprintf("ch-%d", rng.IntN(channels))
		}
		slices.Sort(chans)
		if err := w.txn(ctx, conn, bump, insert, id, chans); err != nil {
			if ctx.Err() == nil {
				w.errs.Add(1)
			}
			_ = conn.Close(context.Background())
			conn = nil
			continue
		}
		w.acked.Add(int64(len(chans)))
	}
}

func (w *failoverWriters) txn(ctx context.Context, conn *pgx.Conn, bump, insert string, id int, chans []string) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	for _, ch := range chans {
		p := harness.Payload{Channel: ch, Writer: id}
		if err := tx.QueryRow(ctx, bump, ch).Scan(&p.Counter); err != nil {
			return err
		}
		data, _ := json.Marshal(p)
		if _, err := tx.Exec(ctx, insert, ch, data); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// stop ends the writers and returns the rows they saw committed and the errors they met.
func (w *failoverWriters) stop() (acked, errs int) {
	w.cancel()
	w.wg.Wait()
	return int(w.acked.Load()), int(w.errs.Load())
}

// tableRows reads every row of the outbox table as committedRows, per channel in counter order.
func tableRows(t *testing.T, url, table string) (*harness.CommittedRows, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := harness.Connect(t, url)
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT data FROM %s ORDER BY (data->>'counter')::bigint`, table))
	if err != nil {
		t.Fatal(err)
	}
	got := &harness.CommittedRows{Rows: map[string][]int64{}}
	for rows.Next() {
		var p harness.Payload
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		got.Add(p)
	}
	if err := rows.Err(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	return got, got.N
}

// TestSetup_FailoverRefusedBefore17: on a server older than PostgreSQL 17, `setup --failover`
// fails with the reason and the fix before it creates anything.
func TestSetup_FailoverRefusedBefore17(t *testing.T) {
	t.Parallel()
	svc := harness.NeedServices(t)
	var num int
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := harness.QueryRow(ctx, svc.DatabaseURL, `SELECT current_setting('server_version_num')::int`, nil, &num); err != nil {
		t.Fatal(err)
	}
	if num >= 170000 {
		t.Skipf("the shared server is %d; this test needs one older than PostgreSQL 17", num)
	}
	e := harness.Outbox{Services: svc, Name: harness.UniqueName(t)}
	harness.DropSlotAtCleanup(t, e.DatabaseURL, e.Name)
	t.Cleanup(func() {
		harness.ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP PUBLICATION IF EXISTS %s`, e.Name))
		harness.ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP TABLE IF EXISTS %s`, e.Name))
	})
	out, err := e.Pgoutbox(t, "setup", "--failover")
	if err == nil || !strings.Contains(out, "failover slots need PostgreSQL 17 or later") {
		t.Fatalf("setup --failover on server %d: err %v, output:\n%s", num, err, out)
	}
	var exists bool
	if err := harness.QueryRow(ctx, svc.DatabaseURL, `SELECT to_regclass($1) IS NOT NULL OR EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1)`, []any{e.Name}, &exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("setup --failover was refused but created the table or the slot %s", e.Name)
	}
	t.Logf("refused: %s", lastLine(out))
}
