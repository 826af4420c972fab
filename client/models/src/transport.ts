// The transport glue: the one place that knows centrifuge-js. A model sees a Transport (one
// connection) and ChannelLinks (one channel each); tests substitute a fake.

import { Centrifuge, type Subscription } from 'centrifuge';

/** A Centrifugo stream position: where a channel's history stands. */
export interface StreamPosition {
  /** Offset of the last publication in the stream (0: none). */
  offset: number;
  /** The stream's epoch; a new epoch means its history is gone. */
  epoch: string;
}

/** A publication as a model receives it. */
export interface Publication {
  /** The channel it was published on. */
  channel: string;
  /** The publication's data: the outbox row's payload. */
  data: unknown;
  /** The publication's tags: the record's pgoutbox-* headers without the prefix. */
  tags: Record<string, string>;
}

/** What a channel link calls back. */
export interface ChannelHandlers {
  /**
   * getState bootstraps the model and returns the position to subscribe from. Called on the
   * first subscribe and whenever the server cannot recover the position (new epoch, history
   * trimmed); its rejection is retried with backoff (and reported to error).
   */
  getState(): Promise<StreamPosition>;
  /** A publication after the position, in stream order. */
  publication(p: Publication): void;
  /**
   * Subscribed. recovered: false when the server resumed the stream with a gap. resumed: true
   * when the server resumed it from the link's last position with nothing missed (a recovery
   * from its history, e.g. after a reconnect to another node), rather than from getState's.
   */
  subscribed(recovered: boolean, resumed?: boolean): void;
  /** Lost, subscribing again (reconnecting, recovering, re-syncing). */
  subscribing(): void;
  /** A failed attempt; the link tries again with backoff. */
  error(err: Error): void;
  /** The server refused the subscription for good (e.g. permission denied). */
  refused(err: Error): void;
}

/** A channel link: one channel's subscription on the shared connection. */
export interface ChannelLink {
  /** start subscribes: from the last position it had (recovery), else through getState. */
  start(): void;
  /** stop unsubscribes, keeping the position for the next start. */
  stop(): void;
  /** close unsubscribes for good and forgets the position. */
  close(): void;
}

/** A Transport is the connection the models of one ModelsClient share. */
export interface Transport {
  /** link creates the link of one channel; a channel has at most one open link at a time. */
  link(channel: string, handlers: ChannelHandlers): ChannelLink;
  /** reconnect drops the connection and connects again (after a sleep, a network change). */
  reconnect(): void;
  /** close ends the connection and every link. */
  close(): void;
}

/** A WebSocket constructor (Node: the ws package's WebSocket, or globalThis.WebSocket). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => object;

/** Options of centrifugeTransport. */
export interface CentrifugeTransportOptions {
  /** Centrifugo's WebSocket endpoint, e.g. wss://rt.example.com/connection/websocket. */
  url: string;
  /** Returns a connection token (JWT) for the current user. */
  getToken: () => Promise<string>;
  /** Returns a subscription token for a private channel. */
  getSubscriptionToken?: (channel: string) => Promise<string>;
  /** The WebSocket implementation where there is no global one. */
  websocket?: WebSocketConstructor;
}

/**
 * centrifugeTransport is the Transport over one centrifuge-js client, connected while at least
 * one link is started (reference-counted) and disconnected when none is.
 */
export function centrifugeTransport(o: CentrifugeTransportOptions): Transport {
  const c = new Centrifuge(o.url, {
    getToken: () => o.getToken(),
    ...(o.websocket ? { websocket: o.websocket } : {}),
  });
  // centrifuge-js reports its errors on 'error' and retries by itself; a listener keeps it from
  // treating them as unhandled.
  c.on('error', () => {});
  let started = 0;
  const count = (d: number) => {
    started += d;
    if (started === 1 && d > 0) c.connect();
    // Deferred: a link closed and another started in the same task (a re-sync) keeps the connection.
    if (started === 0) queueMicrotask(() => started === 0 && c.disconnect());
  };
  return {
    link(channel, h) {
      let sub: Subscription | null = c.newSubscription(channel, {
        getState: h.getState,
        ...(o.getSubscriptionToken ? { getToken: (ctx: { channel: string }) => o.getSubscriptionToken!(ctx.channel) } : {}),
      });
      let on = false;
      sub.on('publication', (ctx) => h.publication({ channel: ctx.channel, data: ctx.data, tags: ctx.tags ?? {} }));
      sub.on('subscribed', (ctx) => h.subscribed(!ctx.wasRecovering || ctx.recovered, ctx.wasRecovering && ctx.recovered));
      sub.on('subscribing', () => h.subscribing());
      sub.on('error', (ctx) => h.error(new Error(ctx.error.message)));
      sub.on('unsubscribed', (ctx) => {
        // Code 0 is our own unsubscribe(); any other ends the subscription for good (a refused
        // subscribe such as 103 permission denied, a token the app refused, a server unsubscribe).
        if (on && ctx.code !== 0) h.refused(new Error(`${ctx.reason} (${ctx.code})`));
      });
      const stop = () => {
        if (!on) return;
        on = false;
        sub?.unsubscribe();
        count(-1);
      };
      return {
        start() {
          if (on || !sub) return;
          on = true;
          count(1);
          sub.subscribe();
        },
        stop,
        close() {
          stop();
          if (sub) c.removeSubscription(sub);
          sub = null;
        },
      };
    },
    reconnect() {
      if (started === 0) return;
      c.disconnect();
      c.connect();
    },
    close() {
      started = 0;
      c.disconnect();
    },
  };
}
