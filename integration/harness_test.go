//go:build integration

package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/segmentio/kafka-go"
)

const (
	defaultDatabaseURL = "postgres://pgoutbox:pgoutbox@127.0.0.1:55432/pgoutbox"
	defaultBrokers     = "127.0.0.1:59092"
)

// services are the real PostgreSQL and Kafka a test talks to.
type services struct {
	DatabaseURL string
	Brokers     []string
}

func getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// inCI reports whether a missing service must fail the run rather than skip it.
func inCI() bool { return os.Getenv("CI") == "true" }

// unavailable fails the test under CI and skips it otherwise, with the same message.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("%s (CI=true: a missing service is a failure, not a skip)", msg)
	}
	t.Skipf("%s; skipping (set CI=true to make this a failure)", msg)
}

// needPostgres returns the database URL after checking that PostgreSQL answers.
func needPostgres(t testing.TB) string {
	t.Helper()
	url := getenv("PGOUTBOX_TEST_DATABASE_URL", defaultDatabaseURL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		unavailable(t, "PostgreSQL is not reachable at %s: %v; start it with `make up`", capture.RedactURL(url), err)
	}
	var level string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		t.Fatalf("read wal_level: %v", err)
	}
	_ = conn.Close(ctx)
	if level != "logical" {
		t.Fatalf("PostgreSQL at %s has wal_level=%s; the tests need wal_level=logical", capture.RedactURL(url), level)
	}
	return url
}

// needKafka returns the broker list after checking that a Kafka broker answers a metadata request.
func needKafka(t testing.TB) []string {
	t.Helper()
	brokers := strings.Split(getenv("PGOUTBOX_TEST_KAFKA_BROKERS", defaultBrokers), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	if _, err := client.Metadata(ctx, &kafka.MetadataRequest{}); err != nil {
		unavailable(t, "Kafka is not reachable at %s: %v; start it with `make up`", strings.Join(brokers, ","), err)
	}
	return brokers
}

// needServices checks both services.
func needServices(t testing.TB) services {
	t.Helper()
	return services{DatabaseURL: needPostgres(t), Brokers: needKafka(t)}
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// uniqueName derives a PostgreSQL- and Kafka-safe name from the test's name: it_<test>_<random>.
// The it_ prefix lets `make test` find slots a test forgot to drop.
func uniqueName(t testing.TB) string {
	t.Helper()
	base := unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(base) > 40 {
		base = base[len(base)-40:]
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "it_" + strings.Trim(base, "_") + "_" + hex.EncodeToString(b[:])
}

// connect opens a normal connection closed at the end of the test.
func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// replicationConn opens a replication=database connection closed at the end of the test.
func replicationConn(t testing.TB, url string) *pgconn.PgConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["replication"] = "database"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("replication connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// execSQL runs SQL on a fresh connection, failing the test on error.
func execSQL(t testing.TB, url string, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := execCtx(ctx, url, sql, args...); err != nil {
		t.Fatal(err)
	}
}

// execCtx runs SQL on a fresh connection.
func execCtx(ctx context.Context, url string, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("exec %q: %w", sql, err)
	}
	return nil
}

// dropSlotAtCleanup drops the slot when the test ends, ending whatever session still holds it:
// a slot left behind pins WAL forever.
func dropSlotAtCleanup(t testing.TB, url, slot string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("drop slot %s: %v", slot, err)
			return
		}
		defer func() { _ = conn.Close(ctx) }()
		for {
			_, _ = conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
				WHERE slot_name = $1 AND active_pid IS NOT NULL`, slot)
			_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
				WHERE slot_name = $1`, slot)
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond) // the terminated walsender may still hold it for a moment
		}
		if err != nil {
			t.Errorf("drop slot %s: %v", slot, err)
		}
	})
}

// createTopic creates a topic deleted at the end of the test.
func createTopic(t testing.TB, brokers []string, topic string, partitions int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1,
	}}})
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
}

// freePort returns a TCP port on loopback that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}
