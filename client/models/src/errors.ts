// The errors a model reports, each a class with a reason to switch on.

/** Why an optimistic mutation did not end confirmed. */
export type MutationFailure = 'rejected' | 'timeout' | 'canceled' | 'disposed' | 'failed';

/**
 * MutationError rejects the confirmation promise of model.optimistic(): the optimistic event was
 * rolled back. reason says why; for 'rejected', message is the server's reason.
 */
export class MutationError extends Error {
  /** Why the mutation was rolled back. */
  readonly reason: MutationFailure;
  /** The mutation's id. */
  readonly mutationId: string;
  constructor(reason: MutationFailure, mutationId: string, message: string) {
    super(message);
    this.name = 'MutationError';
    this.reason = reason;
    this.mutationId = mutationId;
  }
}

/** What went wrong with a model. */
export type ModelFailure = 'sync' | 'subscribe' | 'stream' | 'merge' | 'disposed';

/**
 * ModelError is a model's error (model.current.error, the listeners' first argument): 'sync' the
 * state endpoint failed repeatedly, 'subscribe' the channel could not be subscribed (e.g. no
 * permission), 'stream' an event could not be ordered (no valid position or xid tag), 'merge'
 * merge threw on a server event, 'disposed' the model was used after dispose().
 */
export class ModelError extends Error {
  /** What went wrong. */
  readonly reason: ModelFailure;
  constructor(reason: ModelFailure, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModelError';
    this.reason = reason;
  }
}
