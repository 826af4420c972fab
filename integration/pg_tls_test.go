//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// pgTLSPassword is the password of the private cluster's pgoutbox role in the TLS test:
// distinctive, so that the test can prove that no output shows it.
const pgTLSPassword = "pg-Tls-s3cret-9Zk"

// TestPostgresTLS_VerifyFull: with sslmode=verify-full and sslrootcert in the database URL,
// setup, the relay's queries and its replication connection all use TLS and verify the server's
// certificate and host name; the URL (with its password) comes from PGOUTBOX_DATABASE_URL_FILE
// and appears in no output, at debug level. A server certificate from an unknown CA stops the
// start-up with an error that says so.
func TestPostgresTLS_VerifyFull(t *testing.T) {
	t.Parallel()
	brokers := harness.NeedKafka(t)
	pg := harness.StartPrivatePostgres(t)
	pki := serverPKI(t, pg)
	pg.SetConf(t, "ssl_cert_file", pki.ServerCertFile)
	pg.SetConf(t, "ssl_key_file", pki.ServerKeyFile)
	pg.SetConf(t, "ssl", "on")
	ctx := context.Background()
	if _, err := pg.Superuser(t).Exec(ctx, fmt.Sprintf(`ALTER ROLE pgoutbox PASSWORD '%s'`, pgTLSPassword)); err != nil {
		t.Fatal(err)
	}

	tlsURL := func(caFile string) string {
		q := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {caFile}}
		return fmt.Sprintf("postgres://pgoutbox:%s@localhost:%d/pgoutbox?%s", pgTLSPassword, pg.Port, q.Encode())
	}
	urlFile := func(u string) []string {
		path := filepath.Join(t.TempDir(), "database-url")
		if err := os.WriteFile(path, []byte(u+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{"PGOUTBOX_DATABASE_URL=", "PGOUTBOX_DATABASE_URL_FILE=" + path}
	}

	e := harness.Outbox{Services: harness.Services{DatabaseURL: tlsURL(pki.CAFile), Brokers: brokers}, Name: harness.UniqueName(t)}
	harness.DropSlotAtCleanup(t, e.DatabaseURL, e.Name)
	t.Cleanup(func() { harness.DeleteTopicQuietly(brokers, e.Name) })
	fileEnv := urlFile(e.DatabaseURL)
	out, err := e.PgoutboxWith(t, fileEnv, "setup", "--partitions", "1")
	if err != nil {
		t.Fatalf("setup over TLS: %v\n%s", err, out)
	}
	relay := e.StartRelay(t, fileEnv...)
	relay.WaitLog("streaming started", 30*time.Second)
	for i := range 5 {
		insertReturningID(t, e, fmt.Sprintf("ch-%d", i), `{"tls":true}`, "")
	}
	harness.WaitRecords(t, brokers, e.Name, 5, time.Minute)

	// Every session of the role uses TLS, the walsender included.
	var sessions, plain, walsenders int
	err = pg.Superuser(t).QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE NOT s.ssl),
		count(*) FILTER (WHERE a.backend_type = 'walsender')
		FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'pgoutbox'`).Scan(&sessions, &plain, &walsenders)
	if err != nil {
		t.Fatal(err)
	}
	if plain != 0 || walsenders == 0 {
		t.Errorf("sessions of pgoutbox: %d, %d without TLS, %d walsenders; want all with TLS, one walsender at least", sessions, plain, walsenders)
	}
	relay.Stop(30 * time.Second)
	checkNoSecret(t, out+relay.Log.String(), pgTLSPassword)

	// Another CA: the server's certificate does not verify.
	other := newTestPKI(t, t.TempDir())
	relay = e.StartRelay(t, urlFile(tlsURL(other.CAFile))...)
	if code := relay.WaitExit(time.Minute); code == 0 {
		t.Fatal("unknown CA: exit 0, want non-zero")
	}
	log := relay.Log.String()
	if last := lastLine(log); !strings.Contains(last, "certificate signed by unknown authority") {
		t.Errorf("unknown CA: the error does not say so:\n%s", last)
	}
	checkNoSecret(t, log, pgTLSPassword)
}

// serverPKI writes the certificates into the cluster's state directory, where the server (the
// postgres user, when the tests run as root) can read them; PostgreSQL wants its key owned by
// itself and readable by nobody else.
func serverPKI(t *testing.T, pg *harness.PrivatePostgres) *testPKI {
	t.Helper()
	dir := filepath.Join(pg.State, "tls")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pki := newTestPKI(t, dir)
	if os.Geteuid() != 0 {
		return pki
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root, the server runs as postgres: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, f := range []string{pki.CAFile, pki.ServerCertFile, pki.ServerKeyFile} {
		if err := os.Chown(f, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return pki
}
