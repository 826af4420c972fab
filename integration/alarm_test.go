//go:build integration

package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape returns the relay's metrics as name{labels} → value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer func() { _ = res.Body.Close() }()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// readyz returns /readyz's status code and body.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("readyz %s: %v", addr, err)
	}
	defer func() { _ = res.Body.Close() }()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// statusExit runs `pgoutbox status` with the relay's environment and returns its exit status.
func (e outboxEnv) statusExit(t *testing.T, extraEnv ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, relayBinary, "status")
	cmd.Env = append(e.env(), extraEnv...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("pgoutbox status: %v\n%s", err, out)
	return -1, ""
}

// TestSlotAlarm_KafkaDown: with Kafka stopped and rows still written, the slot's unconfirmed
// bytes grow; the warn and then the critical alarm fire — a log line each, the alarm metric,
// /readyz 503 at critical, `pgoutbox status` exit 1 then 2 — and once Kafka is back every row
// is delivered and the alarm clears.
func TestSlotAlarm_KafkaDown(t *testing.T) {
	t.Parallel()
	kafka := startPrivateKafka(t)
	e := newOutboxOn(t, services{DatabaseURL: needPostgres(t), Brokers: kafka.Brokers}, 1)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	thresholds := []string{"PGOUTBOX_LAG_WARN_BYTES=4194304", "PGOUTBOX_LAG_CRITICAL_BYTES=33554432",
		"PGOUTBOX_LAG_WARN_AGE=0", "PGOUTBOX_LAG_CRITICAL_AGE=0"}
	relay := e.startRelay(t, append(thresholds, "PGOUTBOX_HTTP_ADDR="+addr, "PGOUTBOX_MONITOR_INTERVAL=300ms",
		"PGOUTBOX_KAFKA_BACKOFF_MAX=500ms")...)
	relay.waitLog("streaming started", 30*time.Second)
	if code, body := readyz(t, addr); code != http.StatusOK {
		t.Fatalf("/readyz %d while streaming: %s", code, body)
	}
	kafka.stop()

	rows := 0
	write := func() { // about 1 MiB of WAL per call
		execSQL(t, e.DatabaseURL, fmt.Sprintf(`INSERT INTO %s (channel, name, data)
			SELECT 'ch-' || (g %% 8), 'alarm', jsonb_build_object('pad', repeat('x', 900), 'n', g) FROM generate_series(1, 800) g`, e.Name))
		rows += 800
	}
	// waitLevel writes until the relay reports the level, then checks every signal of it.
	waitLevel := func(level int, name string) map[string]float64 {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for scrape(t, addr)["pgoutbox_alarm_level"] < float64(level) {
			if time.Now().After(deadline) {
				t.Fatalf("alarm level %s not reached in 2 minutes", name)
			}
			write()
			time.Sleep(100 * time.Millisecond)
		}
		relay.waitLog(`"message":"slot alarm `+name+`"`, 10*time.Second)
		return scrape(t, addr)
	}

	warn := waitLevel(1, "warn")
	if code, _ := e.statusExit(t, thresholds...); code != 1 && code != 2 {
		t.Errorf("pgoutbox status exit %d at warn, want 1 (or 2 if it moved on)", code)
	}
	crit := waitLevel(2, "critical")
	if code, body := readyz(t, addr); code != http.StatusServiceUnavailable || !strings.Contains(body, "critical") {
		t.Errorf("/readyz %d at critical, want 503 naming the alarm: %s", code, body)
	}
	if code, out := e.statusExit(t, thresholds...); code != 2 {
		t.Errorf("pgoutbox status exit %d at critical, want 2:\n%s", code, out)
	}
	if crit["pgoutbox_slot_unconfirmed_bytes"] <= warn["pgoutbox_slot_unconfirmed_bytes"] {
		t.Errorf("unconfirmed bytes did not grow: %v then %v", warn["pgoutbox_slot_unconfirmed_bytes"], crit["pgoutbox_slot_unconfirmed_bytes"])
	}
	if crit["pgoutbox_publish_errors_total{kind=\"retriable\"}"] == 0 {
		t.Errorf("no retriable publish error counted while Kafka was down")
	}

	kafka.start()
	waitRecords(t, e.Brokers, e.Name, rows, 2*time.Minute)
	relay.waitLog(`"message":"slot alarm cleared"`, time.Minute)
	after := scrape(t, addr)
	if after["pgoutbox_alarm_level"] != 0 {
		t.Errorf("alarm level %v after recovery", after["pgoutbox_alarm_level"])
	}
	if code, body := readyz(t, addr); code != http.StatusOK {
		t.Errorf("/readyz %d after recovery: %s", code, body)
	}
	relay.stop(30 * time.Second)

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
