package capture

import "github.com/pgoutbox/pgoutbox/record"

// StandardHeaders returns the pgoutbox-* headers that the decoder puts first on the record of e
// (see [record.StandardHeaders]), from e's fields and the stream's source (see
// [record.Source.Header]; nil leaves the source header out). The benchmark builds its records
// with it, so that they carry exactly the relay's headers.
func StandardHeaders(e *Event, source []byte) []record.Header { return standardHeaders(e, source, 0) }
