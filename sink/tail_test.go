package sink

import (
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/record"
)

// ourSource is the stream of the tail tests: timeline 3, forked from 2 at 0/5000000 and from
// 1 at 0/3000000.
var ourSource = record.Source{
	SystemID: "7401286427335794708", Timeline: 3, Slot: "pgoutbox", Routing: "5f3a09c2",
	History: []record.TimelineSwitch{{Timeline: 1, End: 0x3000000}, {Timeline: 2, End: 0x5000000}},
	WALEnd:  0x9000000,
}

// rec is a record of stream "<system>/<timeline>/<slot>/<routing>" at commit LSN lsn.
func rec(offset int64, source string, lsn uint64) tailRecord {
	return tailRecord{offset: offset, source: source, position: pos(lsn, 0), partitions: "3"}
}

func pos(lsn uint64, index int) string {
	const digits = "0123456789ABCDEF"
	b := make([]byte, 0, 25)
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[lsn>>uint(shift)&0xF])
	}
	b = append(b, '-')
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, digits[uint64(index)>>uint(shift)&0xF])
	}
	return string(b)
}

const (
	tl3   = "7401286427335794708/3/pgoutbox/5f3a09c2"
	tl2   = "7401286427335794708/2/pgoutbox/5f3a09c2"
	tl1   = "7401286427335794708/1/pgoutbox/5f3a09c2"
	tl4   = "7401286427335794708/4/pgoutbox/5f3a09c2"
	other = "7401286427335794708/3/billing/5f3a09c2"
)

func TestJudgeTail(t *testing.T) {
	t.Parallel()
	noHeaders := tailRecord{offset: 9}
	deadLetter := rec(9, tl3, 0x8FFFFFF)
	deadLetter.deadLetter = true
	noSource := tailRecord{offset: 9, position: pos(0x100, 0), partitions: "3"}
	otherRouting := rec(9, "7401286427335794708/3/pgoutbox/00000000", 0x8000000)
	sixPartitions := rec(9, tl3, 0x100)
	sixPartitions.partitions = "6"
	barrier := tailRecord{offset: 10, control: true}
	tests := []struct {
		name     string
		read     tailRead
		upTo     string // want
		distrust string // a part of the wanted reason; "" = trusted
	}{
		{name: "empty partition", read: tailRead{}},
		{name: "emptied by retention", read: tailRead{logStart: 40, end: 40}},
		{name: "no readable record", read: tailRead{logStart: 0, end: 2}, distrust: "no readable record"},
		{name: "ours, this timeline", read: tailRead{end: 10, records: []tailRecord{rec(8, tl3, 0x7000000), rec(9, tl3, 0x8000000)}}, upTo: pos(0x8000000, 0)},
		{name: "ours, at the server's WAL end", read: tailRead{end: 1, records: []tailRecord{rec(0, tl3, 0x9000000)}}, upTo: pos(0x9000000, 0)},
		{name: "beyond the server's WAL", read: tailRead{end: 1, records: []tailRecord{rec(0, tl3, 0x9000001)}}, distrust: "beyond the server's WAL position 0/9000000"},
		{name: "ancestor timeline before its fork", read: tailRead{end: 1, records: []tailRecord{rec(0, tl2, 0x4FFFFFF)}}, upTo: pos(0x4FFFFFF, 0)},
		{name: "oldest ancestor before its fork", read: tailRead{end: 1, records: []tailRecord{rec(0, tl1, 0x2000000)}}, upTo: pos(0x2000000, 0)},
		{name: "ancestor timeline after its fork", read: tailRead{end: 1, records: []tailRecord{rec(0, tl2, 0x5000000)}}, distrust: "after position 0/5000000"},
		{name: "timeline not descended from", read: tailRead{end: 1, records: []tailRecord{rec(0, tl4, 0x100)}}, distrust: "does not descend from"},
		{name: "another slot's records stepped over", read: tailRead{end: 10, records: []tailRecord{rec(7, tl3, 0x6000000), rec(8, other, 0x8000000), rec(9, other, 0x8000100)}}, upTo: pos(0x6000000, 0)},
		{name: "another slot only: two relays write the topic", read: tailRead{end: 10, records: []tailRecord{rec(9, other, 0x100)}}, distrust: "1 from another stream (" + other + ")"},
		{name: "another routing is another stream", read: tailRead{end: 10, records: []tailRecord{otherRouting}}, distrust: "from another stream"},
		{name: "another system is another stream", read: tailRead{end: 10, records: []tailRecord{rec(9, "1234/3/pgoutbox/5f3a09c2", 0x100)}}, distrust: "from another stream"},
		{name: "records without our headers stepped over", read: tailRead{end: 10, records: []tailRecord{rec(8, tl3, 0x100), noHeaders}}, upTo: pos(0x100, 0)},
		{name: "only records without our headers", read: tailRead{end: 10, records: []tailRecord{noHeaders}}, distrust: "1 without a valid pgoutbox-position"},
		{name: "malformed position", read: tailRead{end: 10, records: []tailRecord{{offset: 9, position: "0000000000000100-0000000a", source: tl3, partitions: "3"}}}, distrust: "without a valid pgoutbox-position"},
		{name: "no source header", read: tailRead{end: 10, records: []tailRecord{noSource}}, distrust: "without a pgoutbox-source"},
		{name: "dead-letter copies stepped over", read: tailRead{end: 10, records: []tailRecord{rec(8, tl3, 0x100), deadLetter}}, upTo: pos(0x100, 0)},
		{name: "barrier stepped over", read: tailRead{end: 11, records: []tailRecord{rec(9, tl3, 0x100), barrier}}, upTo: pos(0x100, 0)},
		{name: "barriers alone since the log's start", read: tailRead{logStart: 10, end: 11, records: []tailRecord{barrier}}},
		{name: "barriers alone, older records beyond the window", read: tailRead{logStart: 0, end: 11, records: []tailRecord{barrier}}, distrust: "1 control records"},
		{name: "partition count changed", read: tailRead{end: 10, records: []tailRecord{sixPartitions}}, distrust: `partitioned for "6" partitions, the topic has 3`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := judgeTail(ourSource, uint64(ourSource.WALEnd), 3, tc.read)
			if v.upTo != tc.upTo {
				t.Errorf("upTo = %q, want %q (distrust %q)", v.upTo, tc.upTo, v.distrust)
			}
			switch {
			case tc.distrust == "" && v.distrust != "":
				t.Errorf("distrust = %q, want trusted", v.distrust)
			case tc.distrust != "" && !strings.Contains(v.distrust, tc.distrust):
				t.Errorf("distrust = %q, want it to contain %q", v.distrust, tc.distrust)
			case tc.distrust != "" && v.upTo != "":
				t.Errorf("distrusted, but upTo = %q", v.upTo)
			}
		})
	}
}
