package capture

import "time"

// Defaults of [StreamConfig], applied to fields left at zero; pgoutbox's flags use them too.
const (
	DefaultStatusInterval    = time.Second
	DefaultMinStatusInterval = 100 * time.Millisecond
)

// Defaults of the slot alarm's [Thresholds].
const (
	DefaultLagWarnBytes     = 1 << 30
	DefaultLagCriticalBytes = 4 << 30
	DefaultKeepFraction     = 0.5
	DefaultAgeWarn          = time.Minute
	DefaultAgeCritical      = 5 * time.Minute
)
