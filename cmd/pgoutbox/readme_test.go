package main

import (
	"os"
	"strings"
	"testing"
)

// TestREADME_DocumentsEverySettingAndMetric keeps the README's reference from drifting: every
// flag with its environment variable, and every pgoutbox_* metric, must appear in it.
func TestREADME_DocumentsEverySettingAndMetric(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	var c Config
	for _, s := range c.settings() {
		if !strings.Contains(readme, "`--"+s.name+"`") {
			t.Errorf("README does not document --%s", s.name)
		}
		if !strings.Contains(readme, envName(s.name)) {
			t.Errorf("README does not name %s", envName(s.name))
		}
	}
	families, err := newMetrics().reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if name := f.GetName(); strings.HasPrefix(name, "pgoutbox_") {
			n++
			if !strings.Contains(readme, "`"+name) {
				t.Errorf("README's metrics table lacks %s", name)
			}
		}
	}
	if n < 15 {
		t.Errorf("only %d pgoutbox_* metrics gathered; the registry is not what this test expects", n)
	}
}
