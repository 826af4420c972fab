package capture

// StandardHeaders returns the pgoutbox-* headers that the decoder puts first on the record of e
// (the Header* constants, in their order), from e's fields. The benchmark builds its records
// with it, so that they carry exactly the relay's headers.
func StandardHeaders(e *Event) []Header { return positionHeaders(e, 0) }
