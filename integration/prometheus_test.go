//go:build integration

package integration

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestAlertRules checks deploy/prometheus/alerts.yml with Prometheus' own tool: the rules parse,
// and each alert fires (and only then) on the series of alerts_test.yml.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		harness.Unavailable(t, "promtool is not installed (Debian package prometheus; `make test` installs it)")
	}
	dir := filepath.Join("..", "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
