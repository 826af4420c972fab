package capture

import (
	"context"
	"errors"
	"fmt"
)

// FailoverMinVersion is the first server_version_num with failover slots (PostgreSQL 17): a
// logical slot created with failover => true is synchronized to physical standbys that run
// with sync_replication_slots = on, so that a relay can continue from it after a promotion.
const FailoverMinVersion = 170000

// ErrFailover means a failover slot was asked for where the server cannot give one.
var ErrFailover = errors.New("failover slot")

// CreateFailoverSlotSQL returns the statement that creates the logical replication slot as a
// failover slot (PostgreSQL 17+): pg_create_logical_replication_slot(name, plugin, temporary,
// twophase, failover).
func CreateFailoverSlotSQL(slot string) string {
	return fmt.Sprintf("SELECT pg_create_logical_replication_slot(%s, '%s', false, false, true)", literal(slot), outputPlugin)
}

// CheckFailoverSupport returns an error wrapping [ErrFailover] when the server is older than
// PostgreSQL 17, which has no failover slots.
func CheckFailoverSupport(si ServerInfo) error {
	if si.VersionNum < FailoverMinVersion {
		return fmt.Errorf("%w: the server is PostgreSQL %d.%d; failover slots need PostgreSQL 17 or later: "+
			"drop --failover, or upgrade the server", ErrFailover, si.VersionNum/10000, si.VersionNum%10000)
	}
	return nil
}

// EnsureFailoverSlot is [EnsureSlot] for a failover slot: it refuses before PostgreSQL 17,
// creates the slot with failover => true when it does not exist, and refuses an existing slot
// that is not a failover slot (it would not follow a promotion), saying how to change it.
func EnsureFailoverSlot(ctx context.Context, q Querier, si ServerInfo, slot string) (created bool, err error) {
	if err := CheckFailoverSupport(si); err != nil {
		return false, err
	}
	_, err = CheckSlot(ctx, q, slot)
	switch {
	case errors.Is(err, ErrNoSlot):
		if _, err := q.Exec(ctx, CreateFailoverSlotSQL(slot)); err != nil {
			return false, fmt.Errorf("create failover replication slot %q: %w", slot, err)
		}
		return true, nil
	case err != nil:
		return false, err
	}
	var failover bool
	if err := q.QueryRow(ctx, `SELECT failover FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&failover); err != nil {
		return false, fmt.Errorf("read failover of replication slot %q: %w", slot, err)
	}
	if !failover {
		return false, fmt.Errorf("%w: replication slot %q exists but is not a failover slot, so a standby does not keep it: "+
			"with the relay stopped, run ALTER_REPLICATION_SLOT %s (FAILOVER true) on a replication connection "+
			"(psql \"dbname=... replication=database\"), or drop it (%s) and run `pgoutbox setup --failover`",
			ErrFailover, slot, quote(slot), DropSlotSQL(slot))
	}
	return false, nil
}
