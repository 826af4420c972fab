//go:build integration

package integration

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestSlotAlarm_KafkaDown: with Kafka stopped and rows still written, the slot's unconfirmed
// bytes grow; the warn and then the critical alarm fire — a log line each, the alarm metric,
// /readyz 503 at critical, `pgoutbox status` exit 1 then 2 — and once Kafka is back every row
// is delivered and the alarm clears.
func TestSlotAlarm_KafkaDown(t *testing.T) {
	t.Parallel()
	kafka := harness.StartPrivateKafka(t)
	e := harness.NewOutboxOn(t, harness.Services{DatabaseURL: harness.NeedPostgres(t), Brokers: kafka.Brokers}, 1)
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	thresholds := []string{"PGOUTBOX_LAG_WARN_BYTES=4194304", "PGOUTBOX_LAG_CRITICAL_BYTES=33554432",
		"PGOUTBOX_LAG_WARN_AGE=0", "PGOUTBOX_LAG_CRITICAL_AGE=0"}
	relay := e.StartRelay(t, append(thresholds, "PGOUTBOX_HTTP_ADDR="+addr, "PGOUTBOX_MONITOR_INTERVAL=300ms",
		"PGOUTBOX_KAFKA_BACKOFF_MAX=500ms")...)
	relay.WaitLog("streaming started", 30*time.Second)
	if code, body := harness.Readyz(t, addr); code != http.StatusOK {
		t.Fatalf("/readyz %d while streaming: %s", code, body)
	}
	kafka.Stop()

	rows := 0
	write := func() { // about 1 MiB of WAL per call
		harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s (channel, name, data)
			SELECT 'ch-' || (g %% 8), 'alarm', jsonb_build_object('pad', repeat('x', 900), 'n', g) FROM generate_series(1, 800) g`, e.Name))
		rows += 800
	}
	// waitLevel writes until the relay reports the level, then checks every signal of it.
	waitLevel := func(level int, name string) map[string]float64 {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for harness.Scrape(t, addr)["pgoutbox_alarm_level"] < float64(level) {
			if time.Now().After(deadline) {
				t.Fatalf("alarm level %s not reached in 2 minutes", name)
			}
			write()
			time.Sleep(100 * time.Millisecond)
		}
		relay.WaitLog(`"message":"slot alarm `+name+`"`, 10*time.Second)
		return harness.Scrape(t, addr)
	}

	warn := waitLevel(1, "warn")
	if code, _ := e.StatusExit(t, thresholds...); code != 1 && code != 2 {
		t.Errorf("pgoutbox status exit %d at warn, want 1 (or 2 if it moved on)", code)
	}
	crit := waitLevel(2, "critical")
	if code, body := harness.Readyz(t, addr); code != http.StatusServiceUnavailable || !strings.Contains(body, "critical") {
		t.Errorf("/readyz %d at critical, want 503 naming the alarm: %s", code, body)
	}
	if code, out := e.StatusExit(t, thresholds...); code != 2 {
		t.Errorf("pgoutbox status exit %d at critical, want 2:\n%s", code, out)
	}
	if crit["pgoutbox_slot_unconfirmed_bytes"] <= warn["pgoutbox_slot_unconfirmed_bytes"] {
		t.Errorf("unconfirmed bytes did not grow: %v then %v", warn["pgoutbox_slot_unconfirmed_bytes"], crit["pgoutbox_slot_unconfirmed_bytes"])
	}
	if crit["pgoutbox_publish_errors_total{kind=\"retriable\"}"] == 0 {
		t.Errorf("no retriable publish error counted while Kafka was down")
	}

	kafka.Start()
	harness.WaitRecords(t, e.Brokers, e.Name, rows, 2*time.Minute)
	relay.WaitLog(`"message":"slot alarm cleared"`, time.Minute)
	after := harness.Scrape(t, addr)
	if after["pgoutbox_alarm_level"] != 0 {
		t.Errorf("alarm level %v after recovery", after["pgoutbox_alarm_level"])
	}
	if code, body := harness.Readyz(t, addr); code != http.StatusOK {
		t.Errorf("/readyz %d after recovery: %s", code, body)
	}
	relay.Stop(30 * time.Second)

	var names []string
	for name := range crit {
		if strings.HasPrefix(name, "pgoutbox_") && !strings.Contains(name, "_bucket") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		t.Logf("at critical: %s = %v", name, crit[name])
	}
	for _, m := range []map[string]float64{warn, crit, after} {
		t.Logf("alarm_level %v unconfirmed %.0f retained %.0f safe_wal %.0f inflight %v/%.0fB published %v errors(retriable) %v since_last_ack %.1fs oldest_unacked %.1fs",
			m["pgoutbox_alarm_level"], m["pgoutbox_slot_unconfirmed_bytes"], m["pgoutbox_slot_retained_bytes"], m["pgoutbox_slot_safe_wal_bytes"],
			m["pgoutbox_inflight_events"], m["pgoutbox_inflight_bytes"], m["pgoutbox_events_published_total"],
			m[`pgoutbox_publish_errors_total{kind="retriable"}`], m["pgoutbox_time_since_last_ack_seconds"], m["pgoutbox_oldest_unacked_commit_age_seconds"])
	}
}
