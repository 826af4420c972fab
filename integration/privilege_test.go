//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// The least-privilege role that deploy/local/postgres.sh makes with deploy/sql/relay-role.sql:
// LOGIN REPLICATION, and no privilege on any table.
const relayRole = "pgoutbox_relay"

// asRole returns the database URL with another role and password.
func asRole(t *testing.T, databaseURL, role, password string) string {
	t.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	return u.String()
}

// needRelayRole returns the URL of the relay role after checking that it exists as
// relay-role.sql makes it.
func needRelayRole(t *testing.T, ownerURL string) string {
	t.Helper()
	var repl, super bool
	err := harness.Connect(t, ownerURL).QueryRow(context.Background(),
		`SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = $1`, relayRole).Scan(&repl, &super)
	if err != nil || !repl || super {
		harness.Unavailable(t, "role %s missing or not as deploy/sql/relay-role.sql makes it (replication=%v superuser=%v, %v): "+
			"run deploy/local/postgres.sh start to bootstrap it", relayRole, repl, super, err)
	}
	return asRole(t, ownerURL, relayRole, relayRole)
}

// newOwnedOutbox is the owner's part of a least-privilege installation: the table and the
// publication, made by the first two statements of `pgoutbox setup --print-sql`. It creates
// neither the slot nor the topic, and removes everything at the end of the test.
func newOwnedOutbox(t *testing.T) harness.Outbox {
	t.Helper()
	e := harness.Outbox{Services: harness.NeedServices(t), Name: harness.UniqueName(t)}
	harness.DropSlotAtCleanup(t, e.DatabaseURL, e.Name)
	t.Cleanup(func() {
		harness.ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP PUBLICATION IF EXISTS %s`, e.Name))
		harness.ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP TABLE IF EXISTS %s`, e.Name))
		harness.DeleteTopicQuietly(e.Brokers, e.Name)
	})
	out, err := e.Pgoutbox(t, "setup", "--print-sql")
	if err != nil {
		t.Fatalf("setup --print-sql: %v\n%s", err, out)
	}
	stmts := strings.Split(out, ";\n\n")
	if len(stmts) != 11 || !strings.HasPrefix(stmts[0], "CREATE TABLE") || !strings.HasPrefix(stmts[1], "CREATE PUBLICATION") ||
		!strings.HasPrefix(stmts[2], "CREATE PUBLICATION") || !strings.HasPrefix(stmts[3], "CREATE TABLE") {
		t.Fatalf("setup --print-sql: want table, publication, recovery publication, stretch table, slot, then the WAL-only outbox's functions (the channel check, pgoutbox_send, pgoutbox_send_bytes, with their grants: 11 statements); got:\n%s", out)
	}
	t.Cleanup(func() {
		harness.ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP PUBLICATION IF EXISTS %s_recovery`, e.Name))
	})
	for _, stmt := range stmts[:4] {
		harness.ExecSQL(t, e.DatabaseURL, stmt)
	}
	// The relay records a publication stretch there, and every start reads it.
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`GRANT SELECT, INSERT, UPDATE ON public.pgoutbox_gap TO %s`, relayRole))
	// pgoutbox_send and pgoutbox_send_bytes (--events-from=both), in one transaction under the
	// lock that setup takes, as parallel tests install them in the same schema.
	harness.ExecSQL(t, e.DatabaseURL, "SELECT pg_advisory_xact_lock(hashtext('pgoutbox_send public'));\n"+strings.Join(stmts[5:], ";\n"))
	return e
}

// TestLeastPrivilege_Relay: the relay streams as a role with REPLICATION and no privilege on
// the table; that role runs `pgoutbox setup` itself once the owner made the table and the
// publication; --retention=delete-after-publish needs exactly what retention-grants.sql grants.
func TestLeastPrivilege_Relay(t *testing.T) {
	t.Parallel()
	e := newOwnedOutbox(t)
	relayURL := needRelayRole(t, e.DatabaseURL)
	asRelay := "PGOUTBOX_DATABASE_URL=" + relayURL

	out, err := e.PgoutboxWith(t, []string{asRelay}, "setup", "--partitions", "2")
	if err != nil || !strings.Contains(out, "created replication slot") {
		t.Fatalf("setup as %s: %v\n%s", relayRole, err, out)
	}
	var canSelect bool
	if err := harness.Connect(t, e.DatabaseURL).QueryRow(context.Background(),
		`SELECT has_table_privilege($1, $2, 'SELECT')`, relayRole, e.Name).Scan(&canSelect); err != nil || canSelect {
		t.Fatalf("%s may SELECT from %s (%v): the test would prove nothing", relayRole, e.Name, err)
	}

	relay := e.StartRelay(t, asRelay)
	relay.WaitLog("streaming started", 30*time.Second)
	for i := range 10 {
		insertReturningID(t, e, fmt.Sprintf("ch-%d", i%3), `{"n":1}`, "")
	}
	harness.WaitRecords(t, e.Brokers, e.Name, 10, time.Minute)
	relay.Stop(30 * time.Second)

	// Retention without its grants: the relay stops at start-up and names the privilege.
	relay = e.StartRelay(t, asRelay, "PGOUTBOX_RETENTION=delete-after-publish")
	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatal("retention without DELETE: exit 0, want non-zero")
	}
	if log := relay.Log.String(); !strings.Contains(log, "GRANT DELETE") {
		t.Errorf("retention without DELETE: the error does not name the grant:\n%s", relay.Log.Tail(5))
	}

	// With retention-grants.sql, run by the owner: published rows are deleted.
	psql, err := exec.LookPath("psql")
	if err != nil {
		harness.Unavailable(t, "psql is not installed (Debian package postgresql-client)")
	}
	grant := exec.Command(psql, e.DatabaseURL, "-q", "-v", "role="+relayRole, "-v", "schema=public",
		"-v", "table="+e.Name, "-v", "id_column=sequence_id", "-f", filepath.Join("..", "deploy", "sql", "retention-grants.sql"))
	if out, err := grant.CombinedOutput(); err != nil {
		t.Fatalf("retention-grants.sql: %v\n%s", err, out)
	}
	relay = e.StartRelay(t, asRelay, "PGOUTBOX_RETENTION=delete-after-publish")
	relay.WaitLog("streaming started", 30*time.Second)
	var published []string // the rows of the first relay, published without retention, stay
	for i := range 10 {
		published = append(published, insertReturningID(t, e, fmt.Sprintf("ch-%d", i%3), `{"n":2}`, ""))
	}
	harness.WaitRecords(t, e.Brokers, e.Name, 20, time.Minute)
	left := func() (n int) {
		ids := outboxIDs(t, e)
		for _, id := range published {
			if ids[id] {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); left() > 0 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	if n := left(); n > 0 {
		t.Errorf("%d published rows still in the table with retention on", n)
	}
	relay.Stop(30 * time.Second)
}

// TestSetup_NamesMissingPrivilege: `pgoutbox setup` as a role that may not create what is
// missing fails before changing anything, naming each missing privilege and who can fix it.
func TestSetup_NamesMissingPrivilege(t *testing.T) {
	t.Parallel()
	svc := harness.NeedServices(t)
	relayURL := needRelayRole(t, svc.DatabaseURL)
	e := harness.Outbox{Services: svc, Name: harness.UniqueName(t)}
	harness.DropSlotAtCleanup(t, e.DatabaseURL, e.Name)
	t.Cleanup(func() { harness.ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP TABLE IF EXISTS %s`, e.Name)) })
	setupAs := func(url string) string {
		t.Helper()
		out, err := e.PgoutboxWith(t, []string{"PGOUTBOX_DATABASE_URL=" + url}, "setup")
		if err == nil {
			t.Fatalf("setup succeeded, want a privilege error:\n%s", out)
		}
		return out
	}

	// Nothing exists: the table needs CREATE on the schema, the publication CREATE on the database.
	out := setupAs(relayURL)
	for _, w := range []string{relayRole, "CREATE on schema", "GRANT CREATE ON SCHEMA", "CREATE on database", "--print-sql"} {
		if !strings.Contains(out, w) {
			t.Errorf("nothing exists: the error does not mention %q:\n%s", w, out)
		}
	}
	// The owner made the table: only its owner may publish it.
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`CREATE TABLE %s (sequence_id bigserial PRIMARY KEY, channel text NOT NULL,
		name text NOT NULL, data jsonb, headers jsonb)`, e.Name))
	out = setupAs(relayURL)
	for _, w := range []string{"only the owner", "role pgoutbox,", "CREATE PUBLICATION"} {
		if !strings.Contains(out, w) {
			t.Errorf("table of another owner: the error does not mention %q:\n%s", w, out)
		}
	}
	// A role without REPLICATION cannot make the slot.
	out = setupAs(asRole(t, e.DatabaseURL, "pgoutbox_norepl", "pgoutbox_norepl"))
	if !strings.Contains(out, "REPLICATION") {
		t.Errorf("role without REPLICATION: the error does not say so:\n%s", out)
	}
	var slots int
	if err := harness.Connect(t, e.DatabaseURL).QueryRow(context.Background(),
		`SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, e.Name).Scan(&slots); err != nil || slots != 0 {
		t.Errorf("a failed setup left a slot (%d, %v)", slots, err)
	}
}
