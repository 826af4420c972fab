package capture

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// Source identifies the replication stream that a session reads: which database cluster,
// which WAL history, which slot. Every record carries it in the [HeaderSource] header, so that
// a later session can tell whether a record at the end of a Kafka partition came from this very
// stream (and may be trusted to say how far the partition got) or from anything else.
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
	// publication, the outbox table and its channel and topic columns (see [RoutingOf]). A
	// record written under another routing says nothing about where this one's events are.
	Routing string
	// History lists the timelines the current one descends from, oldest first, each with the
	// position where the current history left it (TIMELINE_HISTORY). Empty on timeline 1.
	History []TimelineSwitch
	// WALEnd is the server's WAL flush position when the session started (IDENTIFY_SYSTEM
	// xlogpos): no commit of this history that a session streamed before lies beyond it.
	WALEnd pglogrepl.LSN
}

// TimelineSwitch is one line of a timeline history file: WAL of Timeline before End belongs to
// the current history; at End the history went on on the next timeline.
type TimelineSwitch struct {
	Timeline int32
	End      pglogrepl.LSN
}

// Header returns the value of the [HeaderSource] header:
// "<system id>/<timeline>/<slot>/<routing>", e.g. "7401286427335794708/1/pgoutbox/5f3a09c2".
// Slot names hold only a-z, 0-9 and '_', so '/' separates.
func (s Source) Header() string {
	return s.SystemID + "/" + strconv.FormatInt(int64(s.Timeline), 10) + "/" + s.Slot + "/" + s.Routing
}

// RoutingOf returns the routing fingerprint of a stream of publication's rows of table t: eight
// hex digits of FNV-1a over the publication, the table's name and its channel and topic columns.
// The other columns change what a record holds, not which records exist or their partition.
func RoutingOf(publication string, t Table) string {
	h := fnv.New32a()
	for _, f := range []string{publication, t.Schema, t.Name, t.Channel, t.Topic} {
		_, _ = h.Write([]byte(f))
		_, _ = h.Write([]byte{0})
	}
	return fmt.Sprintf("%08x", h.Sum32())
}

// identify reads the stream's source over the replication connection.
func identify(ctx context.Context, conn *pgconn.PgConn, slot, routing string) (Source, error) {
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return Source{}, fmt.Errorf("%w: IDENTIFY_SYSTEM: %w", ErrConnection, err)
	}
	src := Source{SystemID: sys.SystemID, Timeline: sys.Timeline, Slot: slot, Routing: routing, WALEnd: sys.XLogPos}
	if sys.Timeline <= 1 {
		return src, nil // timeline 1 has no history file
	}
	h, err := pglogrepl.TimelineHistory(ctx, conn, sys.Timeline)
	if err != nil {
		return Source{}, fmt.Errorf("%w: TIMELINE_HISTORY %d: %w", ErrConnection, sys.Timeline, err)
	}
	if src.History, err = ParseTimelineHistory(h.Content); err != nil {
		return Source{}, fmt.Errorf("%w: TIMELINE_HISTORY %d: %w", ErrProtocol, sys.Timeline, err)
	}
	return src, nil
}

// ParseTimelineHistory parses a timeline history file: one line per ancestor timeline,
// "<timeline>\t<switch position>\t<reason>", and comment lines starting with '#'.
func ParseTimelineHistory(content []byte) ([]TimelineSwitch, error) {
	var out []TimelineSwitch
	sc := bufio.NewScanner(bytes.NewReader(content))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("timeline history line %d %q: want timeline and switch position", n, line)
		}
		tli, err := strconv.ParseInt(f[0], 10, 32)
		if err != nil || tli < 1 {
			return nil, fmt.Errorf("timeline history line %d: timeline %q is not a positive number", n, f[0])
		}
		end, err := pglogrepl.ParseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("timeline history line %d: %w", n, err)
		}
		out = append(out, TimelineSwitch{Timeline: int32(tli), End: end})
	}
	return out, sc.Err()
}
