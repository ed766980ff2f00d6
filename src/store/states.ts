/**
 * The life of a transaction, as dcm4chee-arc models storage commitment: an observable task with explicit
 * states. Every state but REPORTED and EXPIRED has work left, and is resumed after a restart.
 *
 *   RECEIVED --verdict--> VERIFIED --report answered--> REPORTED
 *                            |  ^                          |
 *                 delivery   v  | retry due / redeliver    | modality re-sent the request,
 *                 failed  DELIVERY_RETRY --ttl--> EXPIRED  | or an operator asked: send again
 *                            ^-------------------------------+
 */
export const TransactionStates = ['RECEIVED', 'VERIFIED', 'DELIVERY_RETRY', 'REPORTED', 'EXPIRED'] as const;
export type TransactionState = (typeof TransactionStates)[number];

const allowed: Record<TransactionState, readonly TransactionState[]> = {
  RECEIVED: ['VERIFIED'],
  VERIFIED: ['REPORTED', 'DELIVERY_RETRY', 'EXPIRED'],
  DELIVERY_RETRY: ['REPORTED', 'DELIVERY_RETRY', 'VERIFIED', 'EXPIRED'],
  REPORTED: ['VERIFIED'],
  EXPIRED: ['VERIFIED'],
};

export function canTransition(from: TransactionState, to: TransactionState): boolean {
  return allowed[from].includes(to);
}
