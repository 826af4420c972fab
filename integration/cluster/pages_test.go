//go:build cluster

package cluster

import (
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/client/modelserver"
	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// casePages is how many Chromium pages follow the channels in each case, each a real browser
// page with an @pgoutbox/models model per channel it follows (pageChannels), connected through
// haproxy. They connect first, one after the other, so that haproxy's least-connections balance
// puts one on each Centrifugo node.
const casePages = 2

// pageChannels is the channels page i follows: 8 of the 12, the two pages overlapping on 4.
func pageChannels(channels []string, i int) []string {
	from := i * (len(channels) - 8) / (casePages - 1)
	return channels[from : from+8]
}

// pages is the browser half of a case (harness.StartCounterPages): the app the pages call
// (modelserver's handlers on the test's counters, Centrifugo's API and WebSocket through
// haproxy) and the node script that drives Chromium (deploy/demo/e2e/cluster-pages.mjs).
type (
	pages       = harness.Pages
	pageFigures = harness.PageFigures
)

// startPages serves the app and the page, starts the driver, and waits until every page's
// models follow their channels.
func startPages(t *testing.T, s *stack, channels []string) *pages {
	t.Helper()
	tokens, err := modelserver.NewHS256Tokens([]byte(s.top.HMACSecret))
	if err != nil {
		t.Fatal(err)
	}
	tokens.ConnectionTTL, tokens.SubscriptionTTL = time.Hour, time.Hour
	follow := make([][]string, casePages)
	for i := range follow {
		follow[i] = pageChannels(channels, i)
	}
	return harness.StartCounterPages(t, harness.CounterPagesConfig{
		Centrifugo:  &modelserver.Centrifugo{URL: s.lbURL(), APIKey: s.top.APIKey},
		Tokens:      tokens,
		WSURL:       s.wsURL(),
		DatabaseURL: s.top.DatabaseURL,
		Counters:    s.name + "_counters",
		Channels:    follow,
	})
}
