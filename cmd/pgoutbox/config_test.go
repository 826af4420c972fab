package main

import (
	"bytes"
	"strings"
	"testing"
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

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db": "postgres://u:%2A%2A%2A@h:5432/db",
		"postgres://h/db":               "postgres://h/db",
		"host=h password=secret user=u": "host=h password=*** user=u",
		"host=h user=u password=secret": "host=h user=u password=***",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(redactURL(in), "secret") {
			t.Errorf("redactURL(%q) leaks the password", in)
		}
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
