package harness

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEventually(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cond    func(n int) error
		wantErr string // "" for success
		maxRuns int    // the polling stopped by then
	}{
		{"at once", func(int) error { return nil }, "", 1},
		{"on the third call", func(n int) error {
			if n < 3 {
				return errors.New("not yet")
			}
			return nil
		}, "", 3},
		{"never: the last error is said", func(int) error { return errors.New("holds 2 of 3") }, "holds 2 of 3", 1 << 30},
		{"stopped", func(int) error { return Stop(errors.New("the process exited")) }, "the process exited", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runs := 0
			err := Eventually(context.Background(), 50*time.Millisecond, time.Millisecond, func(context.Context) error {
				runs++
				return tt.cond(runs)
			})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Eventually = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Eventually = %v, want an error with %q", err, tt.wantErr)
			case runs > tt.maxRuns:
				t.Fatalf("cond ran %d times, want at most %d", runs, tt.maxRuns)
			}
			if strings.HasPrefix(tt.name, "never") && !strings.HasPrefix(err.Error(), "not within ") {
				t.Fatalf("a timed-out poll does not say so: %v", err)
			}
			if strings.Contains(tt.name, "stopped") && strings.Contains(err.Error(), "not within") {
				t.Fatalf("a stopped poll reported a timeout: %v", err)
			}
		})
	}
}
