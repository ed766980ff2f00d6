/**
 * Which SOP Classes a storage commitment can be about. PS3.4 J.3.3.1.2 gives Failure Reason 0122H
 * (Referenced SOP Class not supported) for a class the SCP does not store. A DICOM-defined class
 * (root 1.2.840.10008) is either a Storage SOP Class (PS3.4 Annex B: the 1.2.840.10008.5.1.4.1.1 branch and
 * a few classes elsewhere) or something that is never stored, such as Verification or Storage Commitment
 * itself. A class outside that root is private or made up: Orthanc stores it only if configured to
 * (UnknownSopClassAccepted), so it is supported exactly when Orthanc holds the instance under it.
 */

/** Storage SOP Classes outside the 1.2.840.10008.5.1.4.1.1 branch (PS3.4 Annex B, PS3.6 Annex A). */
const STORAGE_CLASSES_ELSEWHERE = new Set([
  '1.2.840.10008.5.1.4.38.1', // Hanging Protocol Storage
  '1.2.840.10008.5.1.4.39.1', // Color Palette Storage
  '1.2.840.10008.5.1.4.43.1', // Generic Implant Template Storage
  '1.2.840.10008.5.1.4.44.1', // Implant Assembly Template Storage
  '1.2.840.10008.5.1.4.45.1', // Implant Template Group Storage
  '1.2.840.10008.5.1.4.34.7', // RT Beams Delivery Instruction Storage
  '1.2.840.10008.5.1.4.34.10', // RT Brachy Application Setup Delivery Instruction Storage
  '1.2.840.10008.5.1.1.27', // Stored Print Storage (retired)
  '1.2.840.10008.5.1.1.29', // Hardcopy Grayscale Image Storage (retired)
  '1.2.840.10008.5.1.1.30', // Hardcopy Color Image Storage (retired)
]);

const STORAGE_BRANCH = '1.2.840.10008.5.1.4.1.1.';
const DICOM_ROOT = '1.2.840.10008.';

/**
 * - 'storage': a DICOM Storage SOP Class: judged by what Orthanc holds.
 * - 'never-stored': a DICOM class that no archive stores (0122H at once).
 * - 'private': outside the DICOM root: supported only if Orthanc holds the instance under exactly it.
 */
export type SopClassSupport = 'storage' | 'never-stored' | 'private';

export function sopClassSupport(sopClassUid: string): SopClassSupport {
  if (!sopClassUid.startsWith(DICOM_ROOT)) return 'private';
  if (sopClassUid.startsWith(STORAGE_BRANCH) || STORAGE_CLASSES_ELSEWHERE.has(sopClassUid)) return 'storage';
  return 'never-stored';
}
