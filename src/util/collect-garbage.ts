/**
 * A full garbage collection on request, for the few places that just dropped a large amount of memory
 * (the references of a 200,000-instance transaction). V8 otherwise lets its heap grow by a hundred MB or
 * more between full collections, and with several large transactions in a row that growth, not what is
 * alive, is what pushes the process past its memory budget. Measured cost: a few ms per call.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Instances handled between two requested collections. */
export const COLLECT_EVERY_INSTANCES = 50_000;

export function collectGarbage(): void {
  gc();
}
