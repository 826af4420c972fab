package capture

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ClassifyConnectError turns a connection failure into an error that names the cause and the fix.
func ClassifyConnectError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01":
			return fmt.Errorf("connect to PostgreSQL: password authentication failed for user %q: check the user and password in --database-url: %w",
				pgErrField(pgErr.Message, `user "`), err)
		case "28000":
			if strings.Contains(pgErr.Message, "replication") {
				return fmt.Errorf("%w: connect to PostgreSQL: the role may not open a replication connection: ALTER ROLE ... REPLICATION, and allow it in pg_hba.conf: %w",
					ErrNotReplicationRole, err)
			}
			return fmt.Errorf("connect to PostgreSQL: access denied (pg_hba.conf or role): %w", err)
		case "3D000":
			return fmt.Errorf("connect to PostgreSQL: the database does not exist: check --database-url: %w", err)
		case "57P03", "57P01", "57P02":
			// Starting up, recovering after a crash, or shutting down: a retry will get through.
			return fmt.Errorf("%w: connect to PostgreSQL: the server is starting up, recovering or shutting down: %w", ErrConnection, err)
		case "53300":
			return fmt.Errorf("%w: connect to PostgreSQL: too many connections (max_wal_senders or max_connections reached): %w", ErrConnection, err)
		}
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return fmt.Errorf("%w: connect to PostgreSQL: %w; check the host and port in --database-url and that PostgreSQL is running", ErrConnection, err)
}

func pgErrField(msg, after string) string {
	_, rest, ok := strings.Cut(msg, after)
	if !ok {
		return "?"
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// classifyStreamError maps errors of START_REPLICATION and of the stream to our sentinels.
func classifyStreamError(err error, cfg StreamConfig) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("%w: %w", ErrConnection, err)
	}
	switch {
	case pgErr.Code == "55006": // object_in_use: "replication slot ... is active for PID n"
		return errSlotInUse(cfg.Slot, activePID(pgErr.Message))
	case pgErr.Code == "42704" && strings.Contains(pgErr.Message, "publication"):
		// pgoutput looks publications up as of the WAL it decodes: once a running relay's
		// publication was dropped, re-creating it does not help this slot past the drop.
		return fmt.Errorf("%w: publication %q does not exist as of the WAL being decoded: if it was dropped while pgoutbox ran, "+
			"this slot can never decode past the drop, even once it is re-created: re-create the publication and the slot "+
			"(`pgoutbox drop-slot --yes`, then `pgoutbox setup`) and re-publish the outbox rows committed since the drop; "+
			"on a first start, `pgoutbox setup` creates it: %w", ErrNoPublication, cfg.Publication, err)
	case pgErr.Code == "42704":
		return fmt.Errorf("%w: %w", errSlotMissing(cfg.Slot), err)
	case pgErr.Code == "58P01" || slotInvalidated(pgErr):
		detail := pgErr.Message
		if pgErr.Detail != "" {
			detail += ": " + pgErr.Detail
		}
		return errSlotInvalidated(cfg.Slot, detail, 0)
	case pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03" || pgErr.Code == "08006":
		return fmt.Errorf("%w: %w", ErrConnection, err) // admin shutdown, crash, starting up
	}
	return fmt.Errorf("replication: %w", err)
}

// activePID reads n from the server's "replication slot ... is active for PID n"; 0 when the
// message has another form (another lc_messages).
func activePID(msg string) int32 {
	_, rest, ok := strings.Cut(msg, "PID ")
	if !ok {
		return 0
	}
	pid, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 32)
	if err != nil {
		return 0
	}
	return int32(pid)
}

// slotInvalidated recognizes the server's refusal to stream an invalidated slot, worded
// differently by version: "can no longer get changes from" and "cannot read from logical
// replication slot" (13 to 17), "can no longer access replication slot" (18); the detail says
// "invalidated" in all of them.
func slotInvalidated(e *pgconn.PgError) bool {
	for _, s := range []string{"invalidated", "can no longer get changes", "cannot read from logical replication slot", "can no longer access replication slot"} {
		if strings.Contains(e.Message, s) || strings.Contains(e.Detail, s) {
			return true
		}
	}
	return false
}

// ServerShuttingDown reports whether err says the server is shutting down: our session was
// ended by a shutdown (57P01 admin_shutdown) or a new one is refused because of it (57P03
// "the database system is shutting down"). A walsender then waits, before it exits, until its
// client has confirmed everything it sent.
func ServerShuttingDown(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == "57P01" || pgErr.Code == "57P03" && strings.Contains(pgErr.Message, "shutting down")
}
