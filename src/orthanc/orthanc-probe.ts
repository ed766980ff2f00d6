/**
 * Orthanc's reachability for /readyz, probed in the background (GET /system with its own short timeout)
 * so that /readyz answers at once from the last result, even while Orthanc hangs.
 */
import type { RecyclingSettings } from './client.js';

export interface ProbeCheck {
  readonly ok: boolean;
  readonly reason: string;
}

export interface OrthancProbeOptions {
  /** Pause between the end of one probe and the start of the next. */
  readonly everyMs: number;
  /** How long one probe may wait for Orthanc. */
  readonly timeoutMs: number;
  /** Called with every answer: what else /system says (recycling settings) is read from the same probe. */
  readonly onAnswer?: ((system: ProbedSystem) => void) | undefined;
}

export interface ProbedSystem {
  readonly version: string;
  /** Undefined when Orthanc does not show its recycling settings (1.10.1). */
  readonly recycling?: RecyclingSettings | undefined;
}

type Outcome = { readonly at: number; readonly ok: true; readonly version: string } | { readonly at: number; readonly ok: false; readonly error: string };

export class OrthancProbe {
  private last: Outcome | undefined;
  private lastSuccessAt: number | undefined;
  private startedAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly system: (timeoutMs: number) => Promise<ProbedSystem>,
    private readonly options: OrthancProbeOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** Probes now, then every everyMs after each probe ends (never two at once). */
  start(): void {
    const loop = async (): Promise<void> => {
      await this.probeOnce();
      if (!this.stopped) {
        this.timer = setTimeout(() => void loop(), this.options.everyMs);
        this.timer.unref();
      }
    };
    void loop();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  async probeOnce(): Promise<void> {
    this.startedAt = this.now();
    try {
      const system = await this.system(this.options.timeoutMs);
      this.last = { at: this.now(), ok: true, version: system.version };
      this.lastSuccessAt = this.last.at;
      this.options.onAnswer?.(system);
    } catch (error) {
      // "Orthanc GET /system: ECONNREFUSED" -> "ECONNREFUSED": the check's name says the rest.
      const message = error instanceof Error ? error.message : String(error);
      this.last = { at: this.now(), ok: false, error: message.replace(/^Orthanc GET \/system: /, '') };
    }
  }

  status(): ProbeCheck {
    const now = this.now();
    const ago = (at: number): string => `${Math.round((now - at) / 1000)} s ago`;
    const lastSuccess = this.lastSuccessAt === undefined ? 'never reached since start' : `last success ${ago(this.lastSuccessAt)}`;
    if (!this.last) return { ok: false, reason: `GET /system: first probe under way (${lastSuccess})` };
    // A probe that outlived its own timeout (it should not) must not leave an old "ok" standing.
    const stale = this.startedAt !== undefined && this.startedAt > this.last.at && now - this.startedAt > this.options.timeoutMs + 1000;
    if (stale) return { ok: false, reason: `GET /system: no answer for ${ago(this.startedAt!).replace(' ago', '')} (${lastSuccess})` };
    if (this.last.ok) return { ok: true, reason: `GET /system answered ${ago(this.last.at)} (Orthanc ${this.last.version})` };
    return { ok: false, reason: `GET /system: ${this.last.error} (${lastSuccess})` };
  }
}
