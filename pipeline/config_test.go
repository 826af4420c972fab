package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pgoutbox/pgoutbox/checkpoint"
)

// A zero window would admit no row and stall the first one forever: New refuses it, and lists
// every other problem in the same error.
func TestNew_refusesAnInvalidConfig(t *testing.T) {
	t.Parallel()
	deps := Deps{NewStream: (&streams{}).next, Publisher: &fakePublisher{}, Slots: &fakeSlots{}, Log: zerolog.Nop()}
	if _, err := New(Config{Slot: "s"}, deps); err == nil || !strings.Contains(err.Error(), "in-flight event limit is 0") {
		t.Fatalf("New with a zero window = %v, want an error naming the window", err)
	}
	_, err := New(Config{ShutdownTimeout: -time.Second, JanitorBatch: -1, Window: checkpoint.Limits{MaxEvents: 1}}, Deps{})
	if err == nil {
		t.Fatal("New accepted an invalid config")
	}
	for _, want := range []string{"slot name is empty", "in-flight byte limit", "shutdown timeout is -1s", "janitor batch is -1", "NewStream, Publisher and Slots are required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New = %q; want it to say %q too", err, want)
		}
	}
	good := Config{Slot: "s", Window: checkpoint.Limits{MaxEvents: 1, MaxBytes: 1}}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", good, err)
	}
}
