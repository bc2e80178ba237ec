/**
 * A promise with a deadline: it settles as `promise` does, or rejects with
 * what `late()` returns once `ms` have passed (`late` may also act: give up
 * a connection, close what arrives after). With `unref`, the deadline does
 * not keep the process alive by itself.
 */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  late: () => Error,
  options: { readonly unref?: boolean } = {},
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(late()), ms);
    if (options.unref) timer.unref();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
