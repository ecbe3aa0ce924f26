// Webhook registrations (API.md §5.1): held by the coordinator, so every worker and host
// sees the same list; a change is announced on the event channel so caches refresh at once.
import { Router, type Request } from 'express';
import { z } from 'zod';
import type { Coordinator, WebhookRegistration } from '../../coordination/coordinator.js';
import { AppError } from '../../errors.js';
import { envelope, EVENT_TYPES } from '../../streams/events/stream-events.js';
import { WEBHOOKS_CHANGED, type WebhookDispatcher } from '../../streams/events/webhook-dispatcher.js';
import { headerMap, httpUrl, parseBody, queryString } from '../schemas.js';

export interface WebhooksRoutesDeps {
  coordinator: Coordinator;
  dispatcher: WebhookDispatcher;
  workerId: string;
}

export const webhookSchema = z.object(
  {
    url: httpUrl,
    events: z.array(z.enum(EVENT_TYPES, { error: `must be one of ${EVENT_TYPES.join(', ')}` })).max(EVENT_TYPES.length * 2).nullish(),
    headers: headerMap.nullish(),
    timeout: z.number().int('must be a whole number of seconds').min(1).max(300).nullish(),
    retry_attempts: z.number().int('must be a whole number').min(0).max(10).nullish(),
  },
  { error: 'the body must be a JSON object' },
);

const urlOnly = z.object({ webhook_url: httpUrl }, { error: 'the body must be a JSON object' });

const DEFAULT_TIMEOUT_S = 10;
const DEFAULT_RETRY_ATTEMPTS = 3;

const hookJson = (h: WebhookRegistration) => ({
  url: h.url, events: h.events.length > 0 ? h.events : [...EVENT_TYPES], timeout: h.timeout, retry_attempts: h.retryAttempts,
});

/** `webhook_url` from the query, else from a JSON body (the editor sends a body). */
function webhookUrlOf(req: Request): string {
  const fromQuery = queryString(req.query, 'webhook_url');
  const body = req.body as Record<string, unknown> | undefined;
  const candidate = fromQuery ?? body?.webhook_url ?? body?.url;
  return parseBody(urlOnly, { webhook_url: candidate }).webhook_url;
}

export function webhooksRoutes({ coordinator, dispatcher, workerId }: WebhooksRoutesDeps): Router {
  const r = Router();
  const changed = async (): Promise<void> => {
    dispatcher.invalidate();
    await coordinator.publish({ type: WEBHOOKS_CHANGED });
  };

  r.post('/webhooks', async (req, res) => {
    const body = parseBody(webhookSchema, req.body);
    const events = [...new Set(body.events ?? [])];
    await coordinator.putWebhook({
      url: body.url,
      events: events.length === EVENT_TYPES.length ? [] : events,
      headers: body.headers ?? {},
      timeout: body.timeout ?? DEFAULT_TIMEOUT_S,
      retryAttempts: body.retry_attempts ?? DEFAULT_RETRY_ATTEMPTS,
      createdAt: new Date().toISOString(),
    });
    await changed();
    res.json({ message: 'Webhook added successfully', webhook_url: body.url, events: events.length > 0 ? events : [...EVENT_TYPES] });
  });

  r.get('/webhooks', async (_req, res) => {
    const hooks = await coordinator.listWebhooks();
    // `delivery` (ours): this worker's counters; drops mean a webhook could not keep up.
    res.json({ webhooks: hooks.map(hookJson), delivery: { worker_id: workerId, ...dispatcher.stats() } });
  });

  r.delete('/webhooks', async (req, res) => {
    const url = webhookUrlOf(req);
    if (!(await coordinator.deleteWebhook(url))) {
      throw new AppError(404, 'WEBHOOK_NOT_FOUND', 'No webhook is registered with that URL');
    }
    await changed();
    res.json({ message: 'Webhook removed successfully' });
  });

  r.post('/webhooks/test', async (req, res) => {
    const url = webhookUrlOf(req);
    const registered = (await coordinator.listWebhooks()).find((h) => h.url === url);
    // One POST, no retries: the caller waits for the answer.
    const hook: WebhookRegistration = {
      url, events: [], headers: registered?.headers ?? {}, timeout: registered?.timeout ?? DEFAULT_TIMEOUT_S,
      retryAttempts: 0, createdAt: new Date().toISOString(),
    };
    const event = envelope('stream_started', 'test_stream_123', {
      test: true, primary_url: 'http://example.com/test.ts', failover_urls: [], user_agent: null,
      stream_type: 'direct', metadata: {},
    });
    const delivered = await dispatcher.deliverNow(hook, event);
    res.json({ message: delivered ? 'Test webhook sent' : 'Test webhook could not be delivered', event_id: event.event_id, delivered });
  });

  return r;
}
