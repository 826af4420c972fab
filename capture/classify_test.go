package capture

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestClassifyConnectError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		is   error    // nil: a class of its own (not retried)
		says []string // in the message
	}{
		{"wrong password", &pgconn.PgError{Code: "28P01", Message: `password authentication failed for user "relay"`},
			nil, []string{`user "relay"`, "--database-url"}},
		{"no replication in pg_hba", &pgconn.PgError{Code: "28000", Message: `no pg_hba.conf entry for replication connection from host "10.0.0.1"`},
			ErrNotReplicationRole, []string{"REPLICATION", "pg_hba.conf"}},
		{"access denied", &pgconn.PgError{Code: "28000", Message: `no pg_hba.conf entry for host "10.0.0.1"`},
			nil, []string{"access denied"}},
		{"no database", &pgconn.PgError{Code: "3D000", Message: `database "nope" does not exist`},
			nil, []string{"database does not exist", "--database-url"}},
		{"starting up", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"},
			ErrConnection, []string{"starting up"}},
		{"too many connections", &pgconn.PgError{Code: "53300", Message: "sorry, too many clients already"},
			ErrConnection, []string{"max_wal_senders"}},
		{"other server error", &pgconn.PgError{Code: "XX000", Message: "internal"},
			nil, []string{"connect to PostgreSQL"}},
		{"no server", fmt.Errorf("dial: %w", errors.New("connection refused")),
			ErrConnection, []string{"host and port", "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ClassifyConnectError(tt.err)
			if !errors.Is(got, tt.err) {
				t.Errorf("%v does not wrap the cause", got)
			}
			for _, class := range []error{ErrConnection, ErrNotReplicationRole} {
				if want := errors.Is(class, tt.is); errors.Is(got, class) != want {
					t.Errorf("errors.Is(%v, %v) = %v", got, class, !want)
				}
			}
			for _, w := range tt.says {
				if !strings.Contains(got.Error(), w) {
					t.Errorf("%v\ndoes not say %q", got, w)
				}
			}
		})
	}
}

func TestClassifyStreamError(t *testing.T) {
	t.Parallel()
	cfg := StreamConfig{Slot: "pgoutbox", Publication: "pgoutbox_pub"}
	tests := []struct {
		name string
		err  error
		is   error
		says []string
	}{
		{"slot in use", &pgconn.PgError{Code: "55006", Message: `replication slot "pgoutbox" is active for PID 4711`},
			ErrSlotInUse, []string{"process 4711", "waiting"}},
		{"slot in use, other wording", &pgconn.PgError{Code: "55006", Message: `Replikationsslot »pgoutbox« ist aktiv`},
			ErrSlotInUse, []string{"another process"}},
		{"no publication", &pgconn.PgError{Code: "42704", Message: `publication "pgoutbox_pub" does not exist`},
			ErrNoPublication, []string{`"pgoutbox_pub"`, "pgoutbox setup"}},
		{"no slot", &pgconn.PgError{Code: "42704", Message: `replication slot "pgoutbox" does not exist`},
			ErrNoSlot, []string{"does not exist", "pgoutbox setup"}},
		{"WAL removed", &pgconn.PgError{Code: "58P01", Message: "requested WAL segment 000000010000000000000003 has already been removed"},
			ErrSlotLost, []string{"invalidated", "may be missing", "pgoutbox recover --apply"}},
		{"invalidated, PostgreSQL 15", &pgconn.PgError{Code: "55000", Message: `can no longer get changes from replication slot "pgoutbox"`,
			Detail: "This slot has been invalidated because it exceeded the maximum reserved size."},
			ErrSlotLost, []string{"maximum reserved size", "may be missing"}},
		{"invalidated, PostgreSQL 16", &pgconn.PgError{Code: "55000", Message: `cannot read from logical replication slot "pgoutbox"`,
			Detail: "This slot has been invalidated because it was conflicting with recovery."},
			ErrSlotLost, []string{"conflicting with recovery"}},
		{"invalidated, PostgreSQL 18", &pgconn.PgError{Code: "55000", Message: `can no longer access replication slot "pgoutbox"`,
			Detail: `This replication slot has been invalidated due to "wal_removed".`},
			ErrSlotLost, []string{`"wal_removed"`, "pgoutbox recover"}},
		{"admin shutdown", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"},
			ErrConnection, nil},
		{"connection failure", &pgconn.PgError{Code: "08006", Message: "connection failure"}, ErrConnection, nil},
		{"not a server error", errors.New("unexpected EOF"), ErrConnection, []string{"unexpected EOF"}},
		{"other server error", &pgconn.PgError{Code: "XX000", Message: "internal"}, nil, []string{"replication", "internal"}},
	}
	classes := []error{ErrSlotInUse, ErrNoPublication, ErrNoSlot, ErrSlotLost, ErrConnection}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := classifyStreamError(tt.err, cfg)
			for _, class := range classes {
				if want := errors.Is(class, tt.is); errors.Is(got, class) != want {
					t.Errorf("errors.Is(%v, %v) = %v", got, class, !want)
				}
			}
			for _, w := range tt.says {
				if !strings.Contains(got.Error(), w) {
					t.Errorf("%v\ndoes not say %q", got, w)
				}
			}
		})
	}
}
