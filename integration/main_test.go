//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgoutbox-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	harness.RelayBinary = filepath.Join(dir, "pgoutbox")
	if err := harness.BuildPgoutbox(context.Background(), harness.RelayBinary, true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
