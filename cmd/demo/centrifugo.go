package main

import (
	"strings"

	"github.com/pgoutbox/pgoutbox/client/modelserver"
)

// centrifugo is what the app needs of the Centrifugo server: its server API (the channel's stream
// position, step 1 of the bootstrap recipe), the key that signs browsers' tokens, and the
// WebSocket address pages connect to.
type centrifugo struct {
	api       *modelserver.Centrifugo
	tokens    *modelserver.Tokens
	publicURL string // the WebSocket address browsers connect to
}

// wsURL turns Centrifugo's http(s) address into its WebSocket endpoint.
func wsURL(httpURL string) string {
	u := strings.TrimSuffix(httpURL, "/")
	switch {
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + strings.TrimPrefix(u, "https://")
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + strings.TrimPrefix(u, "http://")
	}
	return u + "/connection/websocket"
}
