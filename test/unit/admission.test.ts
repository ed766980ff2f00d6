import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Admission, EVICTABLE_AFTER_MS } from '../../src/dicom/admission.js';
import { BufferBudget } from '../../src/dicom/buffer-budget.js';

const limits = { maxConnections: 4, maxConnectionsPerHost: 2, maxAssociations: 3, maxAssociationsPerAe: 2 };

describe('Admission', () => {
  it('caps connections per host, whatever the global room', () => {
    const a = new Admission<number>(limits);
    assert.ok(a.connect(1, 'h1', 0).ok);
    assert.ok(a.connect(2, 'h1', 0).ok);
    assert.deepEqual(a.connect(3, 'h1', 0), { ok: false, why: 'host-limit' });
    assert.ok(a.connect(3, 'h2', 0).ok);
  });

  it('evicts the oldest socket without an association once it waited, else refuses at once', () => {
    const a = new Admission<number>({ ...limits, maxConnectionsPerHost: 4 });
    for (let id = 1; id <= 4; id++) assert.ok(a.connect(id, `h${id}`, 0).ok);
    assert.deepEqual(a.connect(5, 'h5', 10), { ok: false, why: 'connection-limit' }, 'nobody waited long enough yet');
    assert.ok(a.associate(1, 'CT').ok);
    assert.deepEqual(a.connect(5, 'h5', EVICTABLE_AFTER_MS), { ok: true, evict: 2 }, 'the oldest unassociated one goes');
    assert.equal(a.openConnections, 4);
  });

  it('caps associations globally and per AE title; closing frees both', () => {
    const a = new Admission<number>({ ...limits, maxConnectionsPerHost: 4 });
    for (let id = 1; id <= 4; id++) a.connect(id, `h${id}`, 0);
    assert.ok(a.associate(1, 'CT').ok);
    assert.ok(a.associate(2, 'CT').ok);
    assert.deepEqual(a.associate(3, 'CT'), { ok: false, why: 'ae-limit' });
    assert.ok(a.associate(3, 'MR').ok);
    assert.deepEqual(a.associate(4, 'US'), { ok: false, why: 'association-limit' });
    a.close(1);
    a.close(1);
    assert.equal(a.openAssociations, 2);
    assert.ok(a.associate(4, 'CT').ok);
  });
});

describe('BufferBudget', () => {
  it('lets each owner hold its free allowance, then stops the one that takes the total over the limit', async () => {
    const budget = new BufferBudget<string>(100, 10);
    assert.ok(budget.update('a', 10), 'within the free allowance');
    assert.ok(budget.update('b', 80));
    assert.ok(!budget.update('c', 50), 'c takes the charged total to 110');
    assert.ok(budget.mayRead('a'), 'a holds only its allowance');
    let resumed = false;
    const waiting = budget.waitForRoom('c').then(() => {
      resumed = true;
    });
    budget.update('b', 0);
    await waiting;
    assert.ok(resumed);
    assert.equal(budget.heldBytes, 60);
    budget.release('c');
    budget.release('a');
    assert.equal(budget.heldBytes, 0);
  });

  it('release wakes a paused owner so its connection can close', async () => {
    const budget = new BufferBudget<string>(10, 0);
    budget.update('a', 20);
    const waiting = budget.waitForRoom('a');
    budget.release('a');
    await waiting;
  });
});
