package sink

import (
	"strconv"
	"strings"
)

// Headers that the sink reads to find how far a partition got (see Publisher.BeginSession).
// The capture package writes the first two on every record; the sink adds the third.
const (
	// HeaderPosition holds the record's commit position, "%016X-%08X" of the commit LSN and
	// the row's index in its transaction: positions sort as strings in commit order.
	HeaderPosition = "pgoutbox-position"
	// HeaderSource names the stream the record comes from:
	// "<system id>/<timeline>/<slot>/<routing>".
	HeaderSource = "pgoutbox-source"
	// HeaderPartitions holds, in decimal, the topic's partition count that the record's key was
	// partitioned with. A tail written with another count says nothing about the keys that now
	// map to its partition.
	HeaderPartitions = "pgoutbox-partitions"
)

// Source identifies the replication stream of a session (see capture.Source, which gives these
// values). The zero Source turns tail reads off: every message is sent (at-least-once).
type Source struct {
	// SystemID is the PostgreSQL cluster's system identifier (IDENTIFY_SYSTEM).
	SystemID string
	// Timeline is the server's current timeline (IDENTIFY_SYSTEM).
	Timeline int32
	// Slot is the replication slot's name.
	Slot string
	// Routing fingerprints the publication, table and channel/topic columns (capture.RoutingOf).
	Routing string
	// History lists the timelines the current one descends from, each with the WAL position at
	// which the current history left it (TIMELINE_HISTORY).
	History []TimelineSwitch
	// WALEnd is the server's WAL flush position when the session started (IDENTIFY_SYSTEM
	// xlogpos), as a number: no record streamed before this session lies beyond it.
	WALEnd uint64
}

// TimelineSwitch is one ancestor timeline: its WAL before End belongs to the current history.
type TimelineSwitch struct {
	Timeline int32
	End      uint64
}

func (s Source) enabled() bool { return s.SystemID != "" && s.Slot != "" }

// recordSource is a parsed HeaderSource value.
type recordSource struct {
	systemID string
	timeline int32
	slot     string
	routing  string
}

// parseSource parses "<system id>/<timeline>/<slot>/<routing>".
func parseSource(v string) (recordSource, bool) {
	parts := strings.Split(v, "/")
	if len(parts) != 4 || parts[0] == "" || parts[2] == "" {
		return recordSource{}, false
	}
	tl, err := strconv.ParseInt(parts[1], 10, 32)
	if err != nil || tl < 1 {
		return recordSource{}, false
	}
	return recordSource{systemID: parts[0], timeline: int32(tl), slot: parts[2], routing: parts[3]}, true
}

// positionLSN returns the commit LSN of a HeaderPosition value, and whether it is well formed.
func positionLSN(pos string) (uint64, bool) {
	// Strict: upper-case hex of fixed width, or string order would not be commit order.
	if len(pos) != 25 || pos[16] != '-' {
		return 0, false
	}
	for i := 0; i < len(pos); i++ {
		if c := pos[i]; i != 16 && (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return 0, false
		}
	}
	lsn, err := strconv.ParseUint(pos[:16], 16, 64)
	return lsn, err == nil
}

// formatLSN writes an LSN the way PostgreSQL does: 16/B374D848.
func formatLSN(lsn uint64) string {
	return strings.ToUpper(strconv.FormatUint(lsn>>32, 16) + "/" + strconv.FormatUint(lsn&0xFFFFFFFF, 16))
}

// headerOf returns the value of the first header named key, and whether there is one.
func headerOf(hs []Header, key string) (string, bool) {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}
