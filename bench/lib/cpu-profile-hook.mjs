// Preloaded into the sidecar with NODE_OPTIONS="--import <this file>" (Node 20 refuses --cpu-prof in
// NODE_OPTIONS, and the harness spawns the sidecar itself). Starts V8's sampling profiler through the
// in-process inspector and writes a .cpuprofile into BENCH_CPU_PROFILE_DIR when the process exits.
// Plain JavaScript: it runs before tsx is registered.
import { Session } from 'node:inspector';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.BENCH_CPU_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: Number(process.env.BENCH_CPU_PROFILE_INTERVAL_US ?? 1000) });
  session.post('Profiler.start');
  process.once('exit', () => {
    // The same-thread inspector session answers synchronously, so this completes inside 'exit'.
    session.post('Profiler.stop', (error, result) => {
      if (error || !result) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `sidecar-${process.pid}-${Date.now()}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
