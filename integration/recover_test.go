//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestPublicationRecover: the outbox leaves the publication under 4 writers; the guard stops
// the relay. The publication is fixed, and the relay is started again WITHOUT recover, as a
// supervisor would: it must refuse, every time, with the same message and exit status, and
// `pgoutbox status` must be critical (before the stretch was persisted, that restart decoded
// the stretch again, pgoutput filtered its inserts again, and 540 of 1,000 rows were lost
// silently). The test then follows the advice: `pgoutbox recover` (a dry run that publishes
// nothing), `pgoutbox recover --apply`, the relay again. Every committed row must be in Kafka
// exactly once, with its true transaction id, and each recovered channel's clients told to
// re-sync.
func TestPublicationRecover(t *testing.T) {
	for _, tc := range recoverCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testPublicationRecover(t, pgTarget{}, tc)
		})
	}
}

type recoverCase struct {
	name              string
	breakSQL, mendSQL string // %[1]s = publication, %[2]s = table
	hold              time.Duration
}

var recoverCases = []recoverCase{
	{"drop table for 3s", `ALTER PUBLICATION %[1]s DROP TABLE %[2]s`, `ALTER PUBLICATION %[1]s ADD TABLE %[2]s`, 3 * time.Second},
	{"publish update and delete for 2s", `ALTER PUBLICATION %[1]s SET (publish = 'update, delete')`, `ALTER PUBLICATION %[1]s SET (publish = 'insert')`, 2 * time.Second},
	// The relay's slot cannot decode past the drop through its publication; the recovery
	// publication covers the stretch, and the slot is moved past the re-creation.
	{"drop publication for 2s", `DROP PUBLICATION %[1]s`, `CREATE PUBLICATION %[1]s FOR TABLE %[2]s WITH (publish = 'insert')`, 2 * time.Second},
}

func testPublicationRecover(t *testing.T, target pgTarget, tc recoverCase) {
	e := harness.NewOutboxOn(t, target.services(t), 2)
	relay := e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
	relay.WaitLog("streaming started", time.Minute)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	const writers = 4
	for w := range writers {
		wg.Add(1)
		go func() { // one row per transaction, every other one two rows, until cancelled
			defer wg.Done()
			conn := harness.Connect(t, e.DatabaseURL)
			for n := 0; ctx.Err() == nil; n++ {
				sql := fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ('w%d', 'recover', '{"n": %d}')`, e.Name, w, n)
				if n%2 == 1 {
					sql += fmt.Sprintf(`, ('w%d', 'recover', '{"n": %d, "second": true}')`, w, n)
				}
				if _, err := conn.Exec(ctx, sql); err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	harness.WaitRecords(t, e.Brokers, e.Name, 100, time.Minute)
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(tc.breakSQL, e.Name, e.Name))
	time.Sleep(tc.hold)
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(tc.mendSQL, e.Name, e.Name))
	select {
	case <-relay.Done:
	case <-time.After(time.Minute):
		t.Fatal("the relay kept running after the publication stopped covering the outbox")
	}
	time.Sleep(time.Second) // rows committed after the mend
	cancel()
	wg.Wait()
	if relay.Err == nil {
		t.Fatal("the relay exited 0 after the guard fired")
	}
	firstLog := relay.Log.String()
	if !strings.Contains(firstLog, "pgoutbox recover --apply") || !strings.Contains(firstLog, "publication stretch recorded") ||
		!strings.Contains(firstLog, "slot alarm lost") {
		t.Fatalf("the guard's advice does not name `pgoutbox recover --apply`, the stretch was not recorded, or no slot alarm lost line:\n%s", relay.InfoTail(10))
	}

	var committed int
	if err := harness.QueryRow(context.Background(), e.DatabaseURL, fmt.Sprintf(`SELECT count(*) FROM %s`, e.Name), nil, &committed); err != nil {
		t.Fatal(err)
	}
	before, err := harness.ReadTopic(context.Background(), e.Brokers, e.Name)
	if err != nil {
		t.Fatal(err)
	}

	// Restarted without recover, as a supervisor would: it refuses, every time, the same way.
	for i := range 2 {
		r := e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
		select {
		case <-r.Done:
		case <-time.After(time.Minute):
			t.Fatalf("start %d without recover: the relay runs", i+1)
		}
		var exit *exec.ExitError
		if !errors.As(r.Err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("start %d without recover exited %v, want status 1", i+1, r.Err)
		}
		log := r.Log.String()
		for _, want := range []string{"the publication stopped covering the outbox inserts", "was not recovered", "pgoutbox recover --apply"} {
			if !strings.Contains(log, want) {
				t.Errorf("start %d without recover: log lacks %q:\n%s", i+1, want, r.Log.Tail(5))
			}
		}
		if strings.Contains(log, "streaming started") {
			t.Errorf("start %d without recover streamed", i+1)
		}
	}
	if code, out := e.StatusExit(t); code != 2 || !strings.Contains(out, "publication stretch not recovered") || !strings.Contains(out, "pgoutbox recover") {
		t.Errorf("pgoutbox status exit %d, want 2 (critical) naming the stretch and `pgoutbox recover`:\n%s", code, out)
	}

	// The advice: a dry run first, which publishes nothing.
	code, dry := e.RunExit(t, "recover")
	if code != 0 || !strings.Contains(dry, "dry run") {
		t.Fatalf("pgoutbox recover (dry run) exit %d:\n%s", code, dry)
	}
	if recs, err := harness.ReadTopic(context.Background(), e.Brokers, e.Name); err != nil || len(recs) != len(before) {
		t.Fatalf("the dry run changed the topic: %d records, was %d (%v)", len(recs), len(before), err)
	}
	code, applied := e.RunExit(t, "recover", "--apply")
	if code != 0 {
		t.Fatalf("pgoutbox recover --apply exit %d:\n%s", code, applied)
	}
	code, again := e.RunExit(t, "recover", "--apply")
	if code != 0 || !strings.Contains(again, "nothing to recover") {
		t.Fatalf("second pgoutbox recover --apply exit %d, want nothing to recover:\n%s", code, again)
	}
	afterRecover, err := harness.ReadTopic(context.Background(), e.Brokers, e.Name)
	if err != nil {
		t.Fatal(err)
	}

	relay = e.StartRelay(t, "PGOUTBOX_LOG_LEVEL=info")
	relay.WaitLog("streaming started", time.Minute)
	recs := waitEvents(t, e, committed, time.Minute)
	relay.Stop(30 * time.Second)
	if code, out := e.StatusExit(t); code != 0 {
		t.Errorf("pgoutbox status exit %d after recovery, want 0:\n%s", code, out)
	}

	// Every row exactly once, with its true transaction id.
	xmins := map[string]uint64{}
	rows, err := harness.Connect(t, e.DatabaseURL).Query(context.Background(), fmt.Sprintf(`SELECT sequence_id::text, xmin::text::bigint FROM %s`, e.Name))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var xmin uint64
		if err := rows.Scan(&id, &xmin); err != nil {
			t.Fatal(err)
		}
		xmins[id] = xmin
	}
	rows.Close()
	seen := map[string]int{}
	resynced := map[string]bool{}
	dups := 0
	lastPos := map[string]string{}
	outOfOrder := 0
	// A channel whose records went out of commit order (the relay published rows after the
	// stretch before the guard stopped it, and recover published the stretch after them) must
	// get a re-sync record after them: its clients bootstrap again.
	unsettled := map[string]bool{}
	for _, r := range recs {
		if r.Headers["pgoutbox-control"] == "resync" {
			resynced[r.Headers["pgoutbox-channel"]] = true
			delete(unsettled, r.Headers["pgoutbox-channel"])
			continue
		}
		id := r.Headers["pgoutbox-id"]
		seen[id]++
		if seen[id] > 1 {
			dups++
		}
		xid, _ := strconv.ParseUint(r.Headers["pgoutbox-xid"], 10, 64)
		if xmin, ok := xmins[id]; !ok || xid&0xFFFFFFFF != xmin {
			t.Errorf("row %s: pgoutbox-xid %d, but the row's xmin is %d", id, xid, xmins[id])
		}
		if p := r.Headers["pgoutbox-position"]; p <= lastPos[string(r.Key)] {
			outOfOrder++
			unsettled[string(r.Key)] = true
		} else {
			lastPos[string(r.Key)] = p
		}
	}
	missing := 0
	for id := range xmins {
		if seen[id] == 0 {
			missing++
		}
	}
	stretch := len(afterRecover) - len(before) - len(resynced)
	t.Logf("%d rows committed by %d writers; %d in Kafka when the guard stopped the relay; recover published %d (the stretch) and re-synced %d channels; "+
		"after the restart: %d missing, %d duplicates, %d out of commit order within a channel",
		committed, writers, countEvents(before), stretch, len(resynced), missing, dups, outOfOrder)
	t.Logf("recover --apply said:\n%s", applied)
	if missing != 0 || dups != 0 {
		t.Errorf("%d rows missing and %d duplicated in Kafka", missing, dups)
	}
	if stretch <= 0 {
		t.Errorf("recover published no events: the stretch held none (hold %s under %d writers)", tc.hold, writers)
	}
	if len(resynced) == 0 {
		t.Error("no channel was told to re-sync")
	}
	if len(unsettled) != 0 {
		t.Errorf("%d records out of commit order within their channel, and channels %v got no re-sync record after them", outOfOrder, unsettled)
	}
}

// countEvents counts the records that are events (not control records).
func countEvents(recs []harness.Record) int {
	n := 0
	for _, r := range recs {
		if r.Headers["pgoutbox-control"] == "" {
			n++
		}
	}
	return n
}

// waitEvents polls the topic until it holds at least n events (control records aside).
func waitEvents(t *testing.T, e harness.Outbox, n int, timeout time.Duration) []harness.Record {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs, err := harness.ReadTopic(context.Background(), e.Brokers, e.Name)
		if err == nil && countEvents(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s holds %d events after %s, want %d (last error: %v)", e.Name, countEvents(recs), timeout, n, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
