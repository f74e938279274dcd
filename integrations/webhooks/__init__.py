"""
Webhooks (docs/connectors/contract.md, "Webhook deliveries"), one job per module, each importing only the ones
listed before it:

* `doorbells` — how committed work wakes the tasks that do it (by task name: the tasks sit above);
* `subscriptions` — subscribe, unsubscribe, switch off and on, the grant each event type needs;
* `outbox` — domain events recorded in the writer's transaction (`emit`), turned into deliveries for the
  subscriptions that may see them, rendered as the API answers each receiver;
* `delivery` — claim due deliveries, POST them signed (core.signing, core.outbound), the retry schedule, dead
  deliveries, the beat's sweep;
* `replay` — operator actions: queue deliveries again, send a test event.

Pruning delivered rows and old outbox events is integrations.housekeeping's; the Celery tasks are
integrations.tasks'.
"""
