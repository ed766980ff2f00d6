/**
 * Retry delay for report delivery: exponential from `initialMs`, capped at `maxMs`, with ±20 % jitter so
 * that many reports to one modality that comes back online do not all retry in the same second.
 */
export function retryDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const exponential = initialMs * 2 ** Math.max(0, Math.min(attempt - 1, 30));
  const capped = Math.min(maxMs, exponential);
  return Math.round(capped * (0.8 + 0.4 * random()));
}
