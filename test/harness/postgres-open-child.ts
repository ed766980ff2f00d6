/**
 * A sidecar node's start against PostgreSQL, as a process of its own (the concurrent-start test runs
 * several): prints "ready", waits for a line on stdin, opens the repository (applying migrations), prints
 * the versions it applied as JSON, and exits.
 */
import { createInterface } from 'node:readline';
import { PostgresTransactionRepository } from '../../src/store/postgres/repository.js';

const [url, nodeId] = process.argv.slice(2);
if (!url || !nodeId) throw new Error('usage: postgres-open-child.ts URL NODE_ID');
const lines = createInterface({ input: process.stdin });
process.stdout.write('ready\n');
await new Promise<void>((resolve) => lines.once('line', () => resolve()));
lines.close();
const repo = await PostgresTransactionRepository.open({ url, nodeId });
await repo.close();
process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
