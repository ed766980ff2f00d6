/**
 * Retry delay for report delivery: exponential from `initialMs`, capped at `maxMs`, with ±20 % jitter so
 * that many reports to one modality that comes back online do not all retry in the same second.
 */
export function retryDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const exponential = initialMs * 2 ** Math.max(0, Math.min(attempt - 1, 30));
  const capped = Math.min(maxMs, exponential);
  return Math.round(capped * (0.8 + 0.4 * random()));
}

/**
 * Retry delay after a configuration failure (a refused role or context, an AE title the modality does not
 * know): constant, since it is a setting someone must change, not an outage that ends by itself, with the
 * same ±20 % jitter.
 */
export function configurationRetryDelay(intervalMs: number, random: () => number = Math.random): number {
  return Math.round(intervalMs * (0.8 + 0.4 * random()));
}
