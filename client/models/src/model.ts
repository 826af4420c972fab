// The model: one channel's state machine. It bootstraps through the app's sync(), applies the
// channel's events by the rules (rules.ts), lays pending optimistic events over the confirmed
// state and settles each exactly once, and follows or stops following the channel as listeners,
// pause()/resume() and the page's visibility say. It knows no Centrifugo: only a Transport.

import { Cursors, Snapshot, decide, parseXid, rebase, type Decision } from './rules.js';
import { ModelError, MutationError } from './errors.js';
import type { ChannelLink, Publication, StreamPosition, Transport } from './transport.js';

/**
 * CONTROL_TAG and CONTROL_RESYNC: a publication whose tag CONTROL_TAG is CONTROL_RESYNC (the Kafka
 * header `pgoutbox-control: resync`, Go's record.HeaderControl and record.ControlResync,
 * forwarded by Centrifugo without its prefix) makes every model of its channel re-sync: call
 * sync() again and subscribe from its position, keeping pending optimistic events. It has no
 * position and is never merged. `pgoutbox recover` writes one after a recovered stretch.
 */
export const CONTROL_TAG = 'control';
/** The value of CONTROL_TAG that asks for a re-sync. */
export const CONTROL_RESYNC = 'resync';

/** Failed attempts (sync, token, subscribe) in a row before a model is 'errored'. */
const MAX_ATTEMPTS = 5;

/**
 * A model's status: 'initialized' (no listener yet), 'syncing' (bootstrapping, re-syncing or
 * reconnecting), 'ready' (following the channel), 'paused' (pause(), a hidden page, or no
 * listener), 'errored' (see current.error; resume() tries again), 'disposed'.
 */
export type Status = 'initialized' | 'syncing' | 'ready' | 'paused' | 'errored' | 'disposed';

/** What the app's state endpoint returns besides its data: where the data stands in the stream. */
export interface Bootstrap {
  /** The channel's Centrifugo stream position, read before the data. */
  position: StreamPosition;
  /** pg_current_snapshot() of the transaction that read the data: "xmin:xmax:xip,…". */
  snapshot: string;
}

/** What sync() resolves with: the state endpoint's answer. */
export interface SyncResult<S> {
  /** The model's state as read. */
  data: S;
  /** Where it stands. */
  bootstrap: Bootstrap;
}

/** An event of the channel, confirmed by the server (committed in the database). */
export interface ServerEvent<D = unknown> {
  /** The outbox row's event name. */
  name: string;
  /** The outbox row's payload. */
  data: D;
  /** The channel. */
  channel: string;
  /** The commit position, "0000001600B374D8-00000003". */
  position: string;
  /** The transaction's full id, in decimal. */
  xid: string;
  /** The mutation it answers, if any. */
  mutationId?: string;
  /** Every tag of the publication (the pgoutbox-* headers without the prefix). */
  headers: Readonly<Record<string, string>>;
  /** Never set on a server event. */
  optimistic?: false;
}

/** A local optimistic event, pending until the server's answer. */
export interface OptimisticEvent<D = unknown> {
  name: string;
  data: D;
  mutationId: string;
  optimistic: true;
}

/** What merge receives. */
export type ModelEvent<D = unknown> = ServerEvent<D> | OptimisticEvent<D>;

/** A mutation as model.optimistic() takes it. */
export interface Mutation<D = unknown> {
  /** Unique per mutation; the server writes it in the outbox row's mutation id column. */
  mutationId: string;
  name: string;
  data: D;
}

/** The app's mutation endpoint's answer. */
export interface CommitResult {
  /** The transaction's full id (pg_current_xact_id()), in decimal. */
  xid: string;
  /** The server refused the mutation (it still wrote an outbox event saying so). */
  rejected?: boolean;
  /** Why, for a rejected mutation. */
  reason?: string;
}

/** Options of model.optimistic(). */
export interface OptimisticOptions {
  /**
   * The app's call to its mutation endpoint. The model calls it at once, one mutation at a time
   * in the order made; a throw rolls the mutation back ('failed'), a rejected answer rolls it
   * back ('rejected'), and the answer's xid lets a re-sync's snapshot confirm it.
   */
  commit?: () => Promise<CommitResult>;
}

/** Options of client.models.get(). */
export interface ModelOptions<S, D = unknown> {
  /** The Centrifugo channel (the outbox row's channel). */
  channel: string;
  /** Calls the app's state endpoint. */
  sync: () => Promise<SyncResult<S>>;
  /**
   * Returns the state after event; pure: it must not change state (return a new value), as it
   * is re-run over the confirmed state to lay the pending optimistic events on top.
   */
  merge: (state: S, event: ModelEvent<D>) => S;
  /** How long a pending optimistic event waits for its confirmation before it is rolled back; default 30000. */
  optimisticTimeoutMs?: number;
  /** Called with every server event and the apply rule's decision (metrics, logs). */
  onEvent?: (event: ServerEvent<D>, decision: Decision) => void;
}

/** Called with the model's state after every change, or with its error. */
export type Listener<S> = (err: Error | undefined, state: S | undefined) => void;

/** Everything a view needs, one immutable object per change (React's useSyncExternalStore). */
export interface ModelView<S, D = unknown> {
  /** The confirmed state with the pending optimistic events on top. */
  readonly data: S | undefined;
  /** The server's state alone. */
  readonly confirmedData: S | undefined;
  /** The pending optimistic events, in the order made. */
  readonly pending: readonly OptimisticEvent<D>[];
  readonly status: Status;
  readonly error: Error | undefined;
}

/** What a ModelsClient gives its models: the transport and the page's lifecycle (apps do not make one). */
export interface ModelHost {
  transport: Transport;
  hidden(): boolean;
  wanted(model: object, on: boolean): void;
  forget(model: object): void;
}

interface Pending<D> {
  event: OptimisticEvent<D>;
  settle(outcome: ServerEvent<D> | MutationError | undefined): void;
  done: Promise<void>;
  xid?: bigint;
  rejected?: boolean;
  reason?: string;
  timer?: ReturnType<typeof setTimeout>;
}

interface ListenerEntry<S> {
  fn: Listener<S>;
  optimistic: boolean;
  seen: number;
  err?: Error;
}

const msg = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * Model is one channel's live model. Get it from client.models.get(); it starts with its first
 * listener (subscribe or watch).
 */
export class Model<S, D = unknown> {
  /** The channel. */
  readonly channel: string;
  /**
   * Counters since the model was made: events applied, skipped as visible in the snapshot or as
   * duplicates, syncs (the bootstrap and every re-sync), and recoveries (resubscribes the server
   * resumed from the last position with nothing missed, without a sync).
   */
  readonly stats = { applied: 0, visible: 0, duplicate: 0, syncs: 0, recoveries: 0 };
  #o: ModelOptions<S, D>;
  #host: ModelHost;
  #status: Status = 'initialized';
  #error: Error | undefined;
  #confirmed: S | undefined;
  #has = false;
  #snapshot: Snapshot | undefined;
  #cursors = new Cursors();
  #pending: Pending<D>[] = [];
  #listeners = new Set<ListenerEntry<S>>();
  #watchers = new Set<() => void>();
  #link: ChannelLink | undefined;
  #gen = 0;
  #boot = 0;
  #following = false;
  #paused = false;
  #failures = 0;
  #syncError: Error | undefined;
  // A bootstrap since the last subscribe: the next subscribe starts from its position (the
  // transport subscribes "recovering" from it), which is no recovery.
  #booted = false;
  #commits: Promise<unknown> = Promise.resolve();
  #vData = 0;
  #vConfirmed = 0;
  #scheduled = false;
  #view: ModelView<S, D> | undefined;

  /** Use client.models.get(). */
  constructor(options: ModelOptions<S, D>, host: ModelHost) {
    this.channel = options.channel;
    this.#o = options;
    this.#host = host;
  }

  /** The model's status. */
  get status(): Status {
    return this.#status;
  }

  /** The current view; the same object until something changes. */
  get current(): ModelView<S, D> {
    if (!this.#view) {
      const events = this.#pending.map((p) => p.event);
      let data = this.#confirmed;
      if (this.#has) {
        const r = rebase(this.#confirmed as S, events, this.#o.merge);
        data = r.state;
        for (const f of r.failed) {
          const p = this.#pending.find((x) => x.event === f.event);
          queueMicrotask(() => p?.settle(new MutationError('failed', f.event.mutationId, `merge: ${msg(f.error)}`)));
        }
      }
      this.#view = Object.freeze({ data, confirmedData: this.#confirmed, pending: Object.freeze(events), status: this.#status, error: this.#error });
    }
    return this.#view;
  }

  /**
   * subscribe calls listener asynchronously after every change of the state (optimistic: false —
   * of the confirmed state only), with an error when the model fails, and once with the current
   * state if it has one. The first listener starts the model. Returns the unsubscribe function.
   */
  subscribe(listener: Listener<S>, options: { optimistic?: boolean } = {}): () => void {
    if (this.#status === 'disposed') throw new ModelError('disposed', `model ${this.channel} is disposed`);
    const e: ListenerEntry<S> = { fn: listener, optimistic: options.optimistic !== false, seen: -1 };
    this.#listeners.add(e);
    this.#schedule();
    return this.#attach(() => this.#listeners.delete(e));
  }

  /**
   * watch calls onChange asynchronously after any change of current (state, pending, status,
   * error); it counts as a listener. Returns the unsubscribe function. (useModel is built on it.)
   */
  watch = (onChange: () => void): (() => void) => {
    if (this.#status === 'disposed') return () => {};
    this.#watchers.add(onChange);
    return this.#attach(() => this.#watchers.delete(onChange));
  };

  #attach(remove: () => void): () => void {
    this.#update();
    let once = false;
    return () => {
      if (once) return;
      once = true;
      remove();
      // Later: a listener replaced in the same task (React's strict mode) keeps the subscription.
      queueMicrotask(() => this.#update());
    };
  }

  /**
   * optimistic shows a mutation at once, as a pending event over the confirmed state, until it
   * settles: confirmed resolves with its server event (undefined when a re-sync's snapshot
   * already held its transaction), or rejects with a MutationError and the event is rolled back.
   * cancel() rolls it back at once ('canceled'). Allowed before 'ready'.
   */
  async optimistic(m: Mutation<D>, options: OptimisticOptions = {}): Promise<[confirmed: Promise<ServerEvent<D> | undefined>, cancel: () => void]> {
    const id = m.mutationId;
    if (this.#status === 'disposed') throw new MutationError('disposed', id, `model ${this.channel} is disposed`);
    if (typeof id !== 'string' || id === '' || this.#pending.some((p) => p.event.mutationId === id)) {
      throw new TypeError(`optimistic: mutationId ${JSON.stringify(id)}: want a string unique among the pending mutations`);
    }
    let resolve!: (e: ServerEvent<D> | undefined) => void;
    let reject!: (e: MutationError) => void;
    const confirmed = new Promise<ServerEvent<D> | undefined>((res, rej) => ((resolve = res), (reject = rej)));
    confirmed.catch(() => {}); // an app that does not wait for it gets no unhandled rejection
    let finish!: () => void;
    const p: Pending<D> = {
      event: { name: m.name, data: m.data, mutationId: id, optimistic: true },
      done: new Promise((r) => (finish = r)),
      settle: (outcome) => {
        const i = this.#pending.indexOf(p);
        if (i < 0) return;
        this.#pending.splice(i, 1);
        clearTimeout(p.timer);
        finish();
        if (outcome instanceof MutationError) reject(outcome);
        else resolve(outcome);
        this.#changed(1);
      },
    };
    this.#pending.push(p);
    if (this.#following) this.#arm(p);
    this.#changed(1);
    if (options.commit) this.#send(p, options.commit);
    return [confirmed, () => p.settle(new MutationError('canceled', id, 'canceled'))];
  }

  // send calls commit after the mutations made before it (a page's changes must not overtake
  // each other); one that settles first (timeout, cancel) lets the next go.
  #send(p: Pending<D>, commit: () => Promise<CommitResult>): void {
    const id = p.event.mutationId;
    const run = async () => {
      if (!this.#pending.includes(p)) return;
      let r: CommitResult;
      try {
        r = await commit();
        p.xid = parseXid(typeof r?.xid === 'bigint' ? String(r.xid) : r?.xid, 'commit() answer xid');
      } catch (e) {
        return p.settle(new MutationError('failed', id, msg(e)));
      }
      p.rejected = r.rejected === true;
      p.reason = r.reason;
      if (p.rejected) p.settle(new MutationError('rejected', id, r.reason || 'rejected by the server'));
      else if (this.#snapshot?.visible(p.xid)) p.settle(undefined);
    };
    this.#commits = this.#commits.then(() => Promise.race([run(), p.done]));
  }

  /** pause stops following the channel (status 'paused'); pending mutations stay pending. */
  pause(): void {
    this.#paused = true;
    this.#update();
  }

  /** resume follows the channel again, catching up from where it stopped; after 'errored', it starts over. */
  resume(): void {
    this.#paused = false;
    if (this.#status === 'errored') {
      this.#error = undefined;
      this.#failures = 0;
      this.#drop();
      this.#status = 'initialized';
      this.#changed(0);
    }
    this.#update();
  }

  /** resync bootstraps again through sync(), keeping pending optimistic events. */
  resync(): void {
    if (this.#status === 'disposed') return;
    this.#drop();
    this.#update();
  }

  /** dispose ends the model: its subscription and timers go; pending mutations reject with 'disposed'. */
  dispose(): void {
    if (this.#status === 'disposed') return;
    this.#drop();
    this.#setStatus('disposed');
    for (const p of [...this.#pending]) p.settle(new MutationError('disposed', p.event.mutationId, `model ${this.channel} was disposed`));
    this.#host.wanted(this, false);
    this.#host.forget(this);
  }

  /** The page's visibility changed. @internal */
  _env(): void {
    this.#update();
  }

  // drop closes the link: the next start bootstraps from scratch.
  #drop(): void {
    this.#link?.close();
    this.#link = undefined;
    this.#following = false;
    this.#disarm();
  }

  #update(): void {
    const dead = this.#status === 'disposed';
    const n = this.#listeners.size + this.#watchers.size;
    if (!dead) this.#host.wanted(this, n > 0);
    const follow = !dead && this.#status !== 'errored' && n > 0 && !this.#paused && !this.#host.hidden();
    if (follow && !this.#following) {
      this.#following = true;
      this.#setStatus('syncing');
      this.#link ??= this.#newLink();
      this.#link.start();
      for (const p of this.#pending) this.#arm(p);
    } else if (!follow && this.#following) {
      this.#following = false;
      this.#link?.stop();
      this.#disarm();
      if (this.#status !== 'errored') this.#setStatus('paused');
    }
  }

  #newLink(): ChannelLink {
    const gen = ++this.#gen;
    const live = () => gen === this.#gen && this.#following;
    return this.#host.transport.link(this.channel, {
      getState: () => this.#bootstrap(gen),
      publication: (pub) => live() && this.#onPublication(pub),
      subscribed: (recovered, resumed) => {
        if (!live()) return;
        // Never continue across a gap: a stream resumed without its missed publications re-syncs.
        if (!recovered) return this.resync();
        if (resumed && !this.#booted) this.stats.recoveries++;
        this.#booted = false;
        this.#failures = 0;
        this.#syncError = undefined;
        this.#setStatus('ready');
      },
      subscribing: () => live() && this.#setStatus('syncing'),
      error: (err) => {
        if (!live() || this.#status === 'ready' || ++this.#failures < MAX_ATTEMPTS) return;
        const cause = this.#syncError ?? err;
        this.#fail(new ModelError('sync', `${this.channel}: ${cause.message} (${this.#failures} attempts in a row)`, { cause }));
      },
      refused: (err) => live() && this.#fail(new ModelError('subscribe', `subscribe to ${this.channel}: ${err.message}`, { cause: err })),
    });
  }

  async #bootstrap(gen: number): Promise<StreamPosition> {
    const boot = ++this.#boot;
    const current = () => gen === this.#gen && boot === this.#boot && this.#following;
    if (!current()) throw new Error('a newer bootstrap replaced this one');
    let r: SyncResult<S>;
    let snap: Snapshot;
    try {
      r = await this.#o.sync();
      snap = Snapshot.parse(r?.bootstrap?.snapshot);
      const p = r.bootstrap.position;
      if (typeof p?.offset !== 'number' || typeof p.epoch !== 'string') {
        throw new TypeError(`bootstrap.position ${JSON.stringify(p)}: want {offset: number, epoch: string}`);
      }
    } catch (e) {
      if (current()) this.#syncError = new Error(`sync: ${msg(e)}`, { cause: e });
      throw e;
    }
    if (!current()) throw new Error('a newer bootstrap replaced this one');
    this.stats.syncs++;
    this.#confirmed = r.data;
    this.#has = true;
    this.#snapshot = snap;
    this.#cursors = new Cursors();
    this.#booted = true;
    // A pending mutation whose transaction the snapshot holds is in the state just read: its
    // event will be skipped as visible, so it settles now.
    for (const p of [...this.#pending]) {
      if (p.xid !== undefined && snap.visible(p.xid)) {
        p.settle(p.rejected ? new MutationError('rejected', p.event.mutationId, p.reason || 'rejected by the server') : undefined);
      }
    }
    this.#changed(2);
    return { offset: r.bootstrap.position.offset, epoch: r.bootstrap.position.epoch };
  }

  #onPublication(pub: Publication): void {
    const t = pub.tags;
    if (t[CONTROL_TAG] === CONTROL_RESYNC) return this.resync();
    const ev: ServerEvent<D> = { name: t.name ?? '', data: pub.data as D, channel: pub.channel, position: t.position ?? '', xid: t.xid ?? '', headers: t };
    if (t['mutation-id']) ev.mutationId = t['mutation-id'];
    let d: Decision;
    try {
      if (!this.#snapshot) throw new Error('no bootstrap yet');
      d = decide(this.#snapshot, this.#cursors, this.channel, t);
    } catch (e) {
      return this.#fail(new ModelError('stream', `event on ${this.channel} cannot be ordered: ${msg(e)}; Centrifugo must forward pgoutbox's headers as tags (tags_header_prefix: pgoutbox-)`, { cause: e }));
    }
    this.stats[d === 'apply' ? 'applied' : d]++;
    this.#o.onEvent?.(ev, d);
    const rejected = t.rejected === 'true';
    if (d === 'apply' && !rejected) {
      try {
        this.#confirmed = this.#o.merge(this.#confirmed as S, ev);
      } catch (e) {
        return this.#fail(new ModelError('merge', `merge of ${ev.name} at ${ev.position} on ${this.channel}: ${msg(e)}`, { cause: e }));
      }
      this.#changed(2);
    }
    const p = this.#pending.find((x) => x.event.mutationId === ev.mutationId);
    if (!p) return;
    if (!rejected) return p.settle(ev);
    const reason = (ev.data as { reason?: unknown } | null)?.reason;
    p.settle(new MutationError('rejected', p.event.mutationId, typeof reason === 'string' && reason ? reason : p.reason || 'rejected by the server'));
  }

  #arm(p: Pending<D>): void {
    const ms = this.#o.optimisticTimeoutMs ?? 30_000;
    if (p.timer === undefined && ms > 0 && ms < Infinity) {
      p.timer = setTimeout(() => p.settle(new MutationError('timeout', p.event.mutationId, `not confirmed within ${ms} ms`)), ms);
    }
  }

  #disarm(): void {
    for (const p of this.#pending) {
      clearTimeout(p.timer);
      p.timer = undefined;
    }
  }

  #fail(err: ModelError): void {
    this.#error = err;
    this.#following = false;
    this.#link?.stop();
    this.#disarm();
    this.#setStatus('errored');
  }

  #setStatus(s: Status): void {
    if (this.#status === s) return;
    this.#status = s;
    this.#changed(0);
  }

  // changed records a change: 0 status or error only, 1 the optimistic view, 2 the confirmed state.
  #changed(level: 0 | 1 | 2): void {
    if (level > 0) this.#vData++;
    if (level > 1) this.#vConfirmed++;
    this.#view = undefined;
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    const err = this.#status === 'errored' ? this.#error : undefined;
    for (const l of [...this.#listeners]) {
      const v = l.optimistic ? this.#vData : this.#vConfirmed;
      if (err && l.err !== err) {
        l.err = err;
        l.fn(err, undefined);
      } else if (this.#has && v !== l.seen) {
        l.seen = v;
        l.fn(undefined, l.optimistic ? this.current.data : this.#confirmed);
      }
    }
    for (const w of [...this.#watchers]) w();
    if (this.#status === 'disposed') {
      this.#listeners.clear();
      this.#watchers.clear();
    }
  }
}
