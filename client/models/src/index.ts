// @pgoutbox/models: a channel of pgoutbox events as a live model — bootstrapped exactly, merged
// event by event, with optimistic updates confirmed or rolled back by the server's events.

export { ModelsClient, type ModelsClientOptions, type Models, type EventTargetLike } from './client.js';
export {
  Model,
  CONTROL_TAG,
  CONTROL_RESYNC,
  type Status,
  type Bootstrap,
  type SyncResult,
  type ServerEvent,
  type OptimisticEvent,
  type ModelEvent,
  type Mutation,
  type CommitResult,
  type OptimisticOptions,
  type ModelOptions,
  type Listener,
  type ModelView,
  type ModelHost,
} from './model.js';
export { MutationError, ModelError, type MutationFailure, type ModelFailure } from './errors.js';
export {
  BadTokenError,
  Snapshot,
  Cursors,
  parsePosition,
  formatPosition,
  comparePositions,
  parseXid,
  decide,
  rebase,
  type Position,
  type Decision,
} from './rules.js';
export {
  centrifugeTransport,
  type Transport,
  type ChannelLink,
  type ChannelHandlers,
  type Publication,
  type StreamPosition,
  type WebSocketConstructor,
  type CentrifugeTransportOptions,
} from './transport.js';
