package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgoutbox/pgoutbox/record"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/rs/zerolog"
)

// deadLetter is one record of the dead-letter topic, read back.
type deadLetter struct {
	sink.Record
	original, position, channel, id, reason, stage string
}

func readDeadLetters(ctx context.Context, cfg *Config, log zerolog.Logger) (*sink.Publisher, string, []deadLetter, error) {
	topic := cfg.DeadLetterTopic
	if topic == "" {
		topic = cfg.Topic + ".dlq"
	}
	pub, err := sink.New(cfg.sinkConfig(newMetrics()), log)
	if err != nil {
		return nil, "", nil, err
	}
	recs, err := pub.ReadTopic(ctx, topic)
	if err != nil {
		_ = pub.Close()
		return nil, "", nil, fmt.Errorf("dead-letter topic: %w", err)
	}
	out := make([]deadLetter, 0, len(recs))
	for _, r := range recs {
		if record.IsControl(r.Headers) {
			continue // the sink's barrier records (record.ControlBarrier): no dead letter
		}
		d := deadLetter{Record: r}
		d.original, _ = record.Lookup(r.Headers, record.HeaderOriginalTopic)
		d.position, _ = record.Lookup(r.Headers, record.HeaderPosition)
		d.channel, _ = record.Lookup(r.Headers, record.HeaderChannel)
		d.id, _ = record.Lookup(r.Headers, record.HeaderID)
		d.reason, _ = record.Lookup(r.Headers, record.HeaderError)
		d.stage, _ = record.DeadLetterStage(r.Headers)
		if d.original == "" && d.stage == record.StageDecode {
			d.original = cfg.Topic // capture's records before the header named it
		}
		out = append(out, d)
	}
	return pub, topic, out, nil
}

// runDLQList is `pgoutbox dlq list`: one line per dead-letter record.
func runDLQList(ctx context.Context, cfg *Config, base zerolog.Logger, stdout io.Writer) error {
	pub, topic, dead, err := readDeadLetters(ctx, cfg, base)
	if err != nil {
		return err
	}
	defer func() { _ = pub.Close() }()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintf(tw, "partition/offset\toriginal topic\tposition\tchannel\tid\tstage\terror\n")
	for _, d := range dead {
		_, _ = fmt.Fprintf(tw, "%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Partition, d.Offset, d.original, d.position, d.channel, d.id, d.stage, d.reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%d records in %s\n", len(dead), topic)
	return err
}

// runDLQRedrive is `pgoutbox dlq redrive`: it re-publishes dead-letter records to their original
// topics, in position order (so each channel's in commit order), with their original headers
// and positions, once the cause is fixed (the topic created, its max.message.bytes raised...).
// A record whose position its original topic already holds is not sent again: a second run
// publishes nothing. Without --apply it only says what it would do.
func runDLQRedrive(ctx context.Context, cfg *Config, base zerolog.Logger, stdout io.Writer) error {
	log := base.With().Str("component", "dlq").Logger()
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(stdout, format+"\n", args...) }
	pub, topic, dead, err := readDeadLetters(ctx, cfg, base)
	if err != nil {
		return err
	}
	defer func() { _ = pub.Close() }()
	var chosen []deadLetter
	for _, d := range dead {
		if why := unredrivable(ctx, pub, d); why != "" {
			say("skip %d/%d (id %s, position %s): %s", d.Partition, d.Offset, d.id, d.position, why)
			continue
		}
		chosen = append(chosen, d)
	}
	sort.SliceStable(chosen, func(i, j int) bool { return chosen[i].position < chosen[j].position })
	// The exact test of recover: the positions each original topic holds since the records'
	// commit times (minus a minute).
	present := map[string]map[string]bool{}
	var send []deadLetter
	for _, d := range chosen {
		if present[d.original] == nil {
			since := d.Time
			for _, o := range chosen {
				if o.original == d.original && o.Time.Before(since) {
					since = o.Time
				}
			}
			if present[d.original], err = pub.PositionsSince(ctx, d.original, since.Add(-time.Minute)); err != nil {
				return err
			}
		}
		if present[d.original][d.position] {
			continue
		}
		send = append(send, d)
	}
	// A record whose topic holds a later position already reaches its channel's clients out of
	// commit order (a client applying in position order would drop it): after the records, such
	// a channel gets a re-sync control record, as after `pgoutbox recover`.
	var resync []sink.Message
	resynced := map[string]bool{}
	last := map[string]string{} // the latest position each original topic holds
	for topic, positions := range present {
		for p := range positions {
			last[topic] = max(last[topic], p)
		}
	}
	for _, d := range send {
		key := d.original + "\x00" + d.channel
		if resynced[key] || last[d.original] <= d.position {
			continue
		}
		resynced[key] = true
		resync = append(resync, resyncRecord(d.original, d.channel, map[string]string{
			"reason": "dead-letter records re-published", "position": d.position}))
	}
	say("%d records in %s; %d can be re-published; %d of them are in their original topics already; %d to re-publish",
		len(dead), topic, len(chosen), len(chosen)-len(send), len(send))
	if len(resync) > 0 {
		say("%d channels hold later events already: each gets a re-sync control record after its records", len(resync))
	}
	if !cfg.Apply {
		say("dry run: nothing published; run `pgoutbox dlq redrive --apply` to re-publish them")
		return nil
	}
	in := make(chan sink.Message, len(send)+len(resync))
	for _, d := range send {
		in <- sink.Message{Topic: d.original, Key: d.Key, Value: d.Value, Headers: originalHeaders(d.Headers), Time: d.Time, ID: d.id}
	}
	for _, m := range resync {
		in <- m
	}
	close(in)
	pub.BeginSession(record.Source{}) // the exact test above chose what to send
	acked := 0
	if err := pub.Run(ctx, in, func(ms []sink.Message) { acked += len(ms) }); err != nil {
		return fmt.Errorf("re-publish dead letters: %w", err)
	}
	if acked != len(send)+len(resync) {
		return fmt.Errorf("re-publish dead letters: Kafka acknowledged %d of %d records", acked, len(send)+len(resync))
	}
	log.Info().Int("redriven", len(send)).Str("dead_letter_topic", topic).Msg("dead-letter records re-published")
	say("re-published %d records; running `pgoutbox dlq redrive --apply` again publishes nothing twice", len(send))
	return nil
}

// unredrivable says why a dead-letter record cannot be re-published as it is, or "".
func unredrivable(ctx context.Context, pub *sink.Publisher, d deadLetter) string {
	switch {
	case d.position == "" || d.channel == "":
		return "no position or channel: the row itself is bad (" + d.reason + "); insert a corrected event instead"
	case record.Has(d.Headers, record.HeaderOriginalMessage):
		return "a WAL-only event whose message could not be read: send it again with pgoutbox_send() (the message is in its pgoutbox-original-message header)"
	case d.original == "":
		return "no original topic"
	}
	if err := sink.CheckTopicName(d.original); err != nil {
		return err.Error() + "; insert a corrected event instead"
	}
	if _, err := pub.Partitions(ctx, d.original); err != nil {
		if errors.Is(err, sink.ErrTopicNotFound) {
			return fmt.Sprintf("topic %q does not exist: create it, then run `pgoutbox dlq redrive` again", d.original)
		}
		return err.Error()
	}
	return ""
}

// originalHeaders are the record's headers without those the dead-letter path added (the sink
// adds the partition count again).
func originalHeaders(hs []record.Header) []record.Header {
	out := make([]record.Header, 0, len(hs))
	for _, h := range hs {
		switch h.Key {
		case record.HeaderError, record.HeaderOriginalTopic, record.HeaderDeadLetterStage, record.HeaderPartitions, record.HeaderOriginalRow:
			continue
		}
		if strings.HasPrefix(h.Key, record.HeaderPrefix+"dead-letter") {
			continue
		}
		out = append(out, h)
	}
	return out
}
