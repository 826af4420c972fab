package sink

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pgoutbox/pgoutbox/record"
)

// A partition's tail tells how far the partition got, which lets a session skip what an earlier
// one (or an attempt whose outcome was unknown) already wrote. This file holds the decision
// alone — whether the records at the end of a partition may be trusted, and up to which
// position — as pure logic over what a read returned.
//
// Why a tail can be trusted at all: a session streams the slot from its confirmed position, in
// commit order, and writes each partition's messages in that order, a request at a time, re-sent
// until acknowledged. So what one session wrote to a partition is always a prefix (possibly with
// duplicates) of that session's messages for the partition, and everything before the session's
// start position was acknowledged before the slot was confirmed past it. Hence any record of the
// same stream in the partition, at position T, proves that every message of that stream routed
// to that partition at or below T is in Kafka — whatever other writers, other sessions or
// retries interleaved. Every guard below makes sure that "the same stream" and "routed to that
// partition" really hold; whenever one cannot be proven the partition is sent at-least-once
// (a duplicate is noise; a wrong skip would be silent loss).

// tailRecord is what the decision needs of one record.
type tailRecord struct {
	offset     int64
	position   string // record.HeaderPosition; "" when absent
	source     string // record.HeaderSource; "" when absent
	partitions string // record.HeaderPartitions; "" when absent
	deadLetter bool   // a copy the sink sent to the dead-letter topic (record.IsOutOfOrder)
	control    bool   // a control record (record.IsControl): a barrier, a re-sync request
}

// tailRead is the end of one partition as read from Kafka.
type tailRead struct {
	logStart int64        // first offset still in the log
	end      int64        // high watermark: the offset the next record will get
	records  []tailRecord // the last records before end (at most tailWindow), by offset
}

// tailWindow bounds how many records a tail read steps back over (records of other producers,
// of other streams, dead-letter copies) looking for one of this stream's.
const tailWindow = 100

// verdict is the decision for one partition.
type verdict struct {
	// upTo is the position up to which this stream's messages for the partition are in Kafka;
	// "" when nothing is known to be there (send everything).
	upTo string
	// offset of the record that upTo comes from.
	offset int64
	// distrust, when not "", says why the partition is sent at-least-once: it is logged as a
	// warning naming the partition.
	distrust string
}

// judgeTail decides what r proves for stream src, for messages routed with partitions
// partitions. walBound is a position no record of src's current timeline can lie beyond.
func judgeTail(src record.Source, walBound uint64, partitions int, r tailRead) verdict {
	if len(r.records) == 0 {
		if r.end <= r.logStart {
			// Empty, or emptied by retention: nothing of ours is there to skip. Not a warning:
			// sending everything is exactly right.
			return verdict{}
		}
		return verdict{distrust: fmt.Sprintf("offsets %d..%d hold no readable record (transaction markers or aborted records only?)", r.logStart, r.end-1)}
	}
	var foreign, noSource, deadLetters, other, control int
	var otherSource string
	for i := len(r.records) - 1; i >= 0; i-- {
		rec := r.records[i]
		if rec.control {
			// A barrier (the sink's own, written before this read) or a re-sync request: no event,
			// no position. Step over it.
			control++
			continue
		}
		if rec.deadLetter {
			// The sink's dead-letter copies of rejected messages are written when Kafka refuses
			// them, not in position order with the rest: they prove nothing about the others.
			deadLetters++
			continue
		}
		if _, err := record.ParseExactPosition(rec.position); err != nil {
			foreign++ // another producer's record
			continue
		}
		if rec.source == "" {
			noSource++ // written by a pgoutbox without source headers: its stream is unknown
			continue
		}
		rs, ok := record.ParseSource(rec.source)
		if !ok {
			foreign++
			continue
		}
		if rs.SystemID != src.SystemID || rs.Slot != src.Slot || rs.Routing != src.Routing {
			// Another stream (another cluster, another slot: two relays write this topic; or
			// this slot under another publication, table or channel/topic column: other rows
			// or other partitions). Its records prove nothing about ours, and do not make ours
			// wrong either: step back over them.
			if other == 0 {
				otherSource = rec.source
			}
			other++
			continue
		}
		return judgeOurs(src, walBound, partitions, rec, rs)
	}
	if control == len(r.records) && r.records[0].offset <= r.logStart {
		// Control records alone since the log's start (the barrier of this read, of earlier
		// sessions): nothing of ours is there to skip.
		return verdict{}
	}
	var parts []string
	for _, c := range []struct {
		n    int
		what string
	}{
		{foreign, "without a valid pgoutbox-position (another producer)"},
		{noSource, "without a pgoutbox-source header (written before it existed)"},
		{other, "from another stream (" + otherSource + ")"},
		{deadLetters, "dead-letter copies"},
		{control, "control records (barriers, re-sync requests)"},
	} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	return verdict{distrust: fmt.Sprintf("none of the last %d records (offsets %d..%d) comes from this stream: %s",
		len(r.records), r.records[0].offset, r.records[len(r.records)-1].offset, strings.Join(parts, ", "))}
}

// judgeOurs decides about the newest record that names src's system and slot.
func judgeOurs(src record.Source, walBound uint64, partitions int, rec tailRecord, rs record.Source) verdict {
	at := fmt.Sprintf("the record at offset %d (position %s, source %s)", rec.offset, rec.position, rec.source)
	// The same slot name may belong to a slot that was dropped and created again: that needs no
	// guard of its own. A new slot starts at the server's WAL position when it is created,
	// after every commit the old slot could have streamed, so within one WAL history a new
	// slot's messages all lie above the old slot's records and none is skipped. A history that
	// went back (another timeline, a restored copy) is caught below.
	if n, err := strconv.Atoi(rec.partitions); err != nil || n != partitions {
		// Keys are partitioned by the count: with another count the messages that now map to
		// this partition are not the ones that did.
		return verdict{distrust: fmt.Sprintf("%s was partitioned for %q partitions, the topic has %d now", at, rec.partitions, partitions)}
	}
	pos, _ := record.ParseExactPosition(rec.position) // judgeTail checked it
	lsn := uint64(pos.LSN)
	if rs.Timeline == src.Timeline {
		// On this timeline no record can lie beyond the server's WAL: one that does comes from
		// a history this server does not have (the database was restored from a copy taken
		// before it was written, on the same timeline).
		if lsn > walBound {
			return verdict{distrust: fmt.Sprintf("%s lies beyond the server's WAL position %s: it cannot come from this server's history (was the database restored from a copy?)",
				at, record.LSN(walBound))}
		}
		return verdict{upTo: rec.position, offset: rec.offset}
	}
	for _, sw := range src.History {
		if sw.Timeline != rs.Timeline {
			continue
		}
		// A promotion or a point-in-time recovery forked the current timeline from this one
		// at sw.End: WAL before it is shared, WAL after it was discarded and its positions are
		// reused for other transactions.
		if lsn < uint64(sw.End) {
			return verdict{upTo: rec.position, offset: rec.offset}
		}
		return verdict{distrust: fmt.Sprintf("%s was written on timeline %d after position %s, where timeline %d forked from it: that WAL is not part of this server's history",
			at, rs.Timeline, sw.End, src.Timeline)}
	}
	return verdict{distrust: fmt.Sprintf("%s was written on timeline %d, which the server's timeline %d does not descend from", at, rs.Timeline, src.Timeline)}
}
