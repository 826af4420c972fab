// The client: one shared connection, the registry of live models, and the page's lifecycle
// (hidden tab, network back online, machine sleep) applied to every model.

import { Model, type ModelHost, type ModelOptions } from './model.js';
import { centrifugeTransport, type Transport, type WebSocketConstructor } from './transport.js';

/** An event target, as window and document are. */
export interface EventTargetLike {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

/** Options of ModelsClient. */
export interface ModelsClientOptions {
  /** Centrifugo's WebSocket endpoint, e.g. wss://rt.example.com/connection/websocket. */
  url: string;
  /** Returns a connection token (JWT) for the current user, from the app's backend. */
  getToken: () => Promise<string>;
  /** Returns a subscription token for channel, from the app's backend (private channels); refreshed before it expires. */
  getSubscriptionToken?: (channel: string) => Promise<string>;
  /** The WebSocket implementation where there is no global one (Node: the ws package). */
  websocket?: WebSocketConstructor;
  /** Another transport than Centrifugo's (tests); url, getToken, getSubscriptionToken and websocket are then unused. */
  transport?: Transport;
  /** Pause the models after the page has been hidden this long (ms); false: never. Default 5000. */
  pauseWhenHiddenMs?: number | false;
  /**
   * Where the page's events come from: document (visibilitychange) and window (online); default
   * globalThis.document and globalThis; false: none.
   */
  environment?: { document?: EventTargetLike & { visibilityState: string }; window?: EventTargetLike } | false;
}

/** How often the sleep detector's timer ticks, and the gap between ticks that means the machine slept. */
const TICK_MS = 2000;
const SLEEP_GAP_MS = TICK_MS + 5000;

/** The registry of a client's live models. */
export interface Models {
  /**
   * get returns the live model of options.channel, making it if there is none (or the last one
   * was disposed); a live model keeps the options it was made with.
   */
  get<S, D = unknown>(options: ModelOptions<S, D>): Model<S, D>;
}

/**
 * ModelsClient holds one Centrifugo connection shared by all its models, connected while at
 * least one model follows its channel; close() ends it.
 */
export class ModelsClient {
  /** The models of this client. */
  readonly models: Models;
  #transport: Transport;
  #models = new Map<string, Model<unknown, unknown>>();
  #wanted = new Set<object>();
  #hidden = false;
  #hideTimer: ReturnType<typeof setTimeout> | undefined;
  #tick: ReturnType<typeof setInterval> | undefined;
  #last = 0;
  #doc: (EventTargetLike & { visibilityState: string }) | undefined;
  #win: EventTargetLike | undefined;
  #hideMs: number | false;

  constructor(options: ModelsClientOptions) {
    this.#transport = options.transport ?? centrifugeTransport(options);
    this.#hideMs = options.pauseWhenHiddenMs ?? 5000;
    const env = options.environment;
    const g = globalThis as { document?: EventTargetLike & { visibilityState: string }; addEventListener?: unknown };
    if (env !== false) {
      this.#doc = env?.document ?? g.document;
      this.#win = env?.window ?? (typeof g.addEventListener === 'function' ? (g as EventTargetLike) : undefined);
    }
    const host: ModelHost = {
      transport: this.#transport,
      hidden: () => this.#hidden,
      wanted: (m, on) => this.#want(m, on),
      forget: (m) => {
        for (const [ch, x] of this.#models) if (x === m) this.#models.delete(ch);
      },
    };
    this.models = {
      get: <S, D = unknown>(o: ModelOptions<S, D>): Model<S, D> => {
        let m = this.#models.get(o.channel) as Model<S, D> | undefined;
        if (!m || m.status === 'disposed') {
          m = new Model<S, D>(o, host);
          this.#models.set(o.channel, m as unknown as Model<unknown, unknown>);
        }
        return m;
      },
    };
  }

  /** close disposes every model and ends the connection. */
  close(): void {
    for (const m of [...this.#models.values()]) m.dispose();
    this.#transport.close();
  }

  // The page's events are listened to while at least one model has a listener.
  #want(m: object, on: boolean): void {
    const before = this.#wanted.size;
    if (on) this.#wanted.add(m);
    else this.#wanted.delete(m);
    if (before === 0 && this.#wanted.size > 0) {
      this.#doc?.addEventListener('visibilitychange', this.#onVisibility);
      this.#win?.addEventListener('online', this.#onOnline);
      this.#last = Date.now();
      this.#tick = setInterval(this.#onTick, TICK_MS);
      this.#onVisibility();
    } else if (before > 0 && this.#wanted.size === 0) {
      this.#doc?.removeEventListener('visibilitychange', this.#onVisibility);
      this.#win?.removeEventListener('online', this.#onOnline);
      clearInterval(this.#tick);
      clearTimeout(this.#hideTimer);
      this.#tick = this.#hideTimer = undefined;
      this.#hidden = false;
    }
  }

  #onVisibility = (): void => {
    if (this.#doc?.visibilityState !== 'hidden') {
      clearTimeout(this.#hideTimer);
      this.#hideTimer = undefined;
      this.#setHidden(false);
    } else if (this.#hideMs !== false && !this.#hidden && this.#hideTimer === undefined) {
      this.#hideTimer = setTimeout(() => {
        this.#hideTimer = undefined;
        this.#setHidden(true);
      }, this.#hideMs);
    }
  };

  #setHidden(h: boolean): void {
    if (this.#hidden === h) return;
    this.#hidden = h;
    for (const m of [...this.#models.values()]) m._env();
  }

  // Back online, or awake after a sleep: the connection may be dead without knowing it yet;
  // connect again, and every following model catches up from its position.
  #onOnline = (): void => this.#transport.reconnect();

  #onTick = (): void => {
    const now = Date.now();
    if (now - this.#last > SLEEP_GAP_MS) this.#transport.reconnect();
    this.#last = now;
  };
}
