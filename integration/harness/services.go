package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/segmentio/kafka-go"
)

const (
	defaultDatabaseURL = "postgres://pgoutbox:pgoutbox@127.0.0.1:55432/pgoutbox"
	defaultBrokers     = "127.0.0.1:59092"
)

// Services are the real PostgreSQL and Kafka a test talks to.
type Services struct {
	DatabaseURL string
	Brokers     []string
}

// Getenv is os.Getenv with a default for an unset or empty variable.
func Getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// InCI reports whether a missing service must fail the run rather than skip it.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable fails the test under CI and skips it otherwise, with the same message.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI=true: a missing service is a failure, not a skip)", msg)
	}
	t.Skipf("%s; skipping (set CI=true to make this a failure)", msg)
}

// ErrUnavailable marks a service that does not answer (as opposed to one that answers but is
// set up wrong): a test skips on it when run by hand, and fails under CI=true.
var ErrUnavailable = errors.New("service unavailable")

// CheckPostgres connects to url and checks wal_level=logical. An unreachable server's error
// wraps ErrUnavailable and says how to start one.
func CheckPostgres(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("%w: PostgreSQL is not reachable at %s: %w; start it with `make up`", ErrUnavailable, capture.RedactURL(url), err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var level string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if level != "logical" {
		return fmt.Errorf("PostgreSQL at %s has wal_level=%s; pgoutbox needs wal_level=logical (`make up` configures it)", capture.RedactURL(url), level)
	}
	return nil
}

// CheckKafka checks that a broker of brokers answers a metadata request; when none does, the
// error wraps ErrUnavailable and says how to start one.
func CheckKafka(ctx context.Context, brokers []string) error {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	if _, err := client.Metadata(ctx, &kafka.MetadataRequest{}); err != nil {
		return fmt.Errorf("%w: Kafka is not reachable at %s: %w; start it with `make up`", ErrUnavailable, strings.Join(brokers, ","), err)
	}
	return nil
}

// need turns a Check* error into the test's verdict: a skip (a failure under CI=true) for a
// service that does not answer, a failure for one set up wrong.
func need(t testing.TB, err error) {
	t.Helper()
	switch {
	case errors.Is(err, ErrUnavailable):
		Unavailable(t, "%s", strings.TrimPrefix(err.Error(), ErrUnavailable.Error()+": "))
	case err != nil:
		t.Fatal(err)
	}
}

// NeedPostgres returns the database URL (PGOUTBOX_TEST_DATABASE_URL) after checking that
// PostgreSQL answers, with wal_level=logical.
func NeedPostgres(t testing.TB) string {
	t.Helper()
	url := Getenv("PGOUTBOX_TEST_DATABASE_URL", defaultDatabaseURL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	need(t, CheckPostgres(ctx, url))
	return url
}

// NeedKafka returns the broker list (PGOUTBOX_TEST_KAFKA_BROKERS) after checking that a Kafka
// broker answers a metadata request.
func NeedKafka(t testing.TB) []string {
	t.Helper()
	brokers := strings.Split(Getenv("PGOUTBOX_TEST_KAFKA_BROKERS", defaultBrokers), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	need(t, CheckKafka(ctx, brokers))
	return brokers
}

// NeedServices checks both services.
func NeedServices(t testing.TB) Services {
	t.Helper()
	return Services{DatabaseURL: NeedPostgres(t), Brokers: NeedKafka(t)}
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// UniqueName derives a PostgreSQL- and Kafka-safe name from the test's name: it_<test>_<random>.
// The it_ prefix lets `make test` find slots a test forgot to drop.
func UniqueName(t testing.TB) string {
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

// ListenPort returns a TCP port on loopback that was free a moment ago.
func ListenPort() (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreePort is ListenPort for a test.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := ListenPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
