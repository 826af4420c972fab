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

	"github.com/pgoutbox/pgoutbox/record"
)

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
func identify(ctx context.Context, conn *pgconn.PgConn, slot, routing string) (record.Source, error) {
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return record.Source{}, fmt.Errorf("%w: IDENTIFY_SYSTEM: %w", ErrConnection, err)
	}
	src := record.Source{SystemID: sys.SystemID, Timeline: sys.Timeline, Slot: slot, Routing: routing, WALEnd: record.LSN(sys.XLogPos)}
	if sys.Timeline <= 1 {
		return src, nil // timeline 1 has no history file
	}
	h, err := pglogrepl.TimelineHistory(ctx, conn, sys.Timeline)
	if err != nil {
		return record.Source{}, fmt.Errorf("%w: TIMELINE_HISTORY %d: %w", ErrConnection, sys.Timeline, err)
	}
	if src.History, err = ParseTimelineHistory(h.Content); err != nil {
		return record.Source{}, fmt.Errorf("%w: TIMELINE_HISTORY %d: %w", ErrProtocol, sys.Timeline, err)
	}
	return src, nil
}

// ParseTimelineHistory parses a timeline history file: one line per ancestor timeline,
// "<timeline>\t<switch position>\t<reason>", and comment lines starting with '#'.
func ParseTimelineHistory(content []byte) ([]record.TimelineSwitch, error) {
	var out []record.TimelineSwitch
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
		out = append(out, record.TimelineSwitch{Timeline: int32(tli), End: record.LSN(end)})
	}
	return out, sc.Err()
}
