/**
 * Shares one string per distinct value among many equal ones. A 100,000-instance transaction typically
 * names a handful of SOP Classes; reading each occurrence as its own string costs megabytes for nothing.
 */
export class Interner {
  private readonly values = new Map<string, string>();

  /** @param capacity beyond this many distinct values, strings are returned as they are */
  constructor(private readonly capacity = 1024) {}

  intern(value: string): string {
    const known = this.values.get(value);
    if (known !== undefined) return known;
    if (this.values.size < this.capacity) this.values.set(value, value);
    return value;
  }
}
