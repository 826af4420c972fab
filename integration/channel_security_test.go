//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/centrifugal/centrifuge-go"
	"github.com/pgoutbox/pgoutbox/client/modelserver"
)

// subscribeOutcome subscribes client to channel with cfg (GetState, when set, answers from):
// it returns the publications received and nil once subscribed, or the refusal's code.
func subscribeOutcome(t *testing.T, client *centrifuge.Client, channel string, cfg centrifuge.SubscriptionConfig, want int) ([]centrifuge.PublicationEvent, error) {
	t.Helper()
	sub, err := client.NewSubscription(channel, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pubs := make(chan centrifuge.PublicationEvent, 100)
	done := make(chan error, 1)
	sub.OnPublication(func(ev centrifuge.PublicationEvent) { pubs <- ev })
	sub.OnSubscribed(func(centrifuge.SubscribedEvent) { done <- nil })
	sub.OnUnsubscribed(func(ev centrifuge.UnsubscribedEvent) {
		select {
		case done <- fmt.Errorf("unsubscribed: code %d %s", ev.Code, ev.Reason):
		default:
		}
	})
	// A token signed for another user makes Centrifugo close the connection (invalid token).
	client.OnDisconnected(func(ev centrifuge.DisconnectedEvent) {
		select {
		case done <- fmt.Errorf("disconnected: code %d %s", ev.Code, ev.Reason):
		default:
		}
	})
	if err := sub.Subscribe(); err != nil {
		t.Fatal(err)
	}
	var got []centrifuge.PublicationEvent
	select {
	case err := <-done:
		if err != nil {
			return nil, err
		}
	case <-time.After(20 * time.Second):
		return nil, errors.New("neither subscribed nor refused within 20s")
	}
	deadline := time.After(10 * time.Second)
	for len(got) < want {
		select {
		case p := <-pubs:
			got = append(got, p)
		case <-deadline:
			return got, nil
		}
	}
	_ = sub.Unsubscribe()
	return got, nil
}

// TestChannelSecurity: with the shipped Centrifugo configuration, outbox channels are private.
// A user's connection cannot subscribe to another user's channel — without a token, with the
// other user's subscription token, or recovering its history from offset 0 — nor read its
// history; the owner, with the subscription token the app issues after its check, can. And the
// app's handler refuses to sign a token for a channel its check denies.
func TestChannelSecurity(t *testing.T) {
	t.Parallel()
	brokers := harness.NeedKafka(t)
	topic := harness.UniqueName(t)
	harness.CreateTopic(t, brokers, topic, 1)
	cf := harness.StartCentrifugo(t, brokers, topic)
	ctx := context.Background()

	const private = "outbox:user-alice"
	for i := range 3 {
		if _, err := cf.API().Publish(ctx, private, map[string]int{"secret": i}, nil); err != nil {
			t.Fatal(err)
		}
	}
	top, err := cf.StreamTop(ctx, private)
	if err != nil {
		t.Fatal(err)
	}
	if top.Offset != 3 {
		t.Fatalf("stream position %+v, want offset 3", top)
	}
	fromStart := func(centrifuge.SubscriptionGetStateEvent) (centrifuge.StreamPosition, error) {
		return centrifuge.StreamPosition{Offset: 0, Epoch: top.Epoch}, nil
	}

	for _, tc := range []struct {
		name string
		cfg  centrifuge.SubscriptionConfig
	}{
		{"no token", centrifuge.SubscriptionConfig{}},
		{"no token, recovering from offset 0", centrifuge.SubscriptionConfig{Positioned: true, Recoverable: true, GetState: fromStart}},
		{"alice's subscription token", centrifuge.SubscriptionConfig{Token: cf.SubToken("alice", private)}},
		{"alice's token, recovering from offset 0", centrifuge.SubscriptionConfig{Token: cf.SubToken("alice", private), Positioned: true, Recoverable: true, GetState: fromStart}},
		{"a token for another channel", centrifuge.SubscriptionConfig{Token: cf.SubToken("mallory", "outbox:user-mallory")}},
	} {
		mallory := connectClient(t, cf, "mallory") // one connection per attempt: some refusals close it
		pubs, err := subscribeOutcome(t, mallory, private, tc.cfg, 1)
		if err == nil {
			t.Errorf("mallory subscribed to %s with %s and received %d publications", private, tc.name, len(pubs))
		} else {
			t.Logf("mallory with %s: %v", tc.name, err)
		}
	}
	if _, err := connectClient(t, cf, "mallory").History(ctx, private, centrifuge.WithHistoryLimit(10)); err == nil {
		t.Errorf("mallory read the history of %s", private)
	} else {
		t.Logf("mallory's history call: %v", err)
	}

	// The owner, with the token the app issued, recovers the whole history: the refusals above
	// are the channel's privacy, not a broken subscription.
	alice := connectClient(t, cf, "alice")
	pubs, err := subscribeOutcome(t, alice, private, centrifuge.SubscriptionConfig{
		Token: cf.SubToken("alice", private), Positioned: true, Recoverable: true, GetState: fromStart}, 3)
	if err != nil || len(pubs) != 3 {
		t.Errorf("alice with her token: %d publications (%v), want 3", len(pubs), err)
	}

	// The app's endpoint signs only what its check allows.
	h := &modelserver.Handlers{
		Tokens: cf.Tokens(),
		User:   func(r *http.Request) (string, error) { return r.Header.Get("X-Test-User"), nil },
		Authorize: func(_ *http.Request, user, channel string) error {
			if channel != "outbox:user-"+user {
				return modelserver.Forbidden("not your channel")
			}
			return nil
		},
	}
	srv := httptest.NewServer(h.SubscriptionToken())
	defer srv.Close()
	for user, want := range map[string]int{"mallory": 403, "alice": 200, "": 401} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"?channel="+private, nil)
		req.Header.Set("X-Test-User", user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%q asks for a token for %s: %d, want %d", user, private, resp.StatusCode, want)
		}
	}
}
