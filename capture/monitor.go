package capture

import (
	"context"
	"errors"
	"fmt"
)

// ReadSlotStatus reads our slot's figures from pg_replication_slots over a normal connection.
// A missing slot is not an error: Exists is false.
func ReadSlotStatus(ctx context.Context, q Querier, slot string) (SlotStatus, error) {
	var s SlotStatus
	var keep string
	var walStatus *string
	var pid *int32
	var unconfirmed, retained, safe *int64
	var confirmed *string
	err := q.QueryRow(ctx, `SELECT current_setting('max_slot_wal_keep_size'), pg_current_wal_lsn()::text,
			s.wal_status, s.active, s.active_pid,
			(pg_current_wal_lsn() - s.confirmed_flush_lsn)::bigint,
			(pg_current_wal_lsn() - s.restart_lsn)::bigint,
			s.safe_wal_size, s.confirmed_flush_lsn::text
		FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1`, slot).
		Scan(&keep, &s.CurrentLSN, &walStatus, &nullBool{&s.Active, &s.Exists}, &pid, &unconfirmed, &retained, &safe, &confirmed)
	if err != nil {
		return s, fmt.Errorf("read slot %q status: %w", slot, err)
	}
	if s.MaxSlotWALKeepSize, err = parseSize(keep); err != nil {
		return s, err
	}
	s.WALStatus, s.ConfirmedFlushLSN = deref(walStatus), deref(confirmed)
	if pid != nil {
		s.ActivePID = *pid
	}
	s.UnconfirmedBytes, s.RetainedBytes, s.SafeWALBytes = derefInt(unconfirmed, 0), derefInt(retained, 0), derefInt(safe, -1)
	return s, nil
}

// nullBool scans a nullable boolean, recording whether it was NULL (no slot row).
type nullBool struct {
	v       *bool
	present *bool
}

func (n *nullBool) Scan(src any) error {
	if src == nil {
		*n.present = false
		return nil
	}
	b, ok := src.(bool)
	if !ok {
		return errors.New("capture: active is not a boolean")
	}
	*n.v, *n.present = b, true
	return nil
}

func derefInt(p *int64, def int64) int64 {
	if p == nil {
		return def
	}
	return *p
}
