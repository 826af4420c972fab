package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

func TestProducerConfig_TheConnectorTasksBlock(t *testing.T) {
	log := "[2026-12-01 22:45:19,100] INFO ProducerConfig values: \n" +
		"\tacks = 1\n\tclient.id = \n\tlinger.ms = 100\n" +
		"[2026-12-01 22:45:19,200] INFO something else (x)\n" +
		"[2026-12-01 22:45:19,965] INFO ProducerConfig values: \n" +
		"\tacks = -1\n\tbatch.size = 16384\n\tclient.id = connector-producer-outbox-0\n\tclient.rack = \n" +
		"\tcompression.type = none\n\tenable.idempotence = false\n\tlinger.ms = 5\n" +
		"\tmax.in.flight.requests.per.connection = 1\n" +
		"[2026-12-01 22:45:20,147] INFO initializing Kafka metrics collector (x)\n\tlinger.ms = 999\n"
	path := filepath.Join(t.TempDir(), "connect.log")
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := producerConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"acks": "-1", "linger.ms": "5", "batch.size": "16384",
		"max.in.flight.requests.per.connection": "1", "enable.idempotence": "false", "compression.type": "none"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if err := os.WriteFile(path, []byte(log[:strings.Index(log, "[2026-12-01 22:45:19,965]")]), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := producerConfig(path); err == nil {
		t.Error("a log without the task's producer block: no error")
	}
}

func TestCheckRecord(t *testing.T) {
	const channels = 10
	rec := func(key string, value []byte) harness.Record { return harness.Record{Key: key, Value: value} }
	seen := make([]bool, 4)
	if err := checkRecord(rec("ch-3", benchPayload(3, channels)), seen, channels); err != nil {
		t.Fatalf("the right record: %v", err)
	}
	if !seen[3] {
		t.Error("row 3 not noted as seen")
	}
	bad := []struct {
		name string
		r    harness.Record
		want string
	}{
		{"again", rec("ch-3", benchPayload(3, channels)), "twice"},
		{"wrong key", rec("ch-4", benchPayload(2, channels)), "key"},
		{"changed value", rec("ch-2", bytes.Replace(benchPayload(2, channels), []byte("xx"), []byte("yy"), 1)), "want"},
		{"out of range", rec("ch-4", benchPayload(4, channels)), "not the data"},
		{"not JSON", rec("ch-1", []byte(`"{\"id\": 1}"`)), "not the data"},
		{"no value", harness.Record{Key: "ch-1"}, "not the data"},
	}
	for _, c := range bad {
		if err := checkRecord(c.r, seen, channels); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestPropEscape(t *testing.T) {
	if got := propEscape(`a\b` + "\nc"); got != `a\\b\nc` {
		t.Errorf("propEscape = %q", got)
	}
}
