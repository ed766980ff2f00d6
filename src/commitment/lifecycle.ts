/**
 * The life of a transaction, as dcm4chee-arc models storage commitment: an observable task with explicit
 * states. Every state but REPORTED and EXPIRED has work left, and is resumed after a restart.
 *
 * A pure transition function: an event in, the new state and the effects to carry out back. No I/O here,
 * so the stores (SQLite, PostgreSQL) and the service share one set of rules, and the rules are tested
 * state by state without a database.
 *
 *              verified              delivered
 *   RECEIVED ----------> VERIFIED ----------------> REPORTED
 *                         |    ^                      ^
 *         delivery-failed |    | request-repeated,    |
 *                         v    | redeliver-requested  | delivered
 *                    DELIVERY_RETRY ------------------'
 *                     |   ^    |
 *                     '---'    | lifetime-ended (also from VERIFIED)
 *           delivery-failed    v
 *                           EXPIRED
 *
 *   Back to VERIFIED, the report sent again: request-repeated from VERIFIED, DELIVERY_RETRY, REPORTED and
 *   EXPIRED; redeliver-requested from DELIVERY_RETRY, REPORTED and EXPIRED.
 *   Staying put: RECEIVED on request-repeated or redeliver-requested (verification is running, its report
 *   answers both); VERIFIED on redeliver-requested (already on its way, nothing to do) and on
 *   committed-instances-vanished (recount the verdict first). Every other (state, event) pair is refused.
 */
export const TransactionStates = ['RECEIVED', 'VERIFIED', 'DELIVERY_RETRY', 'REPORTED', 'EXPIRED'] as const;
export type TransactionState = (typeof TransactionStates)[number];

export const TransactionEventTypes = [
  'verified',
  'delivered',
  'delivery-failed',
  'lifetime-ended',
  'request-repeated',
  'redeliver-requested',
  'committed-instances-vanished',
] as const;
export type TransactionEventType = (typeof TransactionEventTypes)[number];

export type TransactionEvent =
  /** Verification finished: every instance has its outcome. */
  | { readonly type: 'verified' }
  /** The modality answered the N-EVENT-REPORT. */
  | { readonly type: 'delivered' }
  /** The N-EVENT-REPORT could not be delivered; try again at retryAt (ms since the epoch). */
  | { readonly type: 'delivery-failed'; readonly retryAt: number }
  /** The transaction outlived its lifetime without a delivered report. */
  | { readonly type: 'lifetime-ended' }
  /** The modality sent the same Transaction UID again. */
  | { readonly type: 'request-repeated' }
  /** An operator asked for the report to be sent again. */
  | { readonly type: 'redeliver-requested' }
  /** Committed instances were found gone while being protected, before the report went out. */
  | { readonly type: 'committed-instances-vanished' };

/** What the caller must do once the new state is stored. */
export type TransactionEffect =
  | { readonly type: 'deliver-report' }
  | { readonly type: 'release-claim' }
  | { readonly type: 'watch-committed-instances' }
  | { readonly type: 'schedule-retry'; readonly at: number }
  /** Log loudly: no report will go out any more, the modality must send its request again. */
  | { readonly type: 'log-resend-needed' }
  /** Count the outcomes again: a report must not claim "committed" for an instance known gone. */
  | { readonly type: 'recount-verdict' };

export interface Accepted {
  readonly ok: true;
  readonly state: TransactionState;
  readonly effects: readonly TransactionEffect[];
}

/** A move the rules do not allow; a value, not an exception (see transitionOrThrow). */
export interface Refused {
  readonly ok: false;
  readonly from: TransactionState;
  readonly event: TransactionEventType;
  readonly reason: string;
}

export type TransitionResult = Accepted | Refused;

type EventOf<T extends TransactionEventType> = Extract<TransactionEvent, { type: T }>;
interface Move<T extends TransactionEventType> {
  /** Static, so canTransition can read the table without an event in hand. */
  readonly to: TransactionState;
  readonly effects: (event: EventOf<T>) => readonly TransactionEffect[];
}
type Rules = {
  readonly [T in TransactionEventType]: {
    readonly moves: Partial<Record<TransactionState, Move<T>>>;
    /** Why the event is refused in the states it has no move for (none: accepted everywhere). */
    readonly refusal?: string;
  };
};

const none = (): readonly TransactionEffect[] => [];
const deliver = (): readonly TransactionEffect[] => [{ type: 'deliver-report' }];
const sendAgain = { to: 'VERIFIED', effects: deliver } as const;

/** The one source of truth: every accepted (state, event) pair; anything missing is refused. */
const rules: Rules = {
  verified: {
    moves: { RECEIVED: { to: 'VERIFIED', effects: deliver } },
    refusal: 'only a transaction being verified can finish its verification',
  },
  delivered: {
    moves: {
      VERIFIED: { to: 'REPORTED', effects: () => [{ type: 'release-claim' }, { type: 'watch-committed-instances' }] },
      DELIVERY_RETRY: { to: 'REPORTED', effects: () => [{ type: 'release-claim' }, { type: 'watch-committed-instances' }] },
    },
    refusal: 'no report was on its way',
  },
  'delivery-failed': {
    moves: {
      VERIFIED: { to: 'DELIVERY_RETRY', effects: (e) => [{ type: 'schedule-retry', at: e.retryAt }] },
      DELIVERY_RETRY: { to: 'DELIVERY_RETRY', effects: (e) => [{ type: 'schedule-retry', at: e.retryAt }] },
    },
    refusal: 'no report was on its way',
  },
  'lifetime-ended': {
    moves: {
      VERIFIED: { to: 'EXPIRED', effects: () => [{ type: 'log-resend-needed' }] },
      DELIVERY_RETRY: { to: 'EXPIRED', effects: () => [{ type: 'log-resend-needed' }] },
    },
    // RECEIVED has its own deadlines (arrival, verification); REPORTED and EXPIRED are done.
    refusal: 'only an undelivered report expires',
  },
  'request-repeated': {
    moves: {
      // Verification is running; its report will answer the repeat too.
      RECEIVED: { to: 'RECEIVED', effects: none },
      VERIFIED: sendAgain,
      DELIVERY_RETRY: sendAgain,
      REPORTED: sendAgain,
      EXPIRED: sendAgain,
    },
  },
  'redeliver-requested': {
    moves: {
      // Already on its way: not an error, nothing to do.
      RECEIVED: { to: 'RECEIVED', effects: none },
      VERIFIED: { to: 'VERIFIED', effects: none },
      DELIVERY_RETRY: sendAgain,
      REPORTED: sendAgain,
      EXPIRED: sendAgain,
    },
  },
  'committed-instances-vanished': {
    moves: { VERIFIED: { to: 'VERIFIED', effects: () => [{ type: 'recount-verdict' }] } },
    // Protection happens only before the report; afterwards the committed-instance watch records losses.
    refusal: 'instances are protected only while the report is about to go out',
  },
};

/** The state after `event` in `state`, and what to do about it; a refusal when the rules forbid it. */
export function transition(state: TransactionState, event: TransactionEvent): TransitionResult {
  const rule = rules[event.type];
  // The move is the one for event.type; TypeScript cannot correlate the two unions on its own.
  const move = rule.moves[state] as Move<TransactionEventType> | undefined;
  if (!move) return { ok: false, from: state, event: event.type, reason: `${event.type} in ${state}: ${rule.refusal ?? 'not allowed'}` };
  return { ok: true, state: move.to, effects: move.effects(event) };
}

/** A forbidden move: callers that hold it for a bug (or a race lost) throw it. */
export class IllegalTransitionError extends Error {}

/** transition() for callers to whom a refusal is a bug: throws IllegalTransitionError instead. */
export function transitionOrThrow(state: TransactionState, event: TransactionEvent): Accepted {
  const result = transition(state, event);
  if (!result.ok) throw new IllegalTransitionError(result.reason);
  return result;
}

/** The states in which `type` is accepted (for a store that selects rows the event may move). */
export function statesAccepting(type: TransactionEventType): TransactionState[] {
  return TransactionStates.filter((state) => rules[type].moves[state] !== undefined);
}

/** Whether some event moves a transaction from `from` to `to` (read off the same rules). */
export function canTransition(from: TransactionState, to: TransactionState): boolean {
  return TransactionEventTypes.some((type) => rules[type].moves[from]?.to === to);
}

/** States with no work left: nothing claims them, and only a repeat or an operator reopens them. */
export const FINAL_STATES = ['REPORTED', 'EXPIRED'] as const satisfies readonly TransactionState[];

export function isFinal(state: TransactionState): boolean {
  return (FINAL_STATES as readonly TransactionState[]).includes(state);
}

/** What the work predicates need of a transaction (a TransactionRecord fits). */
export interface WorkCandidate {
  readonly state: TransactionState;
  readonly nextAttemptAt: number | null;
}

/** `verify` work: a transaction not yet verified. */
export function isVerifyWork(t: WorkCandidate, _now: number): boolean {
  return t.state === 'RECEIVED';
}

/** `deliver` work: a report not yet sent, or one whose retry is due (due at nextAttemptAt itself). */
export function isDeliverWork(t: WorkCandidate, now: number): boolean {
  return t.state === 'VERIFIED' || (t.state === 'DELIVERY_RETRY' && t.nextAttemptAt !== null && t.nextAttemptAt <= now);
}

/** The predicates by work kind (the repositories' WorkKind), so a claim can look one up by its kind. */
export const hasWork: { readonly verify: typeof isVerifyWork; readonly deliver: typeof isDeliverWork } = {
  verify: isVerifyWork,
  deliver: isDeliverWork,
};
