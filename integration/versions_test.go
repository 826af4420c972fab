//go:build integration

package integration

import (
	"os"
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// pgTarget is the PostgreSQL that a version-independent test runs on. The zero value is the
// default: the shared development server (PGOUTBOX_TEST_DATABASE_URL) and, for tests that change
// server settings, private clusters of postgres.sh's default version. A matrix target is one
// major version: a private cluster of that version shared by the matrix's tests that leave the
// server's settings alone, and private clusters of that version for those that change them.
type pgTarget struct {
	// version is the major version of private clusters; "" is postgres.sh's default.
	version string
	// shared is the URL of the cluster that tests of this target share; "" is the shared
	// development server.
	shared string
}

// url returns the database URL of the server that tests which do not reconfigure it share.
func (p pgTarget) url(t *testing.T) string {
	t.Helper()
	if p.shared == "" {
		return harness.NeedPostgres(t)
	}
	return p.shared
}

// services is the target's shared server with the shared Kafka broker.
func (p pgTarget) services(t *testing.T) harness.Services {
	t.Helper()
	return harness.Services{DatabaseURL: p.url(t), Brokers: harness.NeedKafka(t)}
}

// private starts a cluster of the target's version for this test alone.
func (p pgTarget) private(t *testing.T) *harness.PrivatePostgres {
	t.Helper()
	return harness.StartPrivatePostgresVersion(t, p.version)
}

// matrixVersions are the major versions of PGOUTBOX_TEST_PG_VERSIONS (space or comma separated),
// 16 17 18 when it is unset, as in `make test`; set and empty, the matrix is off.
func matrixVersions() []string {
	list, set := os.LookupEnv("PGOUTBOX_TEST_PG_VERSIONS")
	if !set {
		list = "16 17 18"
	}
	return strings.FieldsFunc(list, func(r rune) bool { return r == ' ' || r == ',' })
}

// TestPostgresVersions runs the tests that prove the relay's core promises on every major
// version of PGOUTBOX_TEST_PG_VERSIONS, each version on clusters of its own: completeness and
// order, ack gating, crashes, idle progress, the lost slot, the start-up checks, and the
// WAL-only outbox's messages mixed with rows, and the recovery of a publication stretch. They are the
// same test functions as the default run's, given another target.
func TestPostgresVersions(t *testing.T) {
	versions := matrixVersions()
	if len(versions) == 0 {
		t.Skip("PGOUTBOX_TEST_PG_VERSIONS is set and empty: the version matrix is off (unset, it runs 16 17 18)")
	}
	for _, v := range versions {
		t.Run("pg"+v, func(t *testing.T) {
			t.Parallel()
			// Started by the version's test, which outlives its parallel subtests: its cleanup
			// stops the cluster once they are all done.
			target := pgTarget{version: v, shared: harness.StartPrivatePostgresVersion(t, v).URL}
			t.Run("CompletenessAndOrder", func(t *testing.T) { t.Parallel(); testCompletenessAndOrder(t, target) })
			t.Run("AckGating", func(t *testing.T) { t.Parallel(); testAckGating(t, target) })
			t.Run("CrashMidStream", func(t *testing.T) { t.Parallel(); testCrashMidStream(t, target) })
			t.Run("IdleProgress", func(t *testing.T) { t.Parallel(); testIdleProgress(t, target) })
			t.Run("SlotLost", func(t *testing.T) { t.Parallel(); testSlotLost(t, target, lostCases[0]) })
			t.Run("StartupChecks", func(t *testing.T) { t.Parallel(); testStartupChecks(t, target) })
			t.Run("MessagesMixed", func(t *testing.T) { t.Parallel(); testMessagesCompleteness(t, target) })
			t.Run("PublicationRecover", func(t *testing.T) { t.Parallel(); testPublicationRecover(t, target, recoverCases[0]) })
		})
	}
}
