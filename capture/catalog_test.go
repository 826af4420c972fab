package capture

import (
	"strings"
	"testing"
	"time"
)

func TestServerInfo_IdleSlotTimeoutWarning(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		want    []string // substrings; none means no warning
	}{
		{"off (0, the default)", 0, nil},
		{"set", 90 * time.Minute, []string{"idle_replication_slot_timeout is 1h30m0s", "invalidates the slot",
			"standby relay", "re-published from the table", "idle_replication_slot_timeout = 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := ServerInfo{IdleSlotTimeout: tc.timeout}.IdleSlotTimeoutWarning()
			if len(tc.want) == 0 && got != "" {
				t.Fatalf("warning %q, want none", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("warning %q lacks %q", got, w)
				}
			}
		})
	}
}
