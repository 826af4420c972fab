package record

import (
	"strconv"
	"strings"
)

// Source identifies the replication stream that a session reads: which database cluster,
// which WAL history, which slot. Every record carries it in the [HeaderSource] header, so that
// a later session can tell whether a record at the end of a Kafka partition came from this very
// stream (and may be trusted to say how far the partition got) or from anything else. The zero
// Source is "unknown": the sink then sends every message (at-least-once).
type Source struct {
	// SystemID is the cluster's system identifier (IDENTIFY_SYSTEM): set by initdb, kept by
	// physical replicas and backups, different for any other cluster.
	SystemID string
	// Timeline is the server's current timeline (IDENTIFY_SYSTEM). A promotion or a
	// point-in-time recovery starts a new one, on which WAL positions after the fork are reused
	// for other transactions.
	Timeline int32
	// Slot is the replication slot's name (unique in a cluster).
	Slot string
	// Routing fingerprints what decides which rows become events and where they go: the
	// publication, the outbox table and its channel and topic columns (capture.RoutingOf). A
	// record written under another routing says nothing about where this one's events are.
	Routing string
	// History lists the timelines the current one descends from, oldest first, each with the
	// position where the current history left it (TIMELINE_HISTORY). Empty on timeline 1.
	// Not part of the header.
	History []TimelineSwitch
	// WALEnd is the server's WAL flush position when the session started (IDENTIFY_SYSTEM
	// xlogpos): no commit of this history that a session streamed before lies beyond it.
	// Not part of the header.
	WALEnd LSN
}

// TimelineSwitch is one line of a timeline history file: WAL of Timeline before End belongs to
// the current history; at End the history went on on the next timeline.
type TimelineSwitch struct {
	Timeline int32
	End      LSN
}

// Known reports whether s names a stream (a system and a slot): only then can a record's
// source header be compared with it.
func (s Source) Known() bool { return s.SystemID != "" && s.Slot != "" }

// Header returns the value of the [HeaderSource] header:
// "<system id>/<timeline>/<slot>/<routing>", e.g. "7401286427335794708/1/pgoutbox/5f3a09c2".
// Slot names hold only a-z, 0-9 and '_', so '/' separates.
func (s Source) Header() string {
	return s.SystemID + "/" + strconv.FormatInt(int64(s.Timeline), 10) + "/" + s.Slot + "/" + s.Routing
}

// ParseSource reads a [HeaderSource] value. The result has no History and no WALEnd (the
// header does not carry them); ok is false unless v is "<system id>/<timeline>/<slot>/<routing>"
// with a system id, a slot and a positive timeline.
func ParseSource(v string) (s Source, ok bool) {
	parts := strings.Split(v, "/")
	if len(parts) != 4 || parts[0] == "" || parts[2] == "" {
		return Source{}, false
	}
	tl, err := strconv.ParseInt(parts[1], 10, 32)
	if err != nil || tl < 1 {
		return Source{}, false
	}
	return Source{SystemID: parts[0], Timeline: int32(tl), Slot: parts[2], Routing: parts[3]}, true
}
