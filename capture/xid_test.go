package capture_test

import (
	"math/rand/v2"
	"testing"

	"github.com/pgoutbox/pgoutbox/capture"
)

func TestWidenXID(t *testing.T) {
	t.Parallel()
	const epoch = uint64(1) << 32
	for _, tc := range []struct {
		name string
		xid  uint32
		ref  uint64
		want uint64
	}{
		{"no reference", 742, 0, 742},
		{"no reference, high xid", 0xFFFFFFF0, 0, 0xFFFFFFF0},
		{"epoch 0, before ref", 700, 742, 700},
		{"epoch 0, after ref", 800, 742, 800},
		{"epoch 0, near its start: no epoch -1", 0xFFFFFFF0, 10, 0xFFFFFFF0},
		{"same epoch", 5, 3*epoch + 10, 3*epoch + 5},
		{"ref just past the boundary, xid just before it", 0xFFFFFFFE, epoch + 3, epoch - 2},
		{"ref just before the boundary, xid just past it", 3, epoch - 2, epoch + 3},
		{"ref just past the boundary, xid just past it", 3, epoch + 1, epoch + 3},
		{"ref just before the boundary, xid just before it", 0xFFFFFFF0, epoch - 2, epoch - 16},
		{"far behind, same epoch", 1, 2*epoch + 1<<31, 2*epoch + 1},
		{"2^31 behind wraps to ahead", 0, 2*epoch + 1<<31 + 1, 3 * epoch},
		{"2^31 - 1 ahead", 1<<31 - 1, 2 * epoch, 2*epoch + 1<<31 - 1},
		{"2^31 ahead is taken as behind", 1 << 31, 2 * epoch, epoch + 1<<31},
	} {
		if got := capture.WidenXID(tc.xid, tc.ref); got != tc.want {
			t.Errorf("%s: WidenXID(%d, %d) = %d (epoch %d, %d), want %d (epoch %d, %d)", tc.name, tc.xid, tc.ref,
				got, got>>32, uint32(got), tc.want, tc.want>>32, uint32(tc.want))
		}
	}
}

// TestWidenXID_AcrossEpochs walks a stream of transactions across several epoch boundaries, as
// the relay sees it: each Begin's 32-bit xid is widened against the newest full id so far, and
// ids arrive out of order (commit order is not xid order) within 2^31 of each other.
func TestWidenXID_AcrossEpochs(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	next := uint64(1)<<32 - 100_000 // the server's next id at session start, near a boundary
	ref := next
	for range 200_000 {
		next += uint64(1 + rng.IntN(200_000))  // about 4.6 epochs in all
		full := next - uint64(rng.IntN(1<<20)) // a transaction that began up to 2^20 ids ago
		got := capture.WidenXID(uint32(full), ref)
		if got != full {
			t.Fatalf("WidenXID(%d, ref %d) = %d, want %d", uint32(full), ref, got, full)
		}
		ref = max(ref, got)
	}
	if next>>32 < 3 {
		t.Fatalf("the walk ended in epoch %d; it should cross several boundaries", next>>32)
	}
}
