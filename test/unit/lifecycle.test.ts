import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  canTransition,
  FINAL_STATES,
  hasWork,
  IllegalTransitionError,
  isDeliverWork,
  isFinal,
  isVerifyWork,
  transition,
  TransactionEventTypes,
  TransactionStates,
  transitionOrThrow,
  type TransactionEffect,
  type TransactionEvent,
  type TransactionEventType,
  type TransactionState,
} from '../../src/commitment/lifecycle.js';
import { IllegalTransitionError as StoreIllegalTransitionError } from '../../src/store/transaction-store.js';

// Written out here, not read from the module: a state or event added there must be added here too.
const STATES = ['RECEIVED', 'VERIFIED', 'DELIVERY_RETRY', 'REPORTED', 'EXPIRED'] as const satisfies readonly TransactionState[];
const RETRY_AT = 1_700_000_123_456;
const EVENTS: Record<TransactionEventType, TransactionEvent> = {
  verified: { type: 'verified' },
  delivered: { type: 'delivered' },
  'delivery-failed': { type: 'delivery-failed', retryAt: RETRY_AT },
  'lifetime-ended': { type: 'lifetime-ended' },
  'request-repeated': { type: 'request-repeated' },
  'redeliver-requested': { type: 'redeliver-requested' },
  'committed-instances-vanished': { type: 'committed-instances-vanished' },
};

type Expected = 'refused' | { state: TransactionState; effects: TransactionEffect[] };
const deliver: TransactionEffect = { type: 'deliver-report' };
const reported: TransactionEffect[] = [{ type: 'release-claim' }, { type: 'watch-committed-instances' }];
const retry: TransactionEffect[] = [{ type: 'schedule-retry', at: RETRY_AT }];
const expired: TransactionEffect[] = [{ type: 'log-resend-needed' }];

/** The documented result of every (state, event) pair. */
const EXPECTED: Record<TransactionState, Record<TransactionEventType, Expected>> = {
  RECEIVED: {
    verified: { state: 'VERIFIED', effects: [deliver] },
    delivered: 'refused',
    'delivery-failed': 'refused',
    'lifetime-ended': 'refused',
    'request-repeated': { state: 'RECEIVED', effects: [] },
    'redeliver-requested': { state: 'RECEIVED', effects: [] },
    'committed-instances-vanished': 'refused',
  },
  VERIFIED: {
    verified: 'refused',
    delivered: { state: 'REPORTED', effects: reported },
    'delivery-failed': { state: 'DELIVERY_RETRY', effects: retry },
    'lifetime-ended': { state: 'EXPIRED', effects: expired },
    'request-repeated': { state: 'VERIFIED', effects: [deliver] },
    'redeliver-requested': { state: 'VERIFIED', effects: [] },
    'committed-instances-vanished': { state: 'VERIFIED', effects: [{ type: 'recount-verdict' }] },
  },
  DELIVERY_RETRY: {
    verified: 'refused',
    delivered: { state: 'REPORTED', effects: reported },
    'delivery-failed': { state: 'DELIVERY_RETRY', effects: retry },
    'lifetime-ended': { state: 'EXPIRED', effects: expired },
    'request-repeated': { state: 'VERIFIED', effects: [deliver] },
    'redeliver-requested': { state: 'VERIFIED', effects: [deliver] },
    'committed-instances-vanished': 'refused',
  },
  REPORTED: {
    verified: 'refused',
    delivered: 'refused',
    'delivery-failed': 'refused',
    'lifetime-ended': 'refused',
    'request-repeated': { state: 'VERIFIED', effects: [deliver] },
    'redeliver-requested': { state: 'VERIFIED', effects: [deliver] },
    'committed-instances-vanished': 'refused',
  },
  EXPIRED: {
    verified: 'refused',
    delivered: 'refused',
    'delivery-failed': 'refused',
    'lifetime-ended': 'refused',
    'request-repeated': { state: 'VERIFIED', effects: [deliver] },
    'redeliver-requested': { state: 'VERIFIED', effects: [deliver] },
    'committed-instances-vanished': 'refused',
  },
};

const cases = STATES.flatMap((state) => TransactionEventTypes.map((type) => ({ state, type, expected: EXPECTED[state][type] })));

describe('lifecycle', () => {
  it('knows exactly the states and events this test enumerates', () => {
    assert.deepEqual([...TransactionStates], [...STATES]);
    assert.deepEqual([...TransactionEventTypes].sort(), Object.keys(EVENTS).sort());
    assert.equal(cases.length, 35);
  });

  describe('transition: every (state, event) pair', () => {
    for (const { state, type, expected } of cases) {
      it(`${state} + ${type} -> ${expected === 'refused' ? 'refused' : expected.state}`, () => {
        const result = transition(state, EVENTS[type]);
        if (expected === 'refused') {
          assert.equal(result.ok, false);
          if (result.ok) return;
          assert.equal(result.from, state);
          assert.equal(result.event, type);
          assert.match(result.reason, new RegExp(`^${type} in ${state}: `));
          assert.throws(() => transitionOrThrow(state, EVENTS[type]), (error: unknown) => error instanceof IllegalTransitionError && error.message === result.reason);
        } else {
          assert.deepEqual(result, { ok: true, state: expected.state, effects: expected.effects });
          assert.deepEqual(transitionOrThrow(state, EVENTS[type]), result);
        }
      });
    }
  });

  it('schedules the retry at the time the event gives', () => {
    assert.deepEqual(transition('VERIFIED', { type: 'delivery-failed', retryAt: 42 }), { ok: true, state: 'DELIVERY_RETRY', effects: [{ type: 'schedule-retry', at: 42 }] });
  });

  it('hands out effects a caller may not corrupt for the next one', () => {
    const first = transition('VERIFIED', EVENTS.delivered);
    assert.ok(first.ok);
    (first.effects as TransactionEffect[]).length = 0;
    assert.deepEqual(transition('VERIFIED', EVENTS.delivered), { ok: true, state: 'REPORTED', effects: reported });
  });

  it('canTransition: the moves some event makes, and only those', () => {
    // Rows: from; columns: to, in STATES order.
    const allowed: Record<TransactionState, [boolean, boolean, boolean, boolean, boolean]> = {
      //              RECEIVED VERIFIED DELIVERY_RETRY REPORTED EXPIRED
      RECEIVED: /*   */ [true, true, false, false, false],
      VERIFIED: /*   */ [false, true, true, true, true],
      DELIVERY_RETRY: [false, true, true, true, true],
      REPORTED: /*   */ [false, true, false, false, false],
      EXPIRED: /*    */ [false, true, false, false, false],
    };
    for (const from of STATES) {
      STATES.forEach((to, column) => assert.equal(canTransition(from, to), allowed[from][column], `${from} -> ${to}`));
    }
  });

  it('final states: REPORTED and EXPIRED', () => {
    assert.deepEqual([...FINAL_STATES], ['REPORTED', 'EXPIRED']);
    const final: Record<TransactionState, boolean> = { RECEIVED: false, VERIFIED: false, DELIVERY_RETRY: false, REPORTED: true, EXPIRED: true };
    for (const state of STATES) assert.equal(isFinal(state), final[state], state);
  });

  it('work to claim: verify = RECEIVED; deliver = VERIFIED, or DELIVERY_RETRY once its retry is due', () => {
    const now = 10_000;
    // [nextAttemptAt, verify, deliver] per state.
    const table: Record<TransactionState, Array<[number | null, boolean, boolean]>> = {
      RECEIVED: [[null, true, false], [now, true, false]],
      VERIFIED: [[null, false, true], [now + 1, false, true]],
      DELIVERY_RETRY: [[null, false, false], [now - 1, false, true], [now, false, true], [now + 1, false, false]],
      REPORTED: [[null, false, false], [now, false, false]],
      EXPIRED: [[null, false, false], [now, false, false]],
    };
    for (const state of STATES) {
      for (const [nextAttemptAt, verify, deliverWork] of table[state]) {
        const t = { state, nextAttemptAt };
        assert.equal(isVerifyWork(t, now), verify, `verify ${state} ${nextAttemptAt}`);
        assert.equal(isDeliverWork(t, now), deliverWork, `deliver ${state} ${nextAttemptAt}`);
        assert.equal(hasWork.verify(t, now), verify);
        assert.equal(hasWork.deliver(t, now), deliverWork);
      }
    }
  });

  it('the store throws the same IllegalTransitionError', () => {
    assert.equal(StoreIllegalTransitionError, IllegalTransitionError);
  });
});
