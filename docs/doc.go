// Package docs holds pgoutbox's documentation: the Markdown pages next to this file, indexed by
// the "Where to read on" table of the repository's README.md, and the tests that keep them
// honest. It has no code of its own.
//
// The tests check that every relative link of README.md and of docs/*.md resolves (the file,
// and the heading an #anchor names), that no link leaves the repository except for a public web
// site, that every page is linked from README.md, and that architecture.md's package table
// names exactly the packages `go list ./...` reports. A page is added by writing
// docs/<topic>.md and a row in README.md's "Where to read on"; the tests pick it up.
package docs
