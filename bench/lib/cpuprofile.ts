/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by module, optionally only for
 * samples inside a time window. V8's profile clock and process.hrtime are both CLOCK_MONOTONIC on Linux,
 * so a window taken with hrtime in another process on the same machine selects the right samples.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface HotSpot {
  readonly name: string;
  readonly location: string;
  readonly selfMs: number;
  readonly selfPct: number;
  /** Time with this function anywhere on the stack (each sample counted once). */
  readonly totalMs: number;
  readonly totalPct: number;
  /** The most frequent callers (3 frames up) of the samples counted in selfMs. */
  readonly via: string;
}

export interface ModuleShare {
  readonly module: string;
  readonly selfMs: number;
  readonly selfPct: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly windowMs: number;
  /** Sampled time in the window that was not idle. */
  readonly busyMs: number;
  readonly idleMs: number;
  readonly gcMs: number;
  readonly programMs: number;
  readonly top: HotSpot[];
  readonly modules: ModuleShare[];
}

/** Microseconds on the monotonic clock, comparable with a profile's timestamps. */
export function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function shortUrl(url: string, root: string): string {
  if (!url) return '';
  const path = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  if (path.startsWith('node:')) return path;
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) return `node_modules/${path.slice(nm + '/node_modules/'.length)}`;
  return path.startsWith('/') ? relative(root, path) : path;
}

function moduleOf(location: string): string {
  if (location === '') return '(native/VM)';
  if (location.startsWith('node:')) return 'node: internals';
  if (location.startsWith('node_modules/')) {
    const parts = location.slice('node_modules/'.length).split('/');
    return `node_modules/${parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]}`;
  }
  return location.replace(/:\d+$/, '');
}

export function summariseProfile(file: string, root: string, window?: { fromUs: number; toUs: number }, topN = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const keyOf = new Map<number, { key: string; name: string; location: string }>();
  for (const node of profile.nodes) {
    const cf = node.callFrame;
    const url = shortUrl(cf.url, root);
    // tsx compiles .ts files on the fly and V8 reports positions in its output: for those, the file only.
    const location = url ? (url.endsWith('.ts') ? url : `${url}:${cf.lineNumber + 1}`) : '';
    const name = cf.functionName || '(anonymous)';
    keyOf.set(node.id, { key: `${name}\u0000${location}`, name, location });
  }

  const self = new Map<string, number>();
  const callers = new Map<string, Map<string, number>>();
  const total = new Map<string, number>();
  const modules = new Map<string, number>();
  let idle = 0;
  let gc = 0;
  let program = 0;
  let busy = 0;
  let t = profile.startTime;
  const from = window?.fromUs ?? -Infinity;
  const to = window?.toUs ?? Infinity;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    // A sample stands for the interval up to the next one.
    const duration = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    if (t < from || t > to || duration <= 0) continue;
    const id = profile.samples[i]!;
    const info = keyOf.get(id)!;
    if (info.name === '(idle)') {
      idle += duration;
      continue;
    }
    busy += duration;
    if (info.name === '(garbage collector)') gc += duration;
    if (info.name === '(program)') program += duration;
    self.set(info.key, (self.get(info.key) ?? 0) + duration);
    const chain: string[] = [];
    for (let node = parent.get(id); node !== undefined && chain.length < 3; node = parent.get(node)) {
      const name = keyOf.get(node)!.name;
      if (name !== '(root)') chain.push(name);
    }
    const perKey = callers.get(info.key) ?? new Map<string, number>();
    perKey.set(chain.join(' < '), (perKey.get(chain.join(' < ')) ?? 0) + duration);
    callers.set(info.key, perKey);
    // VM pseudo-frames ((garbage collector), (program)) have no location; (anonymous) functions do.
    const mod = info.location === '' && info.name.startsWith('(') ? info.name : moduleOf(info.location);
    modules.set(mod, (modules.get(mod) ?? 0) + duration);
    const seen = new Set<string>();
    for (let node: number | undefined = id; node !== undefined; node = parent.get(node)) {
      const k = keyOf.get(node)!.key;
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + duration);
    }
  }
  const pct = (ms: number): number => (busy > 0 ? Math.round((ms / busy) * 1000) / 10 : 0);
  const top = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, topN)
    .map(([key, ms]) => {
      const [name, location] = key.split('\u0000') as [string, string];
      const totalMs = total.get(key) ?? ms;
      const via = [...(callers.get(key) ?? new Map<string, number>()).entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
      return { name, location, selfMs: Math.round(ms), selfPct: pct(ms), totalMs: Math.round(totalMs), totalPct: pct(totalMs), via };
    });
  const moduleShares = [...modules.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([module, ms]) => ({ module, selfMs: Math.round(ms), selfPct: pct(ms) }));
  const windowMs = window ? (window.toUs - window.fromUs) / 1000 : (profile.endTime - profile.startTime) / 1000;
  return { file, windowMs: Math.round(windowMs), busyMs: Math.round(busy), idleMs: Math.round(idle), gcMs: Math.round(gc), programMs: Math.round(program), top, modules: moduleShares };
}

/** Text block: the top functions by self time, then the modules. */
export function formatSummary(summary: ProfileSummary): string {
  const lines = [
    `  window ${summary.windowMs} ms, busy ${summary.busyMs} ms (GC ${summary.gcMs} ms, program ${summary.programMs} ms), idle ${summary.idleMs} ms`,
    '  self%  self ms  total%  function  (location)  < callers',
  ];
  for (const h of summary.top) {
    lines.push(`  ${h.selfPct.toFixed(1).padStart(5)}  ${String(h.selfMs).padStart(7)}  ${h.totalPct.toFixed(1).padStart(6)}  ${h.name}  (${h.location || 'native'})${h.via ? `  < ${h.via}` : ''}`);
  }
  lines.push('  by module (self):');
  for (const m of summary.modules) lines.push(`  ${m.selfPct.toFixed(1).padStart(5)}  ${String(m.selfMs).padStart(7)}  ${m.module}`);
  return lines.join('\n');
}
