import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { UidIndex } from '../../src/orthanc/uid-index.js';

describe('UidIndex', () => {
  it('maps UIDs to Orthanc IDs, updates, forgets, and survives reopening', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stgcmt-index-'));
    const index = UidIndex.open(dir);
    const entries = Array.from({ length: 25_000 }, (_, i) => ({ sopInstanceUid: `1.2.${i}`, orthancId: `id-${i}` }));
    index.record(entries);
    index.record([{ sopInstanceUid: '1.2.5', orthancId: 'moved' }]);
    const found = index.find(['1.2.5', '1.2.24999', '9.9.9']);
    assert.deepEqual(found, new Map([['1.2.5', 'moved'], ['1.2.24999', 'id-24999']]));
    assert.equal(index.find(entries.map((e) => e.sopInstanceUid)).size, 25_000);
    index.forget(['1.2.5']);
    assert.equal(index.find(['1.2.5']).size, 0);
    index.setFeedPosition('http://orthanc:8042', 42);
    index.close();
    const again = UidIndex.open(dir);
    assert.equal(again.size, 24_999);
    assert.equal(again.feedPosition('http://orthanc:8042'), 42);
    assert.equal(again.feedPosition('http://other:8042'), undefined, 'another Orthanc starts over');
    again.close();
  });
});
