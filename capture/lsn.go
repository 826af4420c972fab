package capture

import "github.com/jackc/pglogrepl"

// LSN is a WAL position (PostgreSQL's pg_lsn), as the stream reports it. It is pglogrepl's type
// under our name, so that packages wired to the stream (the relay) need not import the driver:
// pglogrepl is imported by capture only.
type LSN = pglogrepl.LSN
