/**
 * Whether Orthanc may delete what we report committed on its own: recycling (MaximumStorageSize,
 * MaximumPatientCount with MaximumStorageMode Recycle) removes the oldest unprotected patients. Without
 * STGCMT_PROTECT the commitment is then weaker than PS3.4 J.3.3.1.2 asks (Level 2: kept). Pure.
 */
import type { RecyclingSettings } from './client.js';

export interface CommitmentStrength {
  /** Our STGCMT_PROTECT. */
  readonly protect: boolean;
  /** 'unknown': Orthanc does not show enough of its settings to tell (1.10.1 shows none; 1.12.4+ all). */
  readonly orthancRecycling: 'on' | 'off' | 'unknown';
  readonly settings?: RecyclingSettings | undefined;
  /** For the operator: why the commitment may not hold; undefined when it does. */
  readonly warning?: string | undefined;
  /** 'error' when Orthanc is known to recycle unprotected patients. */
  readonly severity?: 'warn' | 'error' | undefined;
}

/** true, false, or undefined when Orthanc does not show enough to tell (MaximumPatientCount before 1.12.4). */
export function recyclingOn(settings: RecyclingSettings): boolean | undefined {
  // In Reject mode a full Orthanc refuses new instances instead of deleting old ones.
  if (settings.maximumStorageMode === 'Reject') return false;
  if (settings.maximumStorageSize > 0 || (settings.maximumPatientCount ?? 0) > 0) return true;
  return settings.maximumPatientCount === undefined ? undefined : false;
}

export function assessCommitment(protect: boolean, settings: RecyclingSettings | undefined, orthancVersion: string): CommitmentStrength {
  if (!settings) {
    return {
      protect,
      orthancRecycling: 'unknown',
      ...(protect
        ? {}
        : {
            severity: 'warn' as const,
            warning: `Orthanc ${orthancVersion} does not show its recycling settings: if its MaximumStorageSize or MaximumPatientCount is above 0, it may delete instances we reported committed (weaker than PS3.4 J.3.3.1.2); keep both at 0, or set STGCMT_PROTECT=true`,
          }),
    };
  }
  const on = recyclingOn(settings);
  const strength = { protect, orthancRecycling: on === undefined ? ('unknown' as const) : on ? ('on' as const) : ('off' as const), settings };
  if (on === false || protect) return strength;
  if (on === undefined) {
    return {
      ...strength,
      severity: 'warn',
      warning: `Orthanc ${orthancVersion} shows MaximumStorageSize ${settings.maximumStorageSize} but not MaximumPatientCount (shown from 1.12.4): if that is above 0, it may delete instances we reported committed (weaker than PS3.4 J.3.3.1.2); keep it at 0, or set STGCMT_PROTECT=true`,
    };
  }
  return {
    ...strength,
    severity: 'error',
    warning: `Orthanc recycles (MaximumStorageSize ${settings.maximumStorageSize} MB, MaximumPatientCount ${settings.maximumPatientCount ?? 'not shown'}, mode ${settings.maximumStorageMode}) and STGCMT_PROTECT is off: instances we report committed may be deleted to make room, so the commitment is weaker than PS3.4 J.3.3.1.2 requires; set STGCMT_PROTECT=true`,
  };
}
