package main

import (
	"os"
	"strings"
	"testing"
)

// readDocs returns the pages of docs/ joined, each named once.
func readDocs(t *testing.T, pages ...string) string {
	t.Helper()
	var b strings.Builder
	for _, p := range pages {
		text, err := os.ReadFile("../../docs/" + p)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(text)
	}
	return b.String()
}

// TestDocs_DocumentSettingsAndMetrics keeps the operator's reference from drifting: every flag
// with its environment variable must appear in the configuration pages (docs/operating.md, and
// docs/security.md for TLS, SASL and secret files), and every pgoutbox_* metric in the metrics
// table of docs/monitoring.md.
func TestDocs_DocumentSettingsAndMetrics(t *testing.T) {
	config := readDocs(t, "operating.md", "security.md")
	var c Config
	for _, s := range c.settings() {
		if !strings.Contains(config, "`--"+s.name+"`") {
			t.Errorf("docs/operating.md (or security.md) does not document --%s", s.name)
		}
		if !strings.Contains(config, envName(s.name)) {
			t.Errorf("docs/operating.md (or security.md) does not name %s", envName(s.name))
		}
	}
	metrics := readDocs(t, "monitoring.md")
	families, err := newMetrics().reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if name := f.GetName(); strings.HasPrefix(name, "pgoutbox_") {
			n++
			if !strings.Contains(metrics, "`"+name) {
				t.Errorf("docs/monitoring.md's metrics table lacks %s", name)
			}
		}
	}
	if n < 15 {
		t.Errorf("only %d pgoutbox_* metrics gathered; the registry is not what this test expects", n)
	}
}
