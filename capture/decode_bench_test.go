package capture_test

import (
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/capture"
)

// The row of `make bench`: a 6-digit id, one of 1,000 channels, about 200 bytes of JSON.
var (
	benchPayload = `{"id": 123456, "body": "` + strings.Repeat("x", 130) + `", "kind": "bench.event", "channel": "ch-456"}`
	benchHeaders = `{"tenant": "acme", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}`
)

// benchDecoder returns a Decoder that has cached the outbox's Relation message and is inside
// a transaction, ready for inserts.
func benchDecoder(b *testing.B) *capture.Decoder {
	b.Helper()
	d := capture.NewDecoder(capture.DefaultTable())
	for _, msg := range [][]byte{outboxRelation(), begin()} {
		if _, err := d.Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
	return d
}

func benchInsert(b *testing.B, headers val) {
	d := benchDecoder(b)
	msg := outboxInsert(text("123456"), text("ch-456"), text("bench.event"), text(benchPayload), headers)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := d.Decode(msg)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := m.(capture.Row); !ok {
			b.Fatalf("decoded %T, want a Row", m)
		}
	}
}

// BenchmarkDecoder_Insert decodes one insert into the outbox into its Event: the work every
// row costs the capture loop. The row has no headers object, as in `make bench`.
func BenchmarkDecoder_Insert(b *testing.B) { benchInsert(b, null) }

// BenchmarkDecoder_InsertWithHeaders is the same row with a headers object of two keys.
func BenchmarkDecoder_InsertWithHeaders(b *testing.B) { benchInsert(b, text(benchHeaders)) }

// BenchmarkDecoder_Transaction decodes a whole 1-row transaction: Begin, Insert, Commit.
func BenchmarkDecoder_Transaction(b *testing.B) {
	d := benchDecoder(b)
	if _, err := d.Decode(commit()); err != nil {
		b.Fatal(err)
	}
	msgs := [][]byte{begin(), outboxInsert(text("123456"), text("ch-456"), text("bench.event"), text(benchPayload), null), commit()}
	b.ReportAllocs()
	for b.Loop() {
		for _, msg := range msgs {
			if _, err := d.Decode(msg); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkDecoder_Message decodes the message pgoutbox_send emits for the row of `make bench`
// (jsonb's text of the event object): the WAL-only outbox's cost next to Decoder_Insert.
func BenchmarkDecoder_Message(b *testing.B) {
	d := benchDecoder(b)
	msg := sendMsg(`{"v": 1, "data": ` + benchPayload + `, "name": "bench.event", "channel": "ch-456"}`)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := d.Decode(msg)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := m.(capture.Row); !ok {
			b.Fatalf("decoded %T, want a Row", m)
		}
	}
}
