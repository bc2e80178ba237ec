/**
 * The one error class for real faults (not limit decisions, which are values).
 * `code` is stable and documented; `cause` carries the underlying error.
 */
export type BrokerErrorCode =
  | 'ERR_BROKER_CLOSED'
  | 'ERR_BROKER_START'
  | 'ERR_FACTORY'
  | 'ERR_THREAD_GONE'
  | 'ERR_INVALID_MODULE'
  | 'ERR_INVALID_STORE'
  | 'ERR_LISTEN';

export class BrokerError extends Error {
  readonly code: BrokerErrorCode;

  constructor(code: BrokerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BrokerError';
    this.code = code;
  }
}
