/**
 * Indexed binary min-heaps for the memory store (broker thread only): the
 * store's orders that are not creation order (expiry deadlines, last-seen
 * times, clients by how many sessions they hold) without scanning the table.
 * "Indexed": every entry knows its position, so changing or removing any entry
 * is O(log n), and an entry is never duplicated; a heap never holds more
 * entries than it has room for, fixed at construction (slots) or bounded by
 * what its owner inserts (items).
 */

/**
 * Slots ordered by a number key, ties by slot index (so the order is total and
 * matches a scan in index order that keeps the first of equal keys). Room for
 * `capacity` slots, preallocated: 20 bytes per slot.
 */
export class SlotHeap {
  /** heap[i]: the slot at position i. */
  readonly #heap: Int32Array;
  /** pos[slot]: its position in #heap, or -1 when absent. */
  readonly #pos: Int32Array;
  readonly #key: Float64Array;
  #size = 0;

  constructor(capacity: number) {
    this.#heap = new Int32Array(capacity);
    this.#pos = new Int32Array(capacity).fill(-1);
    this.#key = new Float64Array(capacity);
  }

  get size(): number {
    return this.#size;
  }

  has(slot: number): boolean {
    return (this.#pos[slot] ?? -1) >= 0;
  }

  /** The slot's key (meaningful only while it is in the heap). */
  key(slot: number): number {
    return this.#key[slot] ?? Number.NaN;
  }

  /** The slot with the least key, or -1 when empty. O(1). */
  peek(): number {
    return this.#size > 0 ? (this.#heap[0] ?? -1) : -1;
  }

  /** Inserts the slot with `key`, or moves it to `key` if present. O(log n). */
  set(slot: number, key: number): void {
    const at = this.#pos[slot] ?? -1;
    this.#key[slot] = key;
    if (at < 0) {
      const i = this.#size++;
      this.#heap[i] = slot;
      this.#pos[slot] = i;
      this.#up(i);
      return;
    }
    this.#up(at);
    this.#down(this.#pos[slot] ?? at);
  }

  /** Removes the slot if present. O(log n). */
  delete(slot: number): void {
    const at = this.#pos[slot] ?? -1;
    if (at < 0) return;
    this.#pos[slot] = -1;
    const last = --this.#size;
    if (at === last) return;
    const moved = this.#heap[last] ?? -1;
    this.#heap[at] = moved;
    this.#pos[moved] = at;
    this.#up(at);
    this.#down(this.#pos[moved] ?? at);
  }

  /** Removes and returns the slot with the least key, or -1 when empty. O(log n). */
  pop(): number {
    const top = this.peek();
    if (top >= 0) this.delete(top);
    return top;
  }

  #less(a: number, b: number): boolean {
    const ka = this.#key[a] ?? 0;
    const kb = this.#key[b] ?? 0;
    return ka < kb || (ka === kb && a < b);
  }

  #swap(i: number, j: number): void {
    const a = this.#heap[i] ?? -1;
    const b = this.#heap[j] ?? -1;
    this.#heap[i] = b;
    this.#heap[j] = a;
    this.#pos[b] = i;
    this.#pos[a] = j;
  }

  #up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(this.#heap[i] ?? -1, this.#heap[parent] ?? -1)) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #down(i: number): void {
    for (;;) {
      const left = 2 * i + 1;
      if (left >= this.#size) return;
      const right = left + 1;
      let child = left;
      if (right < this.#size && this.#less(this.#heap[right] ?? -1, this.#heap[left] ?? -1)) child = right;
      if (!this.#less(this.#heap[child] ?? -1, this.#heap[i] ?? -1)) return;
      this.#swap(i, child);
      i = child;
    }
  }
}

/** What an item of an {@link ItemHeap} carries: its position, kept by the heap (-1 when absent). */
export interface HeapItem {
  heapIndex: number;
}

/**
 * Objects ordered by `less` (which must be a strict total order), each
 * carrying its own position. Holds exactly the items inserted and not removed.
 * After an item's ordering fields change, `update` restores the order.
 */
export class ItemHeap<T extends HeapItem> {
  readonly #items: T[] = [];
  readonly #less: (a: T, b: T) => boolean;

  constructor(less: (a: T, b: T) => boolean) {
    this.#less = less;
  }

  get size(): number {
    return this.#items.length;
  }

  peek(): T | undefined {
    return this.#items[0];
  }

  has(item: T): boolean {
    return item.heapIndex >= 0 && this.#items[item.heapIndex] === item;
  }

  /** Inserts the item, or restores its place if present (after its fields changed). O(log n). */
  update(item: T): void {
    if (!this.has(item)) {
      item.heapIndex = this.#items.length;
      this.#items.push(item);
      this.#up(item.heapIndex);
      return;
    }
    this.#up(item.heapIndex);
    this.#down(item.heapIndex);
  }

  /** Removes the item if present. O(log n). */
  delete(item: T): void {
    if (!this.has(item)) return;
    const at = item.heapIndex;
    item.heapIndex = -1;
    const last = this.#items.pop() as T;
    if (last === item) return;
    this.#items[at] = last;
    last.heapIndex = at;
    this.#up(at);
    this.#down(last.heapIndex);
  }

  pop(): T | undefined {
    const top = this.#items[0];
    if (top) this.delete(top);
    return top;
  }

  #swap(i: number, j: number): void {
    const a = this.#items[i] as T;
    const b = this.#items[j] as T;
    this.#items[i] = b;
    this.#items[j] = a;
    b.heapIndex = i;
    a.heapIndex = j;
  }

  #up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(this.#items[i] as T, this.#items[parent] as T)) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #down(i: number): void {
    const n = this.#items.length;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) return;
      const right = left + 1;
      let child = left;
      if (right < n && this.#less(this.#items[right] as T, this.#items[left] as T)) child = right;
      if (!this.#less(this.#items[child] as T, this.#items[i] as T)) return;
      this.#swap(i, child);
      i = child;
    }
  }
}
