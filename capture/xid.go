package capture

import (
	"context"
	"fmt"
	"strconv"
)

// WidenXID returns the full 64-bit transaction id (xid8, the numbering of pg_current_xact_id()
// and pg_current_snapshot()) whose low 32 bits are xid, the 32-bit id that pgoutput's Begin
// message carries. ref is a full id known to be near it: the server's next full id read when
// the session started, kept current with the ids widened since.
//
// PostgreSQL keeps every transaction id in use within 2^31 of the next id to be assigned (it
// stops assigning ids before that, to prevent wraparound), so the answer is the full id with
// those low bits closest to ref: above or below it, in ref's epoch or the one next to it. A
// reference of 0 gives xid itself (epoch 0), the value before an epoch is known; no full id is
// below 0, so an xid that would fall in epoch -1 stays in epoch 0.
func WidenXID(xid uint32, ref uint64) uint64 {
	delta := int64(int32(xid - uint32(ref))) // from ref to xid, the short way round
	full := int64(ref) + delta
	if delta < 0 && uint64(-delta) > ref {
		return uint64(xid)
	}
	return uint64(full)
}

// xidReferenceSQL reads the server's next full transaction id without assigning one:
// pg_current_xact_id() would assign this session an id (and write a commit record), which
// pg_snapshot_xmax of the current snapshot does not. The replication connection accepts
// simple SQL queries.
const xidReferenceSQL = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text"

// readXIDReference reads the server's next full transaction id through the replication
// connection, and hands it to the decoder, which widens each Begin's xid against it.
func (s *Stream) readXIDReference(ctx context.Context) error {
	res, err := s.conn.Exec(ctx, xidReferenceSQL).ReadAll()
	if err != nil {
		return fmt.Errorf("%w: read the server's transaction id epoch (%s): %w", ErrConnection, xidReferenceSQL, err)
	}
	if len(res) == 0 || len(res[0].Rows) == 0 || len(res[0].Rows[0]) == 0 {
		return fmt.Errorf("%w: read the server's transaction id epoch: %s returned no row", ErrProtocol, xidReferenceSQL)
	}
	ref, err := strconv.ParseUint(string(res[0].Rows[0][0]), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: read the server's transaction id epoch: %w", ErrProtocol, err)
	}
	s.dec.SetXIDReference(ref)
	s.log.Debug().Uint64("next_full_xid", ref).Msg("transaction id reference read")
	return nil
}
