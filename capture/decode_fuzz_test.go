package capture_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pgoutbox/pgoutbox/capture"

	"github.com/pgoutbox/pgoutbox/record"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed-* files of testdata/fuzz/FuzzDecoder from fuzzSeeds")

const corpusDir = "testdata/fuzz/FuzzDecoder"

// fullTable configures every optional column; fullRelation (relation id fullID) matches it, with
// a bytea payload.
const fullID = 16390

func fullTable() capture.Table {
	t := capture.DefaultTable()
	t.Topic = "topic"
	t.ExtraHeaders = []string{"tenant"}
	return t
}

func fullRelation() []byte {
	return relationMsg(fullID, "public", "outbox",
		col{"sequence_id", oidInt8}, col{"channel", oidText}, col{"name", oidText}, col{"data", oidBytea},
		col{"headers", oidJSONB}, col{"topic", oidText}, col{"tenant", oidText})
}

func fullInsert(vals ...val) []byte { return insertMsg(fullID, vals...) }

// fuzzSeeds are valid and nearly valid messages for both decoders of FuzzDecoder.
func fuzzSeeds() map[string][]byte {
	return map[string][]byte{
		"begin":             begin(),
		"commit":            commit(),
		"relation":          outboxRelation(),
		"relation-full":     fullRelation(),
		"relation-missing":  relationMsg(outboxID, "public", "outbox", col{"sequence_id", oidInt8}),
		"relation-other":    relationMsg(16400, "public", "orders", col{"id", oidInt8}),
		"insert":            outboxInsert(text("1"), text("c"), text("n"), text(`{"a": 1}`), text(`{"k": "v", "n": null, "o": [1, {"x": 2}]}`)),
		"insert-null":       outboxInsert(text("2"), null, null, null, null),
		"insert-bad-header": outboxInsert(text("3"), text("c"), text("n"), null, text(`[1]`)),
		"insert-other":      insertMsg(16400, text("1")),
		"insert-full":       fullInsert(text("4"), text("c"), text("n"), text(`\x0aff`), text(`{}`), text("orders"), text("acme")),
		"insert-full-esc":   fullInsert(text("5"), text("c"), text("n"), text(`a\\b\001`), null, null, null),
		"insert-binary":     outboxInsert(binary1, text("c"), text("n"), null, null),
		"insert-toast":      outboxInsert(text("6"), text("c"), text("n"), toast, null),
		"type":              typeMsg(16500, "public", "mood"),
		"origin":            originMsg(0x10, "node_a"),
		"message":           logicalMsg(true, 0x10, "app", "hello"),
		"message-send":      sendMsg(`{"v": 1, "data": {"a": [1, "x"]}, "name": "n", "channel": "c", "headers": {"k": "v"}, "rejected": false, "mutation_id": "m"}`),
		"message-bytes":     sendMsg(`{"v": 1, "channel": "c", "data_base64": "AP8K"}`),
		"message-bad":       sendMsg(`{"v": 1, "channel": "a,b", "headers": [1]}`),
		"message-version":   sendMsg(`{"v": 2, "channel": "c"}`),
		"message-outside":   logicalMsg(false, 0x10, "pgoutbox", `{"v": 1, "channel": "c"}`),
		"update":            updateMsg(outboxID, text("1"), null),
		"delete":            deleteMsg(outboxID, text("1")),
		"truncate":          truncateMsg(outboxID),
		"stream-start":      wire{'S'}.u32(1).u8(1),
	}
}

// FuzzDecoder feeds arbitrary bytes to decoders that are inside a transaction with the outbox
// relation cached. Decode must never panic, never return both a message and an error, and never
// return an event that refers to its input.
func FuzzDecoder(f *testing.F) {
	seeds := fuzzSeeds()
	for _, name := range slices.Sorted(maps.Keys(seeds)) {
		f.Add(seeds[name])
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, setup := range []struct {
			table    capture.Table
			relation []byte
		}{
			{capture.DefaultTable(), outboxRelation()},
			{fullTable(), fullRelation()},
		} {
			d := capture.NewDecoder(setup.table)
			for _, m := range [][]byte{setup.relation, begin()} {
				if _, err := d.Decode(m); err != nil {
					t.Fatal(err)
				}
			}
			input := bytes.Clone(in)
			msg, err := d.Decode(input)
			if msg != nil && err != nil {
				t.Fatalf("Decode returned both %#v and %v", msg, err)
			}
			before := fmt.Sprintf("%#v", msg)
			for i := range input {
				input[i] ^= 0xFF
			}
			if after := fmt.Sprintf("%#v", msg); after != before {
				t.Fatalf("the message changed with its input:\n%s\n%s", before, after)
			}
			if r, ok := msg.(capture.Row); ok {
				checkEvent(t, r.Event)
			}
			if errors.Is(err, capture.ErrBadRow) {
				var bad *capture.BadRowError
				if !errors.As(err, &bad) {
					t.Fatalf("ErrBadRow without a *BadRowError: %v", err)
				}
				checkEvent(t, bad.Event)
			}
			// The decoder stays usable: this must not panic whatever state in left it in.
			_, _ = d.Decode(outboxInsert(text("7"), text("c"), text("n"), null, null))
			_, _ = d.Decode(commit())
		}
	})
}

// checkEvent checks what every decoded event has: the pgoutbox-* headers, consistent with its
// fields.
func checkEvent(t *testing.T, e capture.Event) {
	t.Helper()
	keys := []string{record.HeaderID, record.HeaderName, record.HeaderCommitLSN, record.HeaderCommitIndex, record.HeaderPosition, record.HeaderXID, record.HeaderChannel}
	if len(e.Headers) < len(keys) {
		t.Fatalf("event has %d headers", len(e.Headers))
	}
	for i, k := range keys {
		if e.Headers[i].Key != k {
			t.Fatalf("header %d is %q, want %q", i, e.Headers[i].Key, k)
		}
	}
	if string(e.Headers[4].Value) != e.Position().String() || string(e.Headers[0].Value) != e.ID {
		t.Fatalf("headers %q do not match the event", e.Headers[:len(keys)])
	}
}

// The checked-in seed corpus holds exactly fuzzSeeds. Rewrite it with
//
//	go test ./capture/ -run TestFuzzDecoder_SeedCorpus -update-corpus
func TestFuzzDecoder_SeedCorpus(t *testing.T) {
	seeds := fuzzSeeds()
	if *updateCorpus {
		if err := os.MkdirAll(corpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, seed := range seeds {
		path := filepath.Join(corpusDir, "seed-"+name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seed)
		if *updateCorpus {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s is missing or stale (%v): run with -update-corpus", path, err)
		}
	}
	stale, err := filepath.Glob(filepath.Join(corpusDir, "seed-*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range stale {
		if _, ok := seeds[filepath.Base(path)[len("seed-"):]]; !ok {
			t.Errorf("%s is not a seed any more: delete it", path)
		}
	}
}
