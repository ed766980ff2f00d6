/** Memory figures of a child process from /proc/<pid>/status (Linux). */
import { readFileSync } from 'node:fs';

export interface ProcMemory {
  /** Peak resident set size since the process started (VmHWM), bytes. */
  readonly peakRss: number;
  /** Current resident set size (VmRSS), bytes. */
  readonly rss: number;
}

function field(status: string, name: string): number {
  const match = new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(status);
  return match ? Number(match[1]) * 1024 : Number.NaN;
}

export function readProcMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { peakRss: field(status, 'VmHWM'), rss: field(status, 'VmRSS') };
}

/**
 * Samples VmRSS every `intervalMs` (wall-clock stamped, to line samples up with the sidecar's own phase
 * timestamps) as a cross-check of VmHWM, which the kernel keeps exactly. Bounded: stops by itself after
 * `maxMs`.
 */
export function sampleRss(pid: number, intervalMs = 100, maxMs = 300_000): { stop(): { maxRss: number; samples: Array<{ at: number; rss: number }> } } {
  const samples: Array<{ at: number; rss: number }> = [];
  const started = Date.now();
  const timer = setInterval(() => {
    if (Date.now() - started > maxMs) {
      clearInterval(timer);
      return;
    }
    try {
      samples.push({ at: Date.now(), rss: readProcMemory(pid).rss });
    } catch {
      clearInterval(timer); // the process is gone
    }
  }, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      return { maxRss: samples.reduce((m, s) => Math.max(m, s.rss), 0), samples };
    },
  };
}

/** Highest sampled RSS between two wall-clock instants (NaN when no sample fell inside). */
export function maxRssBetween(samples: ReadonlyArray<{ at: number; rss: number }>, from: number, to: number): number {
  const inside = samples.filter((s) => s.at >= from && s.at <= to).map((s) => s.rss);
  return inside.length > 0 ? Math.max(...inside) : Number.NaN;
}
