/**
 * Prometheus metrics for one broker, on a registry of its own (no global state):
 * read from the shared table's counters at scrape time.
 */
import { createRequire } from 'node:module';
import type { Counter, Registry } from 'prom-client';
import { CLOSE_REASONS, REJECT_REASONS } from '../../shared/types.js';
import type { ConnectionCounters } from './connections.js';
import type { SessionBroker } from './session-broker.js';

export interface BrokerMetrics {
  readonly registry: Registry;
  readonly contentType: string;
  /** Takes a fresh snapshot of the broker's state and renders the exposition text. */
  render(): Promise<string>;
}

/**
 * @param connections the HTTP front's connection counts (`serve()` passes its own); without it the
 *   `mcp_connections_*` metrics are absent.
 */
export function createMetrics(broker: SessionBroker, connections?: { counters(): ConnectionCounters }): BrokerMetrics {
  // Loaded on first use (prom-client is CommonJS): the handler threads load
  // this module but never render metrics, and serve() creates them on the first scrape.
  const { Counter, Gauge, Registry } = createRequire(import.meta.url)('prom-client') as typeof import('prom-client');
  const registry = new Registry();
  // Under a host's authority each process serves its own metrics: every series names the process.
  // Session counts and admission totals are the authority's (the whole host); threads,
  // connections and requests are this process's.
  if (broker.process !== 0) registry.setDefaultLabels({ process: String(broker.process) });
  // Counters mirror monotonic totals kept elsewhere: each scrape adds what changed since the last.
  const mirror = (
    counter: Counter<string>,
    labels: Record<string, string>,
    key: string,
    total: number,
    seen: Map<string, number>,
  ) => {
    const delta = total - (seen.get(key) ?? 0);
    if (delta > 0) counter.inc(labels, delta);
    seen.set(key, total);
  };
  const seen = new Map<string, number>();
  let snapshot: Awaited<ReturnType<SessionBroker['stats']>> | undefined;

  new Gauge({
    name: 'mcp_sessions_live',
    help: 'SDK session transports alive across all handler threads',
    registers: [registry],
    collect() {
      this.set(snapshot?.transports ?? broker.transports());
    },
  });
  new Gauge({
    name: 'mcp_sessions_occupied',
    help: 'Session slots counting against the cap (live plus closing)',
    registers: [registry],
    collect() {
      this.set(snapshot?.occupied ?? 0);
    },
  });
  new Gauge({
    name: 'mcp_sessions_max',
    help: 'The session cap (maxSessions)',
    registers: [registry],
    collect() {
      this.set(broker.index.capacity);
    },
  });
  new Gauge({
    name: 'mcp_sessions_live_by_thread',
    help: 'SDK session transports alive per handler thread',
    labelNames: ['thread'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [thread, count] of Object.entries(snapshot?.transportsByThread ?? {})) this.set({ thread }, count);
    },
  });
  new Gauge({
    name: 'mcp_resume_store_bytes',
    help: 'Bytes held by the SSE resumability event stores of all sessions (at most resumability.maxTotalBytes)',
    registers: [registry],
    collect() {
      this.set(broker.resumeBytes());
    },
  });
  new Counter({
    name: 'mcp_sessions_created_total',
    help: 'Sessions admitted',
    registers: [registry],
    collect() {
      mirror(this, {}, 'created', snapshot?.createdTotal ?? 0, seen);
    },
  });
  new Counter({
    name: 'mcp_sessions_closed_total',
    help: 'Sessions closed, by reason',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      for (const reason of CLOSE_REASONS)
        mirror(this, { reason }, `closed:${reason}`, snapshot?.closedTotal[reason] ?? 0, seen);
    },
  });
  new Counter({
    name: 'mcp_session_admissions_rejected_total',
    help: 'Requests refused admission, by reason (rate_limited and client_*: 429; full, queue_full, shutting_down, owner_gone and unavailable: 503)',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      for (const reason of REJECT_REASONS) {
        // Every reason is exported from the first scrape, at 0 until it happens.
        if (!seen.has(`rejected:${reason}`)) this.inc({ reason }, 0);
        mirror(this, { reason }, `rejected:${reason}`, snapshot?.rejectedTotal[reason] ?? 0, seen);
      }
      mirror(this, { reason: 'queue_full' }, 'rejected:queue_full', broker.frontCounters.queueFull, seen);
    },
  });
  new Counter({
    name: 'mcp_client_aborts_total',
    help: 'Requests whose client went away (or timed out) before the body arrived whole',
    registers: [registry],
    collect() {
      mirror(this, {}, 'client_aborts', broker.frontCounters.clientAborts, seen);
    },
  });
  new Counter({
    name: 'mcp_requests_handed_off_total',
    help: 'Requests passed from the handler thread that received them to the thread that owns their session (per-thread listeners; 0 otherwise)',
    registers: [registry],
    collect() {
      mirror(this, {}, 'handed_off', broker.frontCounters.handedOff, seen);
    },
  });
  new Counter({
    name: 'mcp_requests_rejected_total',
    help: 'Requests refused by the HTTP front that are not admissions, by reason (in_flight_limited: a session at its in-flight limit, address_full: a forwarded address at its limit; both 429)',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      mirror(
        this,
        { reason: 'in_flight_limited' },
        'requests:in_flight_limited',
        broker.frontCounters.inFlightLimited,
        seen,
      );
      if (connections) {
        mirror(this, { reason: 'address_full' }, 'requests:address_full', connections.counters().requestsRefused, seen);
      }
    },
  });
  if (connections) {
    new Gauge({
      name: 'mcp_connections_open',
      help: 'HTTP connections open (refused ones excluded)',
      registers: [registry],
      collect() {
        this.set(connections.counters().open);
      },
    });
    new Gauge({
      name: 'mcp_connections_max',
      help: 'The bound on open HTTP connections (maxConnections)',
      registers: [registry],
      collect() {
        this.set(connections.counters().maxConnections);
      },
    });
    new Counter({
      name: 'mcp_connections_closed_idle_total',
      help: 'Idle HTTP connections closed to make room for a new one',
      registers: [registry],
      collect() {
        mirror(this, {}, 'connections:closed_idle', connections.counters().closedIdle, seen);
      },
    });
    new Counter({
      name: 'mcp_connections_refused_total',
      help: 'HTTP connections refused, by reason (connections_full: 503, address_full: 429)',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        const { refused } = connections.counters();
        mirror(this, { reason: 'connections_full' }, 'connections:connections_full', refused.connections_full, seen);
        mirror(this, { reason: 'address_full' }, 'connections:address_full', refused.address_full, seen);
      },
    });
  }
  new Counter({
    name: 'mcp_handler_thread_restarts_total',
    help: 'Handler threads lost and replaced, by reason (stalled: ended by the watchdog; died: exited on their own)',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      const restarts = broker.threadRestarts;
      mirror(this, { reason: 'stalled' }, 'restarts:stalled', restarts.stalled, seen);
      mirror(this, { reason: 'died' }, 'restarts:died', restarts.died, seen);
    },
  });
  return {
    registry,
    contentType: registry.contentType,
    async render() {
      snapshot = await broker.stats();
      return registry.metrics();
    },
  };
}
