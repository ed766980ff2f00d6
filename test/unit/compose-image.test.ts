/**
 * The Orthanc image the compose stack runs by default must carry Orthanc 1.12.10 or later: before that
 * release, its notes say, `MaximumStorageCacheSize: 0` was silently taken as 128 MB, so the md5 policy could
 * read a cached copy of a file damaged on disk. The tag -> Orthanc version table comes from the image's
 * release notes (orthanc-server/orthanc-builder, release-notes-docker-images.md); a new tag goes in here
 * with its Orthanc version when the pin moves.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const ORTHANC_OF_IMAGE: ReadonlyMap<string, string> = new Map([
  ['24.12.0', '1.12.5'],
  ['25.11.3', '1.12.10'],
  ['26.4.0', '1.12.11'],
  ['26.4.1', '1.12.11'],
]);
const AT_LEAST = [1, 12, 10];

const atLeast = (version: string, minimum: readonly number[]): boolean => {
  const parts = version.split('.').map(Number);
  for (let i = 0; i < minimum.length; i++) {
    if ((parts[i] ?? 0) !== minimum[i]) return (parts[i] ?? 0) > minimum[i]!;
  }
  return true;
};

describe('the compose stack’s Orthanc image', () => {
  const tagOf = (file: string): string => {
    const compose = readFileSync(join(import.meta.dirname, '..', '..', file), 'utf8');
    const match = /image:\s*orthancteam\/orthanc:\$\{ORTHANC_IMAGE_TAG:-([^}]+)\}/.exec(compose);
    assert.ok(match, `${file} names orthancteam/orthanc:\${ORTHANC_IMAGE_TAG:-<tag>}`);
    return match[1]!;
  };

  it('the highly available stack runs the same Orthanc image', () => {
    assert.equal(tagOf('docker-compose.ha.yml'), tagOf('docker-compose.yml'));
  });

  it('defaults to an orthancteam/orthanc tag whose Orthanc is 1.12.10 or later', () => {
    const tag = tagOf('docker-compose.yml');
    const orthanc = ORTHANC_OF_IMAGE.get(tag);
    assert.ok(orthanc, `image tag ${tag}: add its Orthanc version (from the image's release notes) to this test`);
    assert.ok(atLeast(orthanc, AT_LEAST), `image tag ${tag} carries Orthanc ${orthanc}, older than ${AT_LEAST.join('.')}`);
  });

  it('compares versions numerically', () => {
    assert.ok(atLeast('1.12.10', AT_LEAST));
    assert.ok(atLeast('1.13.0', AT_LEAST));
    assert.ok(!atLeast('1.12.5', AT_LEAST));
    assert.ok(!atLeast('1.9.99', AT_LEAST));
  });
});
