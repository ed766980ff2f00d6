/** How both stores key a patient name for search (an index range, not a LIKE). */

/**
 * A patient name as searched: its alphabetic group (before the ideographic and phonetic ones after `=`),
 * upper case, DICOM's `^` separators as spaces, spaces collapsed.
 */
export function nameKey(name: string): string {
  return name.split('=')[0]!.replace(/\^+/g, ' ').replace(/\s+/g, ' ').trim().toUpperCase();
}
