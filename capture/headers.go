package capture

// StandardHeaders returns the pgoutbox-* headers that the decoder puts first on the record of e
// (the Header* constants, in their order), from e's fields and the stream's source (see
// [Source.Header]; nil leaves the source header out). The benchmark builds its records with it,
// so that they carry exactly the relay's headers.
func StandardHeaders(e *Event, source []byte) []Header { return positionHeaders(e, source, 0) }
