//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestFullXID_EpochAboveZero: on a server whose transaction ids are in epoch 1 (set with
// pg_resetwal -e on a private cluster), pgoutbox-xid is the full 64-bit id, equal to what
// pg_current_xact_id() said inside the transaction (above 2^32), not pgoutput's 32-bit xid.
func TestFullXID_EpochAboveZero(t *testing.T) {
	t.Parallel()
	pg := harness.StartPrivatePostgres(t)
	pg.Stop()
	resetwal := newestPgBinary(t, "pg_resetwal")
	args := []string{resetwal, "-e", "1", "-D", filepath.Join(pg.State, "pg", "data")}
	if os.Geteuid() == 0 { // the cluster belongs to the postgres user, as in deploy/local/postgres.sh
		args = append([]string{"runuser", "-u", "postgres", "--"}, args...)
	}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	pg.Start()

	e := harness.NewOutboxOn(t, harness.Services{DatabaseURL: pg.URL, Brokers: harness.NeedKafka(t)}, 1)
	e.StartRelay(t)
	ctx := context.Background()
	conn := harness.Connect(t, pg.URL)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var full uint64
	if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&full); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (channel, name, data) VALUES ('c', 'n', '{}')`, e.Name)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if full>>32 != 1 {
		t.Fatalf("pg_current_xact_id() = %d, epoch %d: pg_resetwal -e 1 did not take", full, full>>32)
	}
	recs := harness.WaitRecords(t, e.Brokers, e.Name, 1, 60*time.Second)
	if got := recs[0].Headers["pgoutbox-xid"]; got != strconv.FormatUint(full, 10) {
		t.Errorf("pgoutbox-xid = %q, want the full id %d (32-bit xid %d)", got, full, uint32(full))
	}
}

// newestPgBinary returns the named program of the newest PostgreSQL installed from Debian's
// packages (where deploy/local/postgres.sh finds its server).
func newestPgBinary(t *testing.T, name string) string {
	t.Helper()
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(found) == 0 {
		t.Fatalf("no %s under /usr/lib/postgresql/*/bin", name)
	}
	sort.Slice(found, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[j]))))
		return vi < vj
	})
	return found[len(found)-1]
}
