package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestConfig_EnvAndFlags(t *testing.T) {
	t.Setenv("PGOUTBOX_TOPIC", "from-env")
	t.Setenv("PGOUTBOX_SLOT", "env_slot")
	t.Setenv("PGOUTBOX_MAX_INFLIGHT_EVENTS", "7")
	var c Config
	fs, err := newFlagSet("run", scopeRun, &c)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--slot", "flag_slot"}); err != nil {
		t.Fatal(err)
	}
	if c.Topic != "from-env" || c.Slot != "flag_slot" || c.MaxInflightEvents != 7 || c.Publication != "pgoutbox" {
		t.Errorf("got topic=%q slot=%q max=%d publication=%q; want env, flag over env, env, default",
			c.Topic, c.Slot, c.MaxInflightEvents, c.Publication)
	}
}

func TestConfig_BadEnvValue(t *testing.T) {
	t.Setenv("PGOUTBOX_STATUS_INTERVAL", "soon")
	var c Config
	if _, err := newFlagSet("run", scopeRun, &c); err == nil || !strings.Contains(err.Error(), "PGOUTBOX_STATUS_INTERVAL") {
		t.Errorf("err = %v, want one naming PGOUTBOX_STATUS_INTERVAL", err)
	}
}

func TestConfig_ValidateListsEveryProblem(t *testing.T) {
	var c Config
	_ = c.settings() // defaults
	c.Slot = "Bad-Slot"
	c.LogFormat = "xml"
	c.MaxInflightEvents = 0
	err := c.Validate(scopeRun)
	if err == nil {
		t.Fatal("Validate accepted a config without database URL and brokers")
	}
	for _, want := range []string{"--database-url", "--kafka-brokers", "--slot", "--log-format", "--max-inflight-events"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
}

func TestConfig_ValidDefaults(t *testing.T) {
	var c Config
	_ = c.settings()
	c.DatabaseURL = "postgres://u:p@localhost:5432/db"
	c.KafkaBrokers = "localhost:9092, localhost:9093"
	if err := c.Validate(scopeRun); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	if got := c.Brokers(); len(got) != 2 || got[1] != "localhost:9093" {
		t.Errorf("brokers = %q", got)
	}
	tb, err := c.Table()
	if err != nil || tb.QualifiedName() != `"public"."outbox"` {
		t.Errorf("table = %v, %v", tb.QualifiedName(), err)
	}
}

func TestRun_HelpListsEveryFlagWithEnv(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"run", "--help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	var c Config
	for _, s := range c.settings() {
		if s.scope&scopeRun == 0 {
			continue
		}
		if !strings.Contains(out.String(), "-"+s.name) || !strings.Contains(out.String(), envName(s.name)) {
			t.Errorf("help lacks --%s or %s", s.name, envName(s.name))
		}
	}
}

func TestRun_BadConfigExitsTwo(t *testing.T) {
	t.Setenv("PGOUTBOX_DATABASE_URL", "")
	t.Setenv("PGOUTBOX_KAFKA_BROKERS", "")
	var out, errOut bytes.Buffer
	if code := run([]string{"run"}, &out, &errOut); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), "--database-url") {
		t.Errorf("stderr does not name the missing setting: %s", errOut.String())
	}
}

// TestRun_BadHTTPAddrExitsTwo: a bad --http-addr is a configuration error (exit 2) found before
// anything connects, not a run-time failure (exit 1).
func TestRun_BadHTTPAddrExitsTwo(t *testing.T) {
	t.Setenv("PGOUTBOX_DATABASE_URL", "postgres://u@127.0.0.1:1/db")
	t.Setenv("PGOUTBOX_KAFKA_BROKERS", "127.0.0.1:1")
	for _, addr := range []string{"127.0.0.1:99999", "127.0.0.1:http", "localhost"} {
		var out, errOut bytes.Buffer
		if code := run([]string{"run", "--http-addr", addr}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--http-addr") {
			t.Errorf("--http-addr %s: exit %d, want 2 naming --http-addr: %s", addr, code, errOut.String())
		}
	}
}

// TestConfig_Validate_NamesEveryFlag: every problem is reported at once, each naming its flag,
// including the Kafka settings that used to pass validation and fail only at run time.
func TestConfig_Validate_NamesEveryFlag(t *testing.T) {
	var c Config
	c.settings()
	c.DatabaseURL, c.KafkaBrokers = "postgres://h/db", "127.0.0.1:9092,nohost"
	c.Topic, c.OnBadRow, c.DeadLetterTopic = "bad topic!", "dead-letter", "dlq?"
	c.KafkaCompression, c.ReconnectMax, c.LagWarnBytes, c.LagCriticalAge = "brotli", 0, -1, -time.Second
	c.MaxInflightEvents, c.ReplicationFactor = 0, 0
	err := c.Validate(scopeRun)
	if err == nil {
		t.Fatal("Validate accepted a bad configuration")
	}
	for _, flag := range []string{"--kafka-brokers", "--topic", "--dead-letter-topic", "--kafka-compression",
		"--reconnect-max", "--lag-warn-bytes", "--lag-critical-age", "--max-inflight-events", "--replication-factor"} {
		if !strings.Contains(err.Error(), flag+" ") && !strings.Contains(err.Error(), flag+":") {
			t.Errorf("no problem names %s:\n%v", flag, err)
		}
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(line, "--") {
			t.Errorf("problem without its flag: %q", line)
		}
	}
}

// TestRun_UsageErrors: a mistyped flag is one line naming it and the closest flag, not the
// whole usage; every usage error of status exits 3 (unknown), never 2 (critical).
func TestRun_UsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run", "--topik", "x"}, 2, "pgoutbox run: unknown flag --topik (did you mean --topic?); see `pgoutbox run --help`\n"},
		{[]string{"status", "--jsn"}, statusExitUnknown, "pgoutbox status: unknown flag --jsn (did you mean --json?); see `pgoutbox status --help`\n"},
		{[]string{"status", "--max-inflight-events", "x"}, statusExitUnknown, ""}, // not a status flag
		{[]string{"run", "--max-inflight-events", "x"}, 2, "not an integer"},
		{[]string{"run", "--max-inflight-events", "abc"}, 2, `for flag --max-inflight-events`},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(tt.args, &out, &errOut)
		if code != tt.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tt.args, code, tt.code, errOut.String())
		}
		if lines := strings.Count(errOut.String(), "\n"); lines != 1 {
			t.Errorf("%v: %d lines on stderr, want 1: %q", tt.args, lines, errOut.String())
		}
		if !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("%v: stderr %q, want it to contain %q", tt.args, errOut.String(), tt.want)
		}
	}
}
