/**
 * A handler thread's entry (a piscina worker). It loads the user's server
 * factory, connects to the broker, and serves the tasks the listener routes to
 * it: new sessions (it becomes their owner) and requests of sessions it owns.
 * A timer stores its heartbeat in the session index: it stops only when the
 * thread's event loop does (a tool in a synchronous loop), and then the
 * listener's watchdog replaces the thread.
 */

import { once } from 'node:events';
import { MessageChannel, type MessagePort, parentPort, threadId, workerData } from 'node:worker_threads';
import { expose, wrap } from 'comlink';
import { type BrokerApi, type IndexDescriptor, openIndex, type SessionIndex } from '../../broker/index.js';
import { Channel, type ChannelTask, type StreamPort } from '../../shared/channel.js';
import { BrokerError } from '../../shared/errors.js';
import { Answers } from '../../shared/jsonrpc.js';
import {
  HELLO,
  type HelloMessage,
  LOADED,
  type LoadedMessage,
  type OwnerControl,
  type StreamLimits,
  type TaskResult,
} from '../../shared/messages.js';
import { endpoint } from '../../shared/rpc.js';
import { type Authenticate, bearerAuth, loadAuth } from '../front/index.js';
import {
  deliver,
  type EventStoreLimits,
  eventStoreFactory,
  loadFactory,
  ResumeBudget,
  SessionHost,
} from '../host/index.js';
import { type MainControl, startThreadListener, type ThreadListenConfig } from './listen.js';

/** What the listener passes to every handler thread. */
export interface HandlerWorkerData {
  /** File URL of the factory module; undefined serves the built-in example. */
  readonly module: string | undefined;
  readonly enableJsonResponse: boolean;
  readonly factoryTimeoutMs: number;
  readonly streamLimits: StreamLimits;
  /** Limits of each session's resumability event store; undefined: none. */
  readonly eventStore: EventStoreLimits | undefined;
  /** The buffer of the process-wide `ResumeBudget` the event stores count their bytes in. */
  readonly resumeBytes: SharedArrayBuffer | undefined;
  /** Set when handler threads listen on the port themselves (per-thread listeners). */
  readonly listen: ThreadListenConfig | undefined;
}

if (!parentPort) throw new Error('the handler must run in a worker thread');
const data = workerData as HandlerWorkerData;
const toBroker = new MessageChannel();
const fromBroker = new MessageChannel();
let host: SessionHost | undefined;
let loadError: string | undefined;
let index: SessionIndex | undefined;
try {
  const factory = await loadFactory(data.module);
  // The broker starts while this thread loads its modules: its session index comes once it has.
  index = openIndex(await indexFromMain(parentPort));
  host = new SessionHost({
    factory,
    index,
    broker: wrap<BrokerApi>(endpoint(toBroker.port1)),
    threadId,
    enableJsonResponse: data.enableJsonResponse,
    factoryTimeoutMs: data.factoryTimeoutMs,
    maxBufferedBytes: data.streamLimits.maxBufferedBytes,
    ...eventStoreFactory(
      data.eventStore,
      data.eventStore && data.resumeBytes
        ? new ResumeBudget(data.resumeBytes, data.eventStore.maxTotalBytes).claim(threadId)
        : undefined,
    ),
    onError: (error) => console.error(`[mcp-session-broker] thread ${threadId}:`, error),
  });
  const control: OwnerControl = { close: (ref, reason) => (host as SessionHost).close(ref, reason) };
  expose(control, endpoint(fromBroker.port1));
  // The host claimed this thread's lane. Beat now, then from a timer: async
  // work keeps the loop turning (and the beat going); only a blocked loop stops it.
  const lane = host.lane;
  const beating = index;
  beating.beat(lane);
  setInterval(() => beating.beat(lane), beating.heartbeatIntervalMs).unref();
} catch (error) {
  loadError = error instanceof BrokerError ? error.message : String(error);
}
/** Serves one request handed to this thread, on whichever channel it came. */
async function handle(task: ChannelTask, port: StreamPort): Promise<TaskResult> {
  if (!host) {
    port.close();
    return { kind: 'answer', answer: Answers.internal(`the server module failed to load: ${loadError}`) };
  }
  const dispatched =
    task.kind === 'initialize'
      ? await host.initialize(task.clientKey, task.binding, task.request)
      : await host.request(task.sessionId, task.request);
  return deliver(dispatched.result, dispatched.body, port, data.streamLimits, dispatched.gate);
}

const requests = new MessageChannel();
new Channel(requests.port1, handle);
// Per-thread listeners: main controls this thread's listener, and this thread asks main for /metrics.
const toListener = new MessageChannel();
const toMain = new MessageChannel();
let authenticate: Authenticate | undefined;
if (host && data.listen?.authModule) {
  try {
    authenticate = bearerAuth(await loadAuth(data.listen.authModule));
  } catch (error) {
    host = undefined;
    loadError = error instanceof BrokerError ? error.message : String(error);
  }
}
if (host && index && data.listen) {
  const control = startThreadListener({
    authenticate,
    config: data.listen,
    host,
    index,
    threadId,
    streamLimits: data.streamLimits,
    serve: handle,
    main: wrap<MainControl>(endpoint(toMain.port1)),
  });
  expose(control, endpoint(toListener.port1));
}
const hello: HelloMessage & { error?: string } = {
  type: HELLO,
  threadId,
  lane: host?.lane ?? -1,
  brokerPort: toBroker.port2,
  controlPort: fromBroker.port2,
  requestPort: requests.port2,
  listenerPort: toListener.port2,
  mainPort: toMain.port2,
  ...(loadError ? { error: loadError } : {}),
};
parentPort.postMessage(hello, [toBroker.port2, fromBroker.port2, requests.port2, toListener.port2, toMain.port2]);

/** Says this thread has loaded (LOADED, on parentPort) and waits for main's answer: the session index. */
async function indexFromMain(parent: MessagePort): Promise<IndexDescriptor> {
  const setup = new MessageChannel();
  const answer = once(setup.port1, 'message') as Promise<[IndexDescriptor]>;
  parent.postMessage({ type: LOADED, threadId, setupPort: setup.port2 } satisfies LoadedMessage, [setup.port2]);
  const [descriptor] = await answer;
  setup.port1.close();
  return descriptor;
}

/** piscina requires a task function; requests come on the thread's channel instead, never as tasks. */
export default function noTasks(): never {
  throw new Error('handler threads take requests on their channel, not as piscina tasks');
}
