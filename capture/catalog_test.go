package capture

import (
	"errors"
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

func TestCheckFailoverSupport(t *testing.T) {
	t.Parallel()
	if err := CheckFailoverSupport(ServerInfo{VersionNum: 170006}); err != nil {
		t.Errorf("PostgreSQL 17.6: %v", err)
	}
	err := CheckFailoverSupport(ServerInfo{VersionNum: 160010})
	if !errors.Is(err, ErrFailover) || !strings.Contains(err.Error(), "PostgreSQL 16.10; failover slots need PostgreSQL 17 or later") {
		t.Errorf("PostgreSQL 16.10: %v", err)
	}
}
