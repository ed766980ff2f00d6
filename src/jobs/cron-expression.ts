/** A node-cron expression (with seconds) that fires every `ms`, rounded to a whole period cron can say. */
export function everyInterval(ms: number): string {
  const seconds = Math.max(1, Math.round(ms / 1000));
  if (seconds < 60) return `*/${seconds} * * * * *`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `0 */${minutes} * * * *`;
  const hours = Math.min(23, Math.round(minutes / 60));
  return `0 0 */${hours} * * *`;
}
