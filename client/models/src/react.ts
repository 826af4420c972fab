// @pgoutbox/models/react: a model as React state.

import { useCallback, useSyncExternalStore } from 'react';
import type { Model, ModelView } from './model.js';

/**
 * useModel follows model while the component is mounted (it counts as one of the model's
 * listeners) and returns its current view: { data, confirmedData, pending, status, error },
 * re-rendering after every change. Built on useSyncExternalStore.
 */
export function useModel<S, D = unknown>(model: Model<S, D>): ModelView<S, D> {
  const subscribe = useCallback((onChange: () => void) => model.watch(onChange), [model]);
  const get = useCallback(() => model.current, [model]);
  return useSyncExternalStore(subscribe, get, get);
}
